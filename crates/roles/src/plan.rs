//! `plan(model, snapshot)`: the ordered statements that bring the database to
//! the model, and nothing for what already holds. A pure function: an empty
//! plan is what "converged" means.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dbenv::{quote_ident, quote_literal};

use crate::acl::{
    change_owner, diff, AclChange, AclItem, Grantee, Privs, Want, CREATE, DATABASE_ALL, EXECUTE, LARGE_OBJECT_USE,
    USAGE,
};
use crate::model::{Model, RoleSpec};
use crate::reach::{self, State};
use crate::scram::{new_verifier, verifier_matches, StoredPassword};
use crate::snapshot::{OwnedObject, Relation, RoleRow, Snapshot};
use crate::wants;

/// One SQL statement. `Display` shows it with secrets redacted; the text
/// with the verifier is only handed to the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Sql {
    text: String,
    shown: Option<String>,
    /// Run under `SET LOCAL ROLE` (a revoke must come from the grantor; a
    /// non-superuser admin grants as the owner).
    pub as_role: Option<String>,
    /// A GRANT on one object, kept apart so that a batch can grant the same
    /// privileges on many objects in one statement.
    pub(crate) grant: Option<Grant>,
}

/// `GRANT {privs} ON {keyword} {object} TO {grantee}`, in pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    pub privs: String,
    pub keyword: String,
    pub object: String,
    pub grantee: String,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Sql {
        Sql { text: text.into(), shown: None, as_role: None, grant: None }
    }

    fn grant(privs: String, keyword: &str, object: &str, grantee: String) -> Sql {
        let mut sql = Sql::new(format!("GRANT {privs} ON {keyword} {object} TO {grantee}"));
        sql.grant = Some(Grant { privs, keyword: keyword.to_string(), object: object.to_string(), grantee });
        sql
    }

    /// A statement holding a secret, printed as `shown`.
    fn secret(text: String, shown: String) -> Sql {
        Sql { text, shown: Some(shown), as_role: None, grant: None }
    }

    fn run_as(mut self, role: Option<String>) -> Sql {
        self.as_role = role;
        self
    }

    /// The text for the server. Never print it.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(role) = &self.as_role {
            write!(f, "SET ROLE {}; ", quote_ident(role))?;
        }
        f.write_str(self.shown.as_deref().unwrap_or(&self.text))
    }
}

impl fmt::Debug for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sql({self})")
    }
}

/// The phases, in the order they run. Each has its connection and
/// transaction shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Roles, attributes, passwords, memberships: one transaction.
    Roles,
    /// `CREATE DATABASE` (cannot run in a transaction).
    CreateDatabase,
    /// The database owner and ACL: one transaction.
    Database,
    /// App and bookkeeping schemas: one transaction.
    Schemas,
    /// `APP_DB_EXTENSIONS`, created as the admin: one transaction.
    Extensions,
    /// Owner changes with their grants, in batches that each commit.
    Ownership,
    /// `REASSIGN OWNED` for what `ALTER … OWNER` cannot move (extensions).
    Reassign,
    /// ACL fixes on relations that keep their owner, in batches.
    Grants,
    /// `ALTER DEFAULT PRIVILEGES`: one transaction.
    DefaultPrivileges,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Roles,
        Phase::CreateDatabase,
        Phase::Database,
        Phase::Schemas,
        Phase::Extensions,
        Phase::Ownership,
        Phase::Reassign,
        Phase::Grants,
        Phase::DefaultPrivileges,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Phase::Roles => "roles",
            Phase::CreateDatabase => "create database",
            Phase::Database => "database",
            Phase::Schemas => "schemas",
            Phase::Extensions => "extensions (APP_DB_EXTENSIONS)",
            Phase::Ownership => "ownership",
            Phase::Reassign => "extensions (REASSIGN OWNED)",
            Phase::Grants => "grants",
            Phase::DefaultPrivileges => "default privileges",
        }
    }

    /// Runs on the maintenance connection rather than in the app database.
    pub fn on_cluster(self) -> bool {
        matches!(self, Phase::Roles | Phase::CreateDatabase | Phase::Database)
    }

    /// Split into transactions that each commit (and may be retried).
    pub fn batched(self) -> bool {
        matches!(self, Phase::Ownership | Phase::Grants)
    }
}

/// One change: a sentence for the report and the statements that make it,
/// which always run in one transaction.
#[derive(Clone, Debug)]
pub struct Step {
    pub phase: Phase,
    pub summary: String,
    pub statements: Vec<Sql>,
    /// Locks the statements take (owner changes lock the relation, its
    /// indexes and TOAST): batches are sized by it.
    pub lock_cost: u32,
}

/// Something the admin must be able to do for the plan to run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    CreateRole,
    GiveBypassRls(String),
    AlterRole(String),
    CreateDatabaseOwnedBy(String),
    /// An extension that is not trusted: only a superuser creates it.
    CreateUntrustedExtension(String),
    ChangeOwner {
        from: String,
        to: String,
    },
    ActAs(String),
    Reassign {
        from: String,
        to: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Things worth knowing that do not stop the run.
    pub warnings: Vec<String>,
    /// What the plan deliberately leaves to others (schemas to the migrations).
    pub notes: Vec<String>,
    /// Problems that stop the run before anything changes.
    pub refusals: Vec<String>,
    pub needs: BTreeSet<Need>,
    /// Memberships a non-superuser admin grants itself (it holds ADMIN on
    /// the role): `(role, inherit, set)`. The preflight counts them as held.
    pub admin_grants: Vec<(String, bool, bool)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn statement_count(&self) -> usize {
        self.steps.iter().map(|s| s.statements.len()).sum()
    }

    pub fn steps_of(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.phase == phase)
    }

    fn push(&mut self, phase: Phase, summary: String, statements: Vec<Sql>, lock_cost: u32) {
        if !statements.is_empty() {
            self.steps.push(Step { phase, summary, statements, lock_cost });
        }
    }
}

/// Computes the plan. Passwords enter it only as fresh SCRAM verifiers.
pub fn plan(model: &Model, snap: &Snapshot) -> Plan {
    let mut planner = Planner { model, snap, plan: Plan::default() };
    planner.roles();
    planner.database();
    planner.schemas();
    planner.extensions();
    planner.other_schemas();
    planner.relations();
    planner.foreign();
    planner.objects();
    planner.default_privileges();
    planner.owners_rights();
    planner.admin_memberships();
    let mut plan = planner.plan;
    plan.steps.sort_by_key(|s| s.phase);
    plan
}

struct Planner<'a> {
    model: &'a Model,
    snap: &'a Snapshot,
    plan: Plan,
}

impl Planner<'_> {
    /// A non-superuser admin acts through the roles: it must be able to SET
    /// ROLE to the migrator (to own what it creates and to grant as the
    /// owner) and to inherit the privileges of every role it takes objects
    /// from. Where it holds ADMIN on such a role (it created it, on
    /// PostgreSQL 16+) it grants itself the membership; the preflight
    /// reports the rest.
    fn admin_memberships(&mut self) {
        if self.snap.admin.superuser {
            return;
        }
        let mut wanted: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for need in &self.plan.needs {
            match need {
                Need::CreateDatabaseOwnedBy(role) | Need::ActAs(role) => {
                    wanted.entry(role.clone()).or_default().1 = true
                }
                Need::ChangeOwner { from, to } | Need::Reassign { from, to } => {
                    wanted.entry(from.clone()).or_default().0 = true;
                    wanted.entry(to.clone()).or_default().1 = true;
                }
                _ => {}
            }
        }
        // The database owner's objects (schema public on 15+) are taken
        // through the database owner, the migrator once the plan has run.
        if wanted.remove("pg_database_owner").is_some() {
            wanted.entry(self.migrator().to_string()).or_default().0 = true;
        }
        let major = self.snap.major();
        for (role, (inherit, set)) in wanted {
            if !self.model.roles().iter().any(|r| r.name == role) {
                continue;
            }
            let created_now = !self.snap.roles.contains_key(&role);
            let access = self.snap.admin.access.get(&role).copied().unwrap_or_default();
            let lacks = (inherit && !access.usage) || (set && !access.set);
            // Since 16 the creator of a role holds ADMIN on it; before, CREATEROLE suffices.
            let may_grant = if major >= 16 { access.admin || created_now } else { self.snap.admin.createrole };
            if !lacks || !may_grant {
                continue;
            }
            let admin = quote_ident(&self.snap.admin.name);
            let options = if major >= 16 { " WITH INHERIT TRUE, SET TRUE" } else { "" };
            self.plan.admin_grants.push((role.clone(), true, true));
            self.plan.push(
                Phase::Roles,
                format!("`{}` may act as `{role}` (membership for the admin, not the app)", self.snap.admin.name),
                vec![Sql::new(format!("GRANT {} TO {admin}{options}", quote_ident(&role)))],
                0,
            );
        }
    }

    fn migrator(&self) -> &str {
        &self.model.migrator.name
    }

    /// Owner's-rights paths a conversion would open (a rule, a definer
    /// function, a view or materialized view, a child without RLS, handed to
    /// the BYPASSRLS migrator): refused before the first change, unless the
    /// exemptions file accepts them, because `db-check` would fail them and
    /// the runtime roles would end more powerful than they were.
    fn owners_rights(&mut self) {
        let migrator = self.migrator().to_string();
        for path in reach::paths(self.model, &self.snap.db, State::Converted, self.snap.server_version) {
            if !path.opened_by_conversion || self.model.exemptions.find(path.class.exemption(), &path.subject).is_some()
            {
                continue;
            }
            let version_note = match path.class {
                reach::PathClass::View if self.snap.server_version < 150000 => {
                    format!(" (PostgreSQL {} has no security_invoker)", self.snap.major())
                }
                _ => String::new(),
            };
            self.plan.refusals.push(format!(
                "`{}`: {}{version_note}. Converting hands it to `{migrator}`, so the runtime roles would gain its \
                 rights. Fix: {}; or list it under [[{}]] in the exemptions file with a reason",
                path.subject,
                path.message,
                path.fix,
                path.class.exemption().key()
            ));
        }
    }

    /// Who runs a GRANT/REVOKE on an object owned by `owner`: a superuser
    /// acts as the owner already; anyone else must become the owner. A
    /// revoke must come from the grantor that made the grant.
    fn actor(&mut self, owner: &str, grantor: Option<&str>) -> Option<String> {
        let role = grantor.unwrap_or(owner);
        if self.snap.admin.superuser && role == owner {
            return None;
        }
        if !self.snap.admin.superuser {
            self.plan.needs.insert(Need::ActAs(role.to_string()));
        }
        Some(role.to_string())
    }

    /// GRANT/REVOKE statements for `changes` on `objects` (already quoted),
    /// all of kind `keyword` (TABLE, SEQUENCE, SCHEMA, DATABASE, …) and owned by `owner`.
    fn acl_statements(&mut self, keyword: &str, objects: &str, owner: &str, changes: &[AclChange]) -> Vec<Sql> {
        let mut sorted = changes.to_vec();
        // Grants first: a live app must never see a moment without access.
        sorted.sort_by_key(|c| !matches!(c, AclChange::Grant { .. }));
        sorted
            .iter()
            .map(|change| match change {
                AclChange::Grant { grantee, privs } => {
                    let actor = self.actor(owner, None);
                    Sql::grant(privs.sql(), keyword, objects, grantee.sql()).run_as(actor)
                }
                AclChange::Revoke { grantee, privs, grantor } => {
                    let actor = self.actor(owner, Some(grantor));
                    Sql::new(format!("REVOKE {} ON {keyword} {objects} FROM {} CASCADE", privs.sql(), grantee.sql()))
                        .run_as(actor)
                }
                AclChange::RevokeGrantOption { grantee, privs, grantor } => {
                    let actor = self.actor(owner, Some(grantor));
                    Sql::new(format!(
                        "REVOKE GRANT OPTION FOR {} ON {keyword} {objects} FROM {} CASCADE",
                        privs.sql(),
                        grantee.sql()
                    ))
                    .run_as(actor)
                }
            })
            .collect()
    }

    fn roles(&mut self) {
        for spec in self.model.roles() {
            match self.snap.roles.get(&spec.name) {
                None => self.create_role(spec),
                Some(row) => {
                    self.refuse_demotion(row);
                    self.alter_role(spec, row);
                }
            }
        }
        self.settings();
        // None of the three roles is a member of any role: not of each
        // other, not of pg_* roles, not of anything that could lend it
        // privileges the model does not give.
        let names = self.model.role_names();
        for membership in self.snap.memberships.iter().filter(|m| names.contains(&m.member)) {
            let granted_by = if self.snap.server_version >= 160000 && !membership.grantor.is_empty() {
                format!(" GRANTED BY {}", quote_ident(&membership.grantor))
            } else {
                String::new()
            };
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::AlterRole(membership.role.clone()));
            }
            self.plan.push(
                Phase::Roles,
                format!("remove membership of `{}` in `{}`", membership.member, membership.role),
                vec![Sql::new(format!(
                    "REVOKE {} FROM {}{granted_by} CASCADE",
                    quote_ident(&membership.role),
                    quote_ident(&membership.member)
                ))],
                0,
            );
        }
    }

    /// An existing role with powers no model role has is probably not one
    /// of ours yet (a typo in an env file, an admin's name): stripping it
    /// silently could lock an operator out. Only on `--take-over`.
    fn refuse_demotion(&mut self, row: &RoleRow) {
        let powers: Vec<&str> =
            [(row.superuser, "SUPERUSER"), (row.replication, "REPLICATION"), (row.createrole, "CREATEROLE")]
                .into_iter()
                .filter_map(|(has, name)| has.then_some(name))
                .collect();
        if powers.is_empty() || self.model.confirmed.take_over.contains(&row.name) {
            return;
        }
        self.plan.refusals.push(format!(
            "role `{}` exists with {}, which no role of the model may have: provisioning would take {} away. If \
             `{}` is meant to be a model role, run again with `--take-over {}`; otherwise name another role in \
             the env file",
            row.name,
            powers.join(", "),
            if powers.len() == 1 { "it" } else { "them" },
            row.name,
            row.name
        ));
    }

    /// Role and database defaults that break or weaken the model for the
    /// runtime roles are removed (`wants::setting_problem`).
    fn settings(&mut self) {
        for setting in &self.snap.settings {
            let Some(problem) =
                wants::setting_problem(self.model, setting.role.as_deref(), &setting.name, &setting.value)
            else {
                continue;
            };
            let name = quote_ident(&setting.name);
            let (phase, sql, place) = match (&setting.role, &setting.database) {
                (Some(role), database) => {
                    if !self.snap.admin.superuser {
                        self.plan.needs.insert(Need::AlterRole(role.clone()));
                    }
                    let scope =
                        database.as_ref().map(|d| format!(" IN DATABASE {}", quote_ident(d))).unwrap_or_default();
                    let place = database.as_ref().map(|d| format!(" in `{d}`")).unwrap_or_default();
                    (
                        Phase::Roles,
                        Sql::new(format!("ALTER ROLE {}{scope} RESET {name}", quote_ident(role))),
                        format!("role `{role}`{place}"),
                    )
                }
                (None, Some(database)) => {
                    let owner = self.snap.database.as_ref().map(|d| d.owner.clone()).unwrap_or_default();
                    let actor = self.actor(&owner, None);
                    (
                        Phase::Database,
                        Sql::new(format!("ALTER DATABASE {} RESET {name}", quote_ident(database))).run_as(actor),
                        format!("database `{database}`"),
                    )
                }
                (None, None) => continue,
            };
            self.plan.push(phase, format!("default of {place} removed: {problem}"), vec![sql], 0);
        }
    }

    /// `APP_DB_EXTENSIONS` that are not installed yet, created as the admin
    /// (with what they require) before the migrations run, so that a
    /// migration's own `CREATE EXTENSION IF NOT EXISTS` does nothing. A
    /// trusted one a non-superuser admin creates as the migrator, the
    /// database's owner.
    fn extensions(&mut self) {
        let migrator = self.migrator().to_string();
        for extension in self.snap.db.extensions.iter().filter(|e| !e.installed) {
            if !extension.available {
                self.plan.refusals.push(format!(
                    "APP_DB_EXTENSIONS names `{}`, which this server does not have: install its package on the server \
                     (pgvector: postgresql-<major>-pgvector), or remove it from APP_DB_EXTENSIONS",
                    extension.name
                ));
                continue;
            }
            let actor = match (self.snap.admin.superuser, extension.trusted) {
                (true, _) => None,
                (false, true) => self.actor(&migrator, None),
                (false, false) => {
                    self.plan.needs.insert(Need::CreateUntrustedExtension(extension.name.clone()));
                    None
                }
            };
            self.plan.push(
                Phase::Extensions,
                format!("create extension `{}` (APP_DB_EXTENSIONS)", extension.name),
                vec![Sql::new(format!("CREATE EXTENSION IF NOT EXISTS {} CASCADE", quote_ident(&extension.name)))
                    .run_as(actor)],
                0,
            );
        }
    }

    /// No USAGE on foreign-data wrappers and servers for the runtime roles:
    /// with it they create servers and user mappings. USAGE granted to
    /// PUBLIC is named, not revoked (other roles of the database may use it).
    fn foreign(&mut self) {
        let runtime = [Grantee::role(&self.model.runtime.name), Grantee::role(&self.model.service.name)];
        for object in &self.snap.db.foreign {
            let changes: Vec<AclChange> =
                runtime.iter().flat_map(|g| diff(&object.acl, g, Want::Without(Privs::ALL))).collect();
            let noun = object.noun();
            if !changes.is_empty() {
                let statements =
                    self.acl_statements(object.keyword, &quote_ident(&object.name), &object.owner, &changes);
                self.plan.push(
                    Phase::Grants,
                    format!("access to {noun} `{}`: {}", object.name, describe(&changes)),
                    statements,
                    0,
                );
            }
            if object.acl.iter().any(|i| i.grantee == Grantee::Public && !i.privs.is_empty()) {
                self.plan.warnings.push(format!(
                    "PUBLIC holds USAGE on {noun} `{}`, so the runtime roles may create {}; revoke it if nothing \
                     else needs it (`REVOKE USAGE ON {} {} FROM PUBLIC`)",
                    object.name,
                    if object.is_server() { "user mappings for themselves" } else { "foreign servers" },
                    object.keyword,
                    quote_ident(&object.name)
                ));
            }
        }
        for (server, user) in &self.snap.db.user_mappings {
            self.plan.warnings.push(format!(
                "user mapping for `{user}` on server `{server}` stays: a mapping belongs to no one, so it is not \
                 moved; the runtime roles reach the remote database through it only via foreign tables they may read"
            ));
        }
    }

    /// No CREATE for the runtime roles or PUBLIC on any schema of the
    /// database outside the managed ones (PostgreSQL 13/14 give PUBLIC
    /// CREATE on `public`, which may not be an app schema).
    fn other_schemas(&mut self) {
        let grantees =
            [Grantee::role(&self.model.runtime.name), Grantee::role(&self.model.service.name), Grantee::Public];
        for schema in &self.snap.db.other_schemas {
            if self.model.is_runtime_role(&schema.owner) {
                continue; // refused: a runtime role owns it
            }
            let changes: Vec<AclChange> =
                grantees.iter().flat_map(|g| diff(&schema.acl, g, Want::Without(CREATE))).collect();
            if changes.is_empty() {
                continue;
            }
            let statements = self.acl_statements("SCHEMA", &quote_ident(&schema.name), &schema.owner, &changes);
            self.plan.push(
                Phase::Schemas,
                format!("access to schema `{}` (not an app schema): {}", schema.name, describe(&changes)),
                statements,
                0,
            );
        }
    }

    fn create_role(&mut self, spec: &RoleSpec) {
        let name = quote_ident(&spec.name);
        let attributes = format!(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION {}",
            if spec.bypassrls() { "BYPASSRLS" } else { "NOBYPASSRLS" }
        );
        let verifier = new_verifier(&spec.password);
        self.plan.needs.insert(Need::CreateRole);
        if spec.bypassrls() {
            self.plan.needs.insert(Need::GiveBypassRls(spec.name.clone()));
        }
        self.plan.push(
            Phase::Roles,
            format!("create {} role `{}` ({attributes})", spec.kind, spec.name),
            vec![Sql::secret(
                format!("CREATE ROLE {name} WITH {attributes} PASSWORD {}", quote_literal(verifier.expose())),
                format!("CREATE ROLE {name} WITH {attributes} PASSWORD '***'"),
            )],
            0,
        );
    }

    fn alter_role(&mut self, spec: &RoleSpec, row: &RoleRow) {
        let name = quote_ident(&spec.name);
        let mut changes = Vec::new();
        let mut flag = |have: bool, want: bool, yes: &'static str, no: &'static str| {
            if have != want {
                changes.push(if want { yes } else { no });
            }
        };
        flag(row.superuser, false, "SUPERUSER", "NOSUPERUSER");
        flag(row.createdb, false, "CREATEDB", "NOCREATEDB");
        flag(row.createrole, false, "CREATEROLE", "NOCREATEROLE");
        flag(row.replication, false, "REPLICATION", "NOREPLICATION");
        flag(row.login, true, "LOGIN", "NOLOGIN");
        flag(row.bypassrls, spec.bypassrls(), "BYPASSRLS", "NOBYPASSRLS");
        if !changes.is_empty() {
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::AlterRole(spec.name.clone()));
            }
            if changes.contains(&"BYPASSRLS") || row.superuser {
                self.plan.needs.insert(Need::GiveBypassRls(spec.name.clone()));
            }
            let attributes = changes.join(" ");
            self.plan.push(
                Phase::Roles,
                format!("set attributes of `{}`: {attributes}", spec.name),
                vec![Sql::new(format!("ALTER ROLE {name} WITH {attributes}"))],
                0,
            );
        }
        let reason = match &row.password {
            StoredPassword::Scram(verifier) if verifier_matches(verifier, &spec.password) => None,
            StoredPassword::Scram(_) => Some("password changed"),
            StoredPassword::Md5 => Some("md5 hash replaced by a SCRAM verifier"),
            StoredPassword::Absent => Some("password set (there was none)"),
            StoredPassword::Other => Some("plaintext password replaced by a SCRAM verifier"),
            StoredPassword::Unknown => match row.login_check {
                Some(true) => None,
                Some(false) => Some("password changed"),
                None => Some("password set again (it cannot be verified with this admin)"),
            },
        };
        if let Some(reason) = reason {
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::AlterRole(spec.name.clone()));
            }
            let verifier = new_verifier(&spec.password);
            self.plan.push(
                Phase::Roles,
                format!("`{}`: {reason}", spec.name),
                vec![Sql::secret(
                    format!("ALTER ROLE {name} WITH PASSWORD {}", quote_literal(verifier.expose())),
                    format!("ALTER ROLE {name} WITH PASSWORD '***'"),
                )],
                0,
            );
        }
    }

    fn database(&mut self) {
        let migrator = self.migrator().to_string();
        if self.model.db_name == dbenv::MAINTENANCE_DATABASE && !self.model.confirmed.maintenance_database {
            self.plan.refusals.push(format!(
                "APP_DB_NAME is `{}`, the cluster's maintenance database, which admin tools connect to: provisioning \
                 would give it to `{migrator}` and take CONNECT from PUBLIC. Give the app a database of its own, or \
                 run with `--allow-postgres-database` if this is really meant",
                self.model.db_name
            ));
        }
        let db = quote_ident(&self.model.db_name);
        let acl = match &self.snap.database {
            None => {
                self.plan.needs.insert(Need::CreateDatabaseOwnedBy(migrator.clone()));
                self.plan.push(
                    Phase::CreateDatabase,
                    format!("create database `{}` owned by `{migrator}`", self.model.db_name),
                    vec![Sql::new(format!("CREATE DATABASE {db} OWNER {}", quote_ident(&migrator)))],
                    0,
                );
                // A new database's ACL is the default one: PUBLIC has CONNECT, TEMP.
                vec![
                    AclItem {
                        grantee: Grantee::Public,
                        grantor: migrator.clone(),
                        privs: Privs::from_letters("Tc"),
                        grant_option: Privs::NONE,
                    },
                    AclItem {
                        grantee: Grantee::role(&migrator),
                        grantor: migrator.clone(),
                        privs: DATABASE_ALL,
                        grant_option: Privs::NONE,
                    },
                ]
            }
            Some(existing) if existing.owner != migrator => {
                self.plan.needs.insert(Need::ChangeOwner { from: existing.owner.clone(), to: migrator.clone() });
                self.plan.push(
                    Phase::Database,
                    format!("owner of database `{}`: `{}` → `{migrator}`", existing.name, existing.owner),
                    vec![Sql::new(format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&migrator)))],
                    0,
                );
                change_owner(&existing.acl, &existing.owner, &migrator)
            }
            Some(existing) => existing.acl.clone(),
        };
        // CONNECT for the roles comes before PUBLIC loses it (same
        // transaction, grants sorted first): the running app never sees a
        // moment without access.
        let admin = (!self.snap.admin.superuser).then_some(self.snap.admin.name.as_str());
        let wants = wants::database(self.model, admin);
        let changes: Vec<AclChange> = wants.iter().flat_map(|(grantee, want)| diff(&acl, grantee, *want)).collect();
        if !changes.is_empty() {
            let statements = self.acl_statements("DATABASE", &db, &migrator, &changes);
            self.plan.push(
                Phase::Database,
                format!("access to database `{}`: {}", self.model.db_name, describe(&changes)),
                statements,
                0,
            );
        }
    }

    /// An app schema (other than `public`) that does not exist yet is the
    /// migrations' to create: a set whose first migration says `CREATE
    /// SCHEMA "app";` would otherwise fail on it. `db-migrate` grants the
    /// runtime roles what they need there once it exists.
    fn left_to_migrations(&self, schema: &str) -> bool {
        self.model.is_app_schema(schema) && schema != "public" && !self.snap.db.schemas.iter().any(|s| s.name == schema)
    }

    fn schemas(&mut self) {
        let migrator = self.migrator().to_string();
        for name in self.model.managed_schemas() {
            if self.left_to_migrations(&name) {
                self.plan.notes.push(format!(
                    "schema `{name}` does not exist yet: it is left to the migrations, which create it as `{migrator}`; \
                     `cargo xtask db-migrate` then grants the runtime roles their access there"
                ));
                continue;
            }
            let quoted = quote_ident(&name);
            let mut statements = Vec::new();
            let mut summary = Vec::new();
            let acl = match self.snap.db.schemas.iter().find(|s| s.name == name) {
                None => {
                    statements
                        .push(Sql::new(format!("CREATE SCHEMA {quoted} AUTHORIZATION {}", quote_ident(&migrator))));
                    summary.push(format!("create schema `{name}` owned by `{migrator}`"));
                    vec![AclItem {
                        grantee: Grantee::role(&migrator),
                        grantor: migrator.clone(),
                        privs: Privs::from_letters("UC"),
                        grant_option: Privs::NONE,
                    }]
                }
                Some(schema) if schema.owner != migrator => {
                    self.plan.needs.insert(Need::ChangeOwner { from: schema.owner.clone(), to: migrator.clone() });
                    statements.push(Sql::new(format!("ALTER SCHEMA {quoted} OWNER TO {}", quote_ident(&migrator))));
                    summary.push(format!("owner of schema `{name}`: `{}` → `{migrator}`", schema.owner));
                    change_owner(&schema.acl, &schema.owner, &migrator)
                }
                Some(schema) => schema.acl.clone(),
            };
            let wants = wants::schema(self.model, &name);
            let changes: Vec<AclChange> = wants.iter().flat_map(|(g, w)| diff(&acl, g, *w)).collect();
            if !changes.is_empty() {
                summary.push(format!("access to schema `{name}`: {}", describe(&changes)));
                statements.extend(self.acl_statements("SCHEMA", &quoted, &migrator, &changes));
            }
            self.plan.push(Phase::Schemas, summary.join("; "), statements, 0);
        }
    }

    fn relations(&mut self) {
        let migrator = self.migrator().to_string();
        let relations = &self.snap.db.relations;
        let by_oid: BTreeMap<i64, &Relation> = relations.iter().map(|r| (r.oid, r)).collect();
        let mut linked: BTreeMap<i64, Vec<&Relation>> = BTreeMap::new();
        for rel in relations {
            if let Some(table) = rel.owned_by.filter(|t| by_oid.contains_key(t)) {
                linked.entry(table).or_default().push(rel);
            }
        }
        let mut columns: BTreeMap<i64, Vec<&crate::snapshot::ColumnAcl>> = BTreeMap::new();
        for column in &self.snap.db.columns {
            columns.entry(column.table_oid).or_default().push(column);
        }
        // ACL changes on relations that keep their owner, grouped so that one
        // statement covers many relations.
        let mut grouped: BTreeMap<(&'static str, AclChange), Vec<String>> = BTreeMap::new();

        for rel in relations {
            // A linked sequence follows its table, handled with it.
            if rel.owned_by.is_some_and(|t| by_oid.contains_key(&t)) {
                continue;
            }
            let moving = rel.owner != migrator;
            let mut group = vec![rel];
            group.extend(linked.get(&rel.oid).into_iter().flatten().copied());
            if moving {
                self.plan.needs.insert(Need::ChangeOwner { from: rel.owner.clone(), to: migrator.clone() });
                let qualified = rel.qualified();
                let mut statements = vec![Sql::new(format!(
                    "ALTER {} {qualified} OWNER TO {}",
                    rel.alter_keyword(),
                    quote_ident(&migrator)
                ))];
                let mut summary =
                    format!("owner of {} `{}.{}`: `{}` → `{migrator}`", rel.noun(), rel.schema, rel.name, rel.owner);
                // A view runs with its owner's rights. Owned by the BYPASSRLS
                // migrator it would show every tenant's rows; security_invoker
                // (PostgreSQL 15+) keeps RLS applying to whoever queries it.
                // What cannot be fixed so is refused in `owners_rights`.
                if rel.kind == 'v'
                    && !rel.security_invoker
                    && self.snap.server_version >= 150000
                    && reach::source(self.model, &self.snap.db, rel.oid, false).is_some()
                {
                    statements.push(Sql::new(format!("ALTER VIEW {qualified} SET (security_invoker = true)")));
                    summary.push_str(" with security_invoker");
                }
                let mut lock_cost = rel.lock_cost;
                for member in &group {
                    let acl = change_owner(&member.acl, &member.owner, &migrator);
                    let changes = self.relation_changes(member, &acl);
                    statements.extend(self.acl_statements(keyword(member), &member.qualified(), &migrator, &changes));
                    statements.extend(self.column_statements(member, columns.get(&member.oid), Some(&member.owner)));
                    if member.oid != rel.oid {
                        lock_cost += 1;
                    }
                }
                if statements.len() > 1 {
                    summary.push_str(" (grants restored)");
                }
                self.plan.push(Phase::Ownership, summary, statements, lock_cost);
            } else {
                for member in &group {
                    let changes = self.relation_changes(member, &member.acl);
                    for change in changes {
                        grouped.entry((keyword(member), change)).or_default().push(member.qualified());
                    }
                    let statements = self.column_statements(member, columns.get(&member.oid), None);
                    if !statements.is_empty() {
                        self.plan.push(
                            Phase::Grants,
                            format!("column privileges on `{}.{}` removed", member.schema, member.name),
                            statements,
                            0,
                        );
                    }
                }
            }
        }

        for ((keyword, change), objects) in grouped {
            for chunk in objects.chunks(500) {
                let statements =
                    self.acl_statements(keyword, &chunk.join(", "), &migrator, std::slice::from_ref(&change));
                let noun = if keyword == "SEQUENCE" { "sequence" } else { "table" };
                let what = if chunk.len() == 1 {
                    format!("{noun} `{}`", chunk[0].replace('"', ""))
                } else {
                    format!("{} {noun}s", chunk.len())
                };
                self.plan.push(
                    Phase::Grants,
                    format!("{}: {what}", describe(std::slice::from_ref(&change))),
                    statements,
                    0,
                );
            }
        }
    }

    /// The ACL changes a relation needs, given its (possibly predicted) ACL.
    fn relation_changes(&self, rel: &Relation, acl: &[AclItem]) -> Vec<AclChange> {
        wants::relation(self.model, rel).iter().flat_map(|(grantee, want)| diff(acl, grantee, *want)).collect()
    }

    /// Column grants to the runtime roles or PUBLIC are removed: table-level
    /// DML is all they get. `old_owner` is set when the table changes owner
    /// in the same step (grantors are then the migrator's).
    fn column_statements(
        &mut self,
        rel: &Relation,
        columns: Option<&Vec<&crate::snapshot::ColumnAcl>>,
        old_owner: Option<&str>,
    ) -> Vec<Sql> {
        let migrator = self.migrator().to_string();
        let owner = if old_owner.is_some() { migrator.as_str() } else { rel.owner.as_str() };
        let owner = owner.to_string();
        let mut statements = Vec::new();
        for column in columns.into_iter().flatten() {
            let acl = match old_owner {
                Some(old) => change_owner(&column.acl, old, &migrator),
                None => column.acl.clone(),
            };
            for (grantee, want) in wants::column(self.model) {
                for change in diff(&acl, &grantee, want) {
                    if let AclChange::Revoke { privs, grantor, .. } = &change {
                        let column_privs: Vec<String> = privs
                            .letters()
                            .chars()
                            .map(|l| {
                                format!(
                                    "{} ({})",
                                    Privs::from_letters(&l.to_string()).sql(),
                                    quote_ident(&column.column)
                                )
                            })
                            .collect();
                        let actor = self.actor(&owner, Some(grantor));
                        statements.push(
                            Sql::new(format!(
                                "REVOKE {} ON TABLE {} FROM {} CASCADE",
                                column_privs.join(", "),
                                rel.qualified(),
                                grantee.sql()
                            ))
                            .run_as(actor),
                        );
                    }
                }
            }
        }
        statements
    }

    fn objects(&mut self) {
        let migrator = self.migrator().to_string();
        let managed = self.model.managed_schemas();
        let mut reassign_from = BTreeSet::new();
        let mut extensions = Vec::new();
        for object in &self.snap.db.objects {
            let runtime_owned = self.model.is_runtime_role(&object.owner);
            if object.catalog == "pg_class" {
                // Relations of managed schemas are handled above; indexes and
                // TOAST tables follow their table.
                if let Some(schema) = object.schema.as_ref().filter(|s| !managed.contains(s)) {
                    if !matches!(object.kind.as_str(), "index" | "toast table" | "toast table index") {
                        self.refuse_outside(object, schema);
                    }
                }
                continue;
            }
            if let Some(schema) = object.schema.as_ref().filter(|s| !managed.contains(s)) {
                self.refuse_outside(object, schema);
                continue;
            }
            if object.kind == "schema" {
                let name = object.identity.trim_matches('"').replace("\"\"", "\"");
                if !managed.contains(&name) {
                    self.plan.refusals.push(format!(
                        "`{}` owns schema `{name}`, which is not in APP_DB_SCHEMAS: add it to APP_DB_SCHEMAS so the \
                         runtime roles keep their access, or drop it if nothing uses it",
                        object.owner
                    ));
                }
                continue;
            }
            if object.kind == "extension" {
                extensions.push(format!("extension {}", object.identity));
                reassign_from.insert(object.owner.clone());
                continue;
            }
            let Some(keyword) = alter_keyword(&object.kind) else {
                if runtime_owned {
                    reassign_from.insert(object.owner.clone());
                    extensions.push(format!("{} {}", object.kind, object.identity));
                } else {
                    self.plan.warnings.push(format!(
                        "{} `{}` is owned by `{}`, not `{migrator}`; change its owner by hand",
                        object.kind, object.identity, object.owner
                    ));
                }
                continue;
            };
            self.plan.needs.insert(Need::ChangeOwner { from: object.owner.clone(), to: migrator.clone() });
            let mut statements =
                vec![Sql::new(format!("ALTER {keyword} {} OWNER TO {}", object.identity, quote_ident(&migrator)))];
            statements.extend(self.keep_usage(object));
            self.plan.push(
                Phase::Ownership,
                format!("owner of {} `{}`: `{}` → `{migrator}`", object.kind, object.identity, object.owner),
                statements,
                1,
            );
        }
        if !reassign_from.is_empty() {
            self.reassign(&reassign_from, &extensions);
        }
    }

    fn refuse_outside(&mut self, object: &OwnedObject, schema: &str) {
        self.plan.refusals.push(format!(
            "`{}` owns {} `{}` in schema `{schema}`, which is not in APP_DB_SCHEMAS: add `{schema}` to APP_DB_SCHEMAS \
             so the runtime roles keep access to it, or move the object",
            object.owner, object.kind, object.identity
        ));
    }

    /// Functions and types stay usable by the runtime role that owned them:
    /// the owner change takes its implicit EXECUTE/USAGE away, which only
    /// matters where PUBLIC does not hold it (PostgreSQL's default is that it does).
    fn keep_usage(&mut self, object: &OwnedObject) -> Vec<Sql> {
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
        self.acl_statements(keyword, &object.identity, &migrator, &[change])
    }

    /// Extensions cannot change owner with ALTER; `REASSIGN OWNED` can, but
    /// it also takes every database and tablespace the role owns. Those are
    /// lent to the migrator for the statement and given back, in one
    /// transaction, so other databases end as they were.
    fn reassign(&mut self, from: &BTreeSet<String>, what: &[String]) {
        let migrator = self.migrator().to_string();
        let mut before = Vec::new();
        let mut after = Vec::new();
        // Cluster-wide objects REASSIGN OWNED would also move.
        let databases = self.snap.other_databases.iter().map(|d| ("DATABASE", "database", &d.name, &d.owner, &d.acl));
        let tablespaces = self.snap.tablespaces.iter().map(|t| ("TABLESPACE", "tablespace", &t.name, &t.owner, &t.acl));
        for (keyword, kind, name, owner, acl) in databases.chain(tablespaces).filter(|o| from.contains(o.3)) {
            if acl.iter().any(|i| i.grantee == Grantee::role(&migrator) || i.grantor == migrator) {
                self.plan.refusals.push(format!(
                    "`{owner}` owns {} here and also owns {kind} `{name}`, whose ACL names `{migrator}`; moving them \
                     would change that {kind}'s ACL. Move them by hand",
                    what.join(", ")
                ));
                return;
            }
            let name = quote_ident(name);
            before.push(Sql::new(format!("ALTER {keyword} {name} OWNER TO {}", quote_ident(&migrator))));
            after.push(Sql::new(format!("ALTER {keyword} {name} OWNER TO {}", quote_ident(owner))));
        }
        for role in from {
            self.plan.needs.insert(Need::Reassign { from: role.clone(), to: migrator.clone() });
        }
        let roles: Vec<String> = from.iter().map(|r| quote_ident(r)).collect();
        let mut statements = before;
        statements.push(Sql::new(format!("REASSIGN OWNED BY {} TO {}", roles.join(", "), quote_ident(&migrator))));
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

    fn default_privileges(&mut self) {
        let migrator = self.migrator().to_string();
        let mut wanted = wants::default_rows(self.model);
        wanted.retain(|(schema, _)| !schema.as_deref().is_some_and(|s| self.left_to_migrations(s)));
        // Rows that exist, and the migrator's per-schema rows the model wants.
        let mut rows: Vec<(String, Option<String>, char, Vec<AclItem>)> = self
            .snap
            .db
            .default_acls
            .iter()
            .map(|d| (d.role.clone(), d.schema.clone(), d.objtype, d.acl.clone()))
            .collect();
        for (schema, objtype) in &wanted {
            if !rows.iter().any(|(role, s, t, _)| *role == migrator && s == schema && t == objtype) {
                rows.push((migrator.clone(), schema.clone(), *objtype, Vec::new()));
            }
        }
        rows.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        for (role, schema, objtype, acl) in rows {
            let Some(objects) = default_acl_keyword(objtype) else { continue };
            let mut changes = Vec::new();
            if role == migrator {
                for (grantee, want) in wants::migrator_default(self.model, schema.as_deref(), objtype) {
                    changes.extend(diff(&acl, &grantee, want));
                }
            } else if self.model.is_runtime_role(&role) {
                // The legacy `FOR ROLE app_user` defaults: inert now that the role
                // creates nothing, and misleading; removed.
                // A per-schema row only adds to the global defaults, so all of
                // it goes; a global row keeps what PostgreSQL grants by default
                // (the owner's own rights, PUBLIC's EXECUTE and USAGE).
                for item in &acl {
                    let builtin = item.grantee == Grantee::role(&role)
                        || (item.grantee == Grantee::Public && matches!(objtype, 'f' | 'T'));
                    if schema.is_none() && builtin {
                        continue;
                    }
                    changes.push(AclChange::Revoke {
                        grantee: item.grantee.clone(),
                        privs: item.privs,
                        grantor: role.clone(),
                    });
                }
            } else {
                // Another role's defaults (`FOR ROLE postgres … TO app_user`):
                // whatever it creates later would be granted to the runtime
                // roles outside the model. Those grants go.
                for item in
                    acl.iter().filter(|i| matches!(&i.grantee, Grantee::Role(r) if self.model.is_runtime_role(r)))
                {
                    changes.push(AclChange::Revoke {
                        grantee: item.grantee.clone(),
                        privs: item.privs,
                        grantor: role.clone(),
                    });
                }
            }
            if changes.is_empty() {
                continue;
            }
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::ActAs(role.clone()));
            }
            let scope = match &schema {
                Some(s) => format!(" IN SCHEMA {}", quote_ident(s)),
                None => String::new(),
            };
            let prefix = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}{scope}", quote_ident(&role));
            let mut sorted = changes.clone();
            sorted.sort_by_key(|c| !matches!(c, AclChange::Grant { .. }));
            let statements = sorted
                .iter()
                .map(|change| {
                    Sql::new(match change {
                        AclChange::Grant { grantee, privs } => {
                            format!("{prefix} GRANT {} ON {objects} TO {}", privs.sql(), grantee.sql())
                        }
                        AclChange::Revoke { grantee, privs, .. } => {
                            format!("{prefix} REVOKE {} ON {objects} FROM {} CASCADE", privs.sql(), grantee.sql())
                        }
                        AclChange::RevokeGrantOption { grantee, privs, .. } => {
                            format!(
                                "{prefix} REVOKE GRANT OPTION FOR {} ON {objects} FROM {} CASCADE",
                                privs.sql(),
                                grantee.sql()
                            )
                        }
                    })
                })
                .collect();
            let place = schema.as_deref().map(|s| format!(" in schema `{s}`")).unwrap_or_else(|| " everywhere".into());
            self.plan.push(
                Phase::DefaultPrivileges,
                format!(
                    "default privileges for {} created by `{role}`{place}: {}",
                    objects.to_lowercase(),
                    describe(&changes)
                ),
                statements,
                0,
            );
        }
    }
}

fn keyword(rel: &Relation) -> &'static str {
    if rel.is_sequence() {
        "SEQUENCE"
    } else {
        "TABLE"
    }
}

/// The `ALTER … OWNER TO` keyword for a `pg_identify_object` type, when one exists.
fn alter_keyword(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "function" => "FUNCTION",
        "aggregate" => "AGGREGATE",
        "procedure" => "PROCEDURE",
        "type" | "composite type" => "TYPE",
        "domain" => "DOMAIN",
        "collation" => "COLLATION",
        "conversion" => "CONVERSION",
        "operator" => "OPERATOR",
        "operator class" => "OPERATOR CLASS",
        "operator family" => "OPERATOR FAMILY",
        "text search configuration" => "TEXT SEARCH CONFIGURATION",
        "text search dictionary" => "TEXT SEARCH DICTIONARY",
        "statistics object" => "STATISTICS",
        "language" => "LANGUAGE",
        "large object" => "LARGE OBJECT",
        "event trigger" => "EVENT TRIGGER",
        "publication" => "PUBLICATION",
        "subscription" => "SUBSCRIPTION",
        "foreign-data wrapper" => "FOREIGN DATA WRAPPER",
        "server" => "SERVER",
        _ => return None,
    })
}

fn default_acl_keyword(objtype: char) -> Option<&'static str> {
    Some(match objtype {
        'r' => "TABLES",
        'S' => "SEQUENCES",
        'f' => "FUNCTIONS",
        'T' => "TYPES",
        'n' => "SCHEMAS",
        'L' => "LARGE OBJECTS",
        _ => return None,
    })
}

/// `+CONNECT app_user, -CONNECT,TEMPORARY PUBLIC` style summary of changes.
pub fn describe(changes: &[AclChange]) -> String {
    changes
        .iter()
        .map(|change| match change {
            AclChange::Grant { grantee, privs } => format!("grant {} to {grantee}", privs.sql()),
            AclChange::Revoke { grantee, privs, .. } => format!("revoke {} from {grantee}", privs.sql()),
            AclChange::RevokeGrantOption { grantee, privs, .. } => {
                format!("revoke grant option for {} from {grantee}", privs.sql())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
