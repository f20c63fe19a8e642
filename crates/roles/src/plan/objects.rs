//! Every other object: owner changes, `REASSIGN OWNED` for what `ALTER`
//! cannot move, refusals for what lives outside the managed schemas, and
//! the owner's-rights paths a conversion would open.

use super::*;
use crate::exemptions::Kind;

impl Planner<'_> {
    /// What differs from the model where the plan changes nothing: a schema
    /// a model role owns outside `APP_DB_SCHEMAS` stops the run (`db-check`
    /// fails it, so "nothing to change" would be a lie); PUBLIC's grants in
    /// other roles' default privileges, and databases and tablespaces the
    /// runtime roles own elsewhere, are named (others may rely on them).
    pub(super) fn outside_the_plan(&mut self) {
        let named = |d: &Drift| {
            matches!(
                d,
                Drift::StraySchema { .. }
                    | Drift::OtherDefaults { to_runtime: false, .. }
                    | Drift::OtherDatabase { .. }
            )
        };
        for item in self.found(named) {
            match &item {
                Drift::StraySchema { name, owner } => {
                    self.plan.refusals.push(Refusal::StraySchema { schema: name.clone(), owner: owner.clone() })
                }
                Drift::OtherDefaults { row, item, .. } => self.plan.warnings.push(Warning::PublicDefaults {
                    role: row.role.clone(),
                    privs: item.privs.sql(),
                    object: row.objtype.keyword().unwrap_or("OBJECTS").to_lowercase().trim_end_matches('s').into(),
                    schema: row.schema.clone(),
                }),
                _ => self.plan.warnings.push(Warning::RuntimeOwned { subject: item.subject(), item: item.to_string() }),
            }
        }
    }

    /// Objects other than the managed schemas and their relations, as their
    /// owner drift says ([`Drift::remedy`]): moved with `ALTER … OWNER`, or
    /// with `REASSIGN OWNED` where ALTER cannot (extensions); refused where
    /// they live outside the managed schemas; named where only the operator
    /// can move them.
    pub(super) fn objects(&mut self) {
        let migrator = self.migrator().to_string();
        let snap = self.snap;
        let by_oid: BTreeMap<(&str, i64), &OwnedObject> =
            snap.db.objects.iter().map(|o| ((o.catalog.as_str(), o.oid), o)).collect();
        let mut reassign_from = BTreeSet::new();
        let mut extensions = Vec::new();
        for item in self.found(|d| matches!(d, Drift::Owner { owned: Owned::Other { .. }, .. })) {
            let Drift::Owner { owned: Owned::Other { kind, schema, catalog, oid }, .. } = &item else { continue };
            let Some(object) = by_oid.get(&(catalog.as_str(), *oid)).copied() else { continue };
            match (item.remedy(self.model), kind.as_str()) {
                (Remedy::Refuse, "schema") => {
                    // Another schema a model role owns is a stray schema
                    // (`outside_the_plan`); this is one of PostgreSQL's own.
                    let name = dbenv::unquote_ident(&object.identity);
                    if !snap.db.other_schemas.iter().any(|s| s.name == name) {
                        self.plan.refusals.push(Refusal::SystemSchema { schema: name, owner: object.owner.clone() });
                    }
                }
                (Remedy::Refuse, _) => self.refuse_outside(object, schema.as_deref().unwrap_or_default()),
                (Remedy::Warn, _) => self.plan.warnings.push(Warning::NotMigratorOwned {
                    kind: object.kind.clone(),
                    identity: object.identity.clone(),
                    owner: object.owner.clone(),
                    migrator: migrator.clone(),
                }),
                // A managed schema changes owner with the schemas.
                (Remedy::Change, "schema") => {}
                (Remedy::Change, _) => match alter_keyword(kind).filter(|_| kind != "extension") {
                    Some(keyword) => self.alter_owner(object, keyword),
                    None => {
                        reassign_from.insert(object.owner.clone());
                        extensions.push(format!("{} {}", object.kind, object.identity));
                    }
                },
            }
        }
        if !reassign_from.is_empty() {
            self.reassign(&reassign_from, &extensions);
        }
    }

    fn alter_owner(&mut self, object: &OwnedObject, keyword: &'static str) {
        let migrator = self.migrator().to_string();
        self.plan.needs.insert(Need::ChangeOwner { from: object.owner.clone(), to: migrator.clone() });
        let mut statements =
            vec![Change::SetOwner { keyword, object: object.identity.clone(), owner: migrator.clone() }.into()];
        statements.extend(self.keep_usage(object));
        self.plan.push(
            Phase::Ownership,
            format!("owner of {} `{}`: `{}` → `{migrator}`", object.kind, object.identity, object.owner),
            statements,
            1,
        );
    }

    pub(super) fn refuse_outside(&mut self, object: &OwnedObject, schema: &str) {
        self.plan.refusals.push(Refusal::OutsideAppSchemas {
            owner: object.owner.clone(),
            kind: object.kind.clone(),
            identity: object.identity.clone(),
            schema: schema.to_string(),
        });
    }

    /// Functions and types stay usable by the runtime role that owned them:
    /// the owner change takes its implicit EXECUTE/USAGE away, which only
    /// matters where PUBLIC does not hold it (PostgreSQL's default is that it does).
    pub(super) fn keep_usage(&mut self, object: &OwnedObject) -> Vec<Statement> {
        let migrator = self.migrator().to_string();
        let (Some(acl), true) = (&object.acl, self.model.is_runtime_role(&object.owner)) else { return Vec::new() };
        let (privilege, keyword) = match object.kind.as_str() {
            "function" | "aggregate" => (EXECUTE, "FUNCTION"),
            "procedure" => (EXECUTE, "PROCEDURE"),
            "type" | "domain" => (USAGE, "TYPE"),
            "large object" => (LARGE_OBJECT_USE, "LARGE OBJECT"),
            _ => return Vec::new(),
        };
        let after = change_owner(acl, &object.owner, &migrator);
        let holds = |grantee: &Grantee| after.iter().any(|i| &i.grantee == grantee && i.privs.contains(privilege));
        if holds(&Grantee::Public) || holds(&Grantee::role(&object.owner)) {
            return Vec::new();
        }
        let change = AclChange::Grant { grantee: Grantee::role(&object.owner), privs: privilege };
        self.acl_statements(keyword, std::slice::from_ref(&object.identity), &migrator, &[change])
    }

    /// Extensions cannot change owner with ALTER; `REASSIGN OWNED` can, but
    /// it also takes every database and tablespace the role owns. Those are
    /// lent to the migrator for the statement and given back, in one
    /// transaction, so other databases end as they were.
    pub(super) fn reassign(&mut self, from: &BTreeSet<String>, what: &[String]) {
        let migrator = self.migrator().to_string();
        let mut before = Vec::new();
        let mut after = Vec::new();
        // Cluster-wide objects REASSIGN OWNED would also move.
        let databases = self.snap.other_databases.iter().map(|d| ("DATABASE", "database", &d.name, &d.owner, &d.acl));
        let tablespaces = self.snap.tablespaces.iter().map(|t| ("TABLESPACE", "tablespace", &t.name, &t.owner, &t.acl));
        for (keyword, kind, name, owner, acl) in databases.chain(tablespaces).filter(|o| from.contains(o.3)) {
            if acl.iter().any(|i| i.grantee == Grantee::role(&migrator) || i.grantor == migrator) {
                self.plan.refusals.push(Refusal::ReassignTouchesOther {
                    owner: owner.clone(),
                    what: what.to_vec(),
                    kind,
                    name: name.clone(),
                    migrator: migrator.clone(),
                });
                return;
            }
            let name = quote_ident(name);
            before.push(Change::SetOwner { keyword, object: name.clone(), owner: migrator.clone() }.into());
            after.push(Change::SetOwner { keyword, object: name, owner: owner.clone() }.into());
        }
        for role in from {
            self.plan.needs.insert(Need::Reassign { from: role.clone(), to: migrator.clone() });
        }
        let mut statements = before;
        statements.push(Change::ReassignOwned { from: from.iter().cloned().collect(), to: migrator.clone() }.into());
        statements.extend(after);
        self.plan.push(
            Phase::Reassign,
            format!(
                "owner of {}: `{}` → `{migrator}`",
                what.join(", "),
                from.iter().cloned().collect::<Vec<_>>().join("`, `")
            ),
            statements,
            0,
        );
    }

    /// Owner's-rights paths a conversion would open (a rule, a definer
    /// function, a view or materialized view, a child without RLS, handed to
    /// the BYPASSRLS migrator): refused before the first change, unless the
    /// exemptions file accepts them, because `db-check` would fail them and
    /// the runtime roles would end more powerful than they were.
    pub(super) fn owners_rights(&mut self) {
        let migrator = self.migrator().to_string();
        for path in reach::paths(self.model, &self.snap.db, State::Converted, self.snap.server_version) {
            if !path.opened_by_conversion || self.model.exemptions.find(path.class.exemption(), &path.subject).is_some()
            {
                continue;
            }
            let version_note = match path.class {
                reach::PathClass::View if !self.snap.server_version.has_security_invoker_views() => {
                    format!(" (PostgreSQL {} has no security_invoker)", self.snap.major())
                }
                _ => String::new(),
            };
            self.plan.refusals.push(Refusal::OwnersRights {
                subject: path.subject.clone(),
                message: path.message.clone(),
                version_note,
                migrator: migrator.clone(),
                fix: path.fix.clone(),
                class: path.class,
            });
        }
        self.foreign_logins();
    }

    /// A foreign table the conversion moves, on a server with a user
    /// mapping for a runtime role or PUBLIC: reading it logs in as the role
    /// the mapping names. `db-check` fails it (`foreign-logins`), so the
    /// conversion does not hand it over unless the policy file reviews it.
    fn foreign_logins(&mut self) {
        let mapped: BTreeSet<&str> = self.snap.db.user_mappings.iter().map(|(server, _)| server.as_str()).collect();
        for (oid, server) in &self.snap.db.foreign_tables {
            let Some(rel) = self.snap.db.relations.iter().find(|r| r.oid == *oid) else { continue };
            let name = format!("{}.{}", rel.schema, rel.name);
            let moves = rel.owner != self.model.migrator.name
                && (self.model.is_runtime_role(&rel.owner) || self.model.is_managed_schema(&rel.schema));
            if !moves || !mapped.contains(server.as_str()) || self.model.exemptions.find(Kind::View, &name).is_some() {
                continue;
            }
            self.plan.refusals.push(Refusal::ForeignLogin { table: name.clone(), server: server.clone() });
        }
    }
}
