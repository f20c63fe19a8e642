//! The catalog audit (spec §6): a pure function of the model, the snapshot
//! the provisioner also reads, the exemptions and the bookkeeping status.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use roles::acl::{AclItem, Grantee, Privs, Want, CREATE};
use roles::reach::{self, PathClass, State};
use roles::snapshot::{Relation, Snapshot};
use roles::{wants, Model};

use crate::exemptions::{Exemptions, Kind};
use crate::policies::Policy;
use crate::report::{CheckSummary, Verdict};

/// What is wrong with `acl` for each grantee of `wants`, one sentence each.
pub fn acl_problems(acl: &[AclItem], wants: &[(Grantee, Want)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (grantee, want) in wants {
        let items: Vec<&AclItem> = acl.iter().filter(|i| &i.grantee == grantee).collect();
        let held = items.iter().fold(Privs::NONE, |all, i| all.union(i.privs));
        let options = items.iter().fold(Privs::NONE, |all, i| all.union(i.grant_option));
        let show = |p: Privs| if p.is_empty() { "nothing".to_string() } else { p.sql() };
        match want {
            Want::Exactly(expected) => {
                if held != *expected {
                    problems.push(format!("{grantee} holds {} (expected {})", show(held), show(*expected)));
                } else if !options.is_empty() {
                    problems.push(format!("{grantee} may grant {} to others (WITH GRANT OPTION)", options.sql()));
                }
            }
            Want::AtLeast(expected) => {
                let missing = expected.minus(held);
                if !missing.is_empty() {
                    problems.push(format!("{grantee} lacks {}", missing.sql()));
                }
            }
            Want::Without(forbidden) => {
                let bad = held.intersect(*forbidden);
                if !bad.is_empty() {
                    problems.push(format!("{grantee} holds {}", bad.sql()));
                }
            }
        }
    }
    problems
}

fn qualified(rel: &Relation) -> String {
    format!("{}.{}", rel.schema, rel.name)
}

/// Every catalog check. `bookkeeping` is the Drizzle status when it could be
/// read, or why not.
pub fn audit(
    model: &Model,
    snap: &Snapshot,
    exemptions: &Exemptions,
    policy_rows: &[Policy],
    roots: &Roots,
    bookkeeping: Result<Vec<String>, String>,
    used: &mut BTreeSet<(Kind, String)>,
) -> Vec<CheckSummary> {
    let db = &snap.db;
    let by_oid: BTreeMap<i64, &Relation> = db.relations.iter().map(|r| (r.oid, r)).collect();
    let mut checks = Vec::new();

    let mut roles_check = CheckSummary::new("roles", "role attributes");
    for spec in model.roles() {
        roles_check.checked += 1;
        let Some(row) = snap.roles.get(&spec.name) else {
            roles_check
                .fail(&spec.name, format!("the {} role does not exist; run `cargo xtask db-provision`", spec.kind));
            continue;
        };
        let mut wrong = Vec::new();
        for (have, want, name) in [
            (row.superuser, false, "SUPERUSER"),
            (row.createdb, false, "CREATEDB"),
            (row.createrole, false, "CREATEROLE"),
            (row.replication, false, "REPLICATION"),
            (row.login, true, "LOGIN"),
            (row.bypassrls, spec.bypassrls(), "BYPASSRLS"),
        ] {
            if have != want {
                wrong.push(if have { format!("has {name}") } else { format!("lacks {name}") });
            }
        }
        if !wrong.is_empty() {
            roles_check.fail(&spec.name, wrong.join(", "));
        }
    }
    checks.push(roles_check);

    let mut memberships = CheckSummary::new("memberships", "no role memberships (pg_auth_members)");
    memberships.checked = 3;
    let names = model.role_names();
    for m in snap.memberships.iter().filter(|m| names.contains(&m.member)) {
        memberships.fail(
            &m.member,
            format!("is a member of `{}` (granted by `{}`) and can use its privileges", m.role, m.grantor),
        );
    }
    checks.push(memberships);

    let migrator = &model.migrator.name;
    let mut owners = CheckSummary::new("owners", "everything owned by the migrator");
    owners.checked += 1;
    match &snap.database {
        None => owners.fail(&model.db_name, "the database does not exist; run `cargo xtask db-provision`"),
        Some(database) if database.owner != *migrator => {
            owners.fail(&database.name, format!("database owned by `{}`, not `{migrator}`", database.owner))
        }
        Some(_) => {}
    }
    for schema in model.managed_schemas() {
        owners.checked += 1;
        match db.schemas.iter().find(|s| s.name == schema) {
            None if model.is_app_schema(&schema) && schema != "public" => owners.note(
                Verdict::NotApplicable,
                &schema,
                "does not exist yet: the migrations create it (`cargo xtask db-migrate`)",
            ),
            None => owners.fail(&schema, "schema missing; run `cargo xtask db-provision`"),
            Some(s) if s.owner != *migrator => owners.fail(&schema, format!("schema owned by `{}`", s.owner)),
            Some(_) => {}
        }
    }
    for rel in &db.relations {
        owners.checked += 1;
        if rel.owner != *migrator {
            owners.fail(qualified(rel), format!("{} owned by `{}`", rel.noun(), rel.owner));
        }
    }
    for object in &db.objects {
        if matches!(object.kind.as_str(), "index" | "toast table" | "toast table index") {
            continue;
        }
        let in_managed = object.schema.as_ref().is_some_and(|s| model.managed_schemas().contains(s));
        if object.catalog == "pg_class" && in_managed {
            continue; // a relation of a managed schema: counted above
        }
        owners.checked += 1;
        owners.fail(&object.identity, format!("{} owned by `{}`", object.kind, object.owner));
    }
    checks.push(owners);

    let mut stray = CheckSummary::new("stray-schemas", "no app-owned schema outside APP_DB_SCHEMAS");
    for schema in db.other_schemas.iter().filter(|s| model.role_names().contains(&s.owner)) {
        stray.checked += 1;
        stray.fail(
            &schema.name,
            format!(
                "owned by `{}` but not in APP_DB_SCHEMAS: the runtime roles get no grants there; add it or drop it",
                schema.owner
            ),
        );
    }
    checks.push(stray);

    let mut database_acl = CheckSummary::new("database-acl", "database: CONNECT only, nothing for PUBLIC");
    if let Some(database) = &snap.database {
        database_acl.checked = 1;
        for problem in acl_problems(&database.acl, &wants::database(model, None)) {
            database_acl.fail(&database.name, problem);
        }
    }
    checks.push(database_acl);

    let mut schema_acl = CheckSummary::new("schema-acl", "app schemas: USAGE only, no CREATE for PUBLIC");
    let mut bookkeeping_acl = CheckSummary::new("bookkeeping-access", "no runtime access to the Drizzle bookkeeping");
    for schema in &db.schemas {
        let target = if model.is_app_schema(&schema.name) { &mut schema_acl } else { &mut bookkeeping_acl };
        target.checked += 1;
        for problem in acl_problems(&schema.acl, &wants::schema(model, &schema.name)) {
            target.fail(format!("schema {}", schema.name), problem);
        }
    }
    let mut table_acl = CheckSummary::new("table-acl", "tables and views: exactly DML for the runtime roles");
    let mut sequence_acl = CheckSummary::new("sequence-acl", "sequences: exactly USAGE, SELECT for the runtime roles");
    for rel in &db.relations {
        let target = if !model.is_app_schema(&rel.schema) {
            &mut bookkeeping_acl
        } else if rel.is_sequence() {
            &mut sequence_acl
        } else {
            &mut table_acl
        };
        target.checked += 1;
        for problem in acl_problems(&rel.acl, &wants::relation(model, rel)) {
            target.fail(qualified(rel), problem);
        }
    }
    let mut column_acl = CheckSummary::new("column-acl", "no column grants to the runtime roles or PUBLIC");
    column_acl.checked = db.columns.len();
    for column in &db.columns {
        let table = by_oid.get(&column.table_oid).map(|r| qualified(r)).unwrap_or_else(|| column.table_oid.to_string());
        for problem in acl_problems(&column.acl, &wants::column(model)) {
            column_acl.fail(format!("{table}.{}", column.column), problem);
        }
    }
    checks.extend([schema_acl, table_acl, sequence_acl, column_acl, bookkeeping_acl]);

    let mut defaults =
        CheckSummary::new("default-privileges", "default privileges FOR ROLE the migrator in each app schema");
    for (schema, objtype) in wants::default_rows(model) {
        if schema.as_ref().is_some_and(|s| !db.schemas.iter().any(|have| have.name == *s)) {
            continue; // not created yet (see the owners check)
        }
        defaults.checked += 1;
        let acl = db
            .default_acls
            .iter()
            .find(|d| d.role == *migrator && d.schema == schema && d.objtype == objtype)
            .map(|d| d.acl.clone())
            .unwrap_or_default();
        let noun = if objtype == 'r' { "tables" } else { "sequences" };
        for problem in acl_problems(&acl, &wants::migrator_default(model, schema.as_deref(), objtype)) {
            defaults.fail(
                format!("{noun} created by {migrator} in {}", schema.as_deref().unwrap_or("every schema")),
                problem,
            );
        }
    }
    for row in &db.default_acls {
        let place = row.schema.as_deref().unwrap_or("every schema");
        if row.role == *migrator {
            if wants::default_rows(model).contains(&(row.schema.clone(), row.objtype)) {
                continue;
            }
            defaults.checked += 1;
            for problem in acl_problems(&row.acl, &wants::migrator_default(model, row.schema.as_deref(), row.objtype)) {
                defaults.fail(format!("objects ({}) created by {migrator} in {place}", row.objtype), problem);
            }
        } else if model.is_runtime_role(&row.role) {
            defaults.checked += 1;
            defaults.fail(
                format!("FOR ROLE {} in {place}", row.role),
                "legacy default privileges of a runtime role; `cargo xtask db-provision` removes them",
            );
        } else {
            // Another role's defaults: what it creates later goes to the
            // runtime roles (directly, or through PUBLIC) outside the model.
            defaults.checked += 1;
            for item in &row.acl {
                let to_runtime = matches!(&item.grantee, Grantee::Role(r) if model.is_runtime_role(r));
                let to_public =
                    item.grantee == Grantee::Public && !(row.schema.is_none() && matches!(row.objtype, 'f' | 'T'));
                if to_runtime || to_public {
                    defaults.fail(
                        format!("FOR ROLE {} in {place}", row.role),
                        format!(
                            "grants {} on every new {} to {}{}",
                            item.privs.sql(),
                            match row.objtype {
                                'r' => "table",
                                'S' => "sequence",
                                'f' => "function",
                                'T' => "type",
                                'n' => "schema",
                                _ => "object",
                            },
                            item.grantee,
                            if to_runtime { "; `cargo xtask db-provision` removes it" } else { "; revoke it" }
                        ),
                    );
                }
            }
        }
    }
    checks.push(defaults);

    let is_table = |r: &Relation| matches!(r.kind, 'r' | 'p');
    let mut exempt_or_fail = |check: &mut CheckSummary, kind: Kind, subject: String, message: String| match exemptions
        .find(kind, &subject)
    {
        Some(exemption) => {
            used.insert((kind, subject.clone()));
            check.note(Verdict::Exempt, subject, format!("{message}; exempted: {}", exemption.reason));
        }
        None => check.fail(subject, message),
    };

    let declared_none = !exemptions.rls.enabled;
    let not_applicable = |check: &mut CheckSummary| {
        check.note(
            Verdict::NotApplicable,
            "rls",
            format!("not applicable: the app declares no RLS ({})", exemptions.source_text()),
        )
    };

    let mut policies = CheckSummary::new("rls-policies", "RLS enabled on every table with a policy");
    if declared_none {
        not_applicable(&mut policies);
    }
    for rel in db.relations.iter().filter(|r| is_table(r) && r.policies > 0 && !declared_none) {
        policies.checked += 1;
        if !rel.rls_enabled {
            exempt_or_fail(
                &mut policies,
                Kind::Table,
                qualified(rel),
                format!("has {} policies but RLS is disabled: they do nothing", rel.policies),
            );
        }
    }
    checks.push(policies);

    let mut tenancy =
        CheckSummary::new("rls-tenancy", "RLS on every table that reaches a tenant root through foreign keys");
    if declared_none {
        not_applicable(&mut tenancy);
        if let Some(rel) = db.relations.iter().find(|r| r.rls_enabled && model.is_app_schema(&r.schema)) {
            tenancy.note(
                Verdict::NotApplicable,
                qualified(rel),
                "has RLS although the policy file says the app uses none; it is not checked",
            );
        }
    } else {
        match roots {
            Roots::Found { tables, how } => {
                tenancy.note(Verdict::Pass, "tenant roots", how.clone());
                for root in tables {
                    tenancy_from(root, db, model, &by_oid, &mut tenancy, &mut exempt_or_fail);
                }
            }
            Roots::Missing(missing) if !db.relations.iter().any(|r| model.is_app_schema(&r.schema) && is_table(r)) => {
                tenancy.note(
                    Verdict::NotApplicable,
                    "tenant roots",
                    format!(
                        "{} not created yet: no table in the app schemas (migrations pending?)",
                        missing.join(", ")
                    ),
                )
            }
            Roots::Missing(missing) => {
                for name in missing {
                    tenancy.fail(
                        name.clone(),
                        format!(
                            "declared as a tenant root in {}, but no such table exists in the app schemas",
                            exemptions.source_text()
                        ),
                    );
                }
            }
            Roots::None(why) => tenancy.note(Verdict::Unproven, "tenant roots", why.clone()),
        }
    }
    checks.push(tenancy);

    checks.extend(owners_rights(model, snap, &mut exempt_or_fail));
    checks.push(crate::policies::check(model, db, policy_rows, exemptions, used));
    checks.push(role_settings(model, snap, policy_rows));
    checks.push(other_schemas_create(model, snap));
    checks.push(foreign_data(model, snap));
    checks.push(other_databases(model, snap));

    let mut drizzle = CheckSummary::new("bookkeeping", "Drizzle bookkeeping matches the migrations folder");
    match bookkeeping {
        Ok(problems) => {
            drizzle.checked = 1;
            for problem in problems {
                drizzle.fail("drizzle", problem);
            }
        }
        Err(why) => drizzle.note(Verdict::NotApplicable, "drizzle", why),
    }
    checks.push(drizzle);
    checks
}

/// Owner's-rights paths (`roles::reach`) as they are: views and
/// materialized views, rules, definer functions, children without RLS.
fn owners_rights(
    model: &Model,
    snap: &Snapshot,
    exempt_or_fail: &mut dyn FnMut(&mut CheckSummary, Kind, String, String),
) -> Vec<CheckSummary> {
    let reach = &snap.db.reach;
    let mut views = CheckSummary::new("views-over-rls", "no view or materialized view bypasses RLS through its owner");
    views.checked = reach.objects.iter().filter(|o| o.rule.is_none()).count();
    let mut rules = CheckSummary::new("rules", "no rule runs as an owner that bypasses RLS");
    rules.checked = reach.objects.iter().filter(|o| o.rule.is_some()).count();
    let mut definers =
        CheckSummary::new("security-definer", "no SECURITY DEFINER function a runtime role can set off (any schema)");
    definers.checked = reach.definers.len();
    let mut children =
        CheckSummary::new("rls-children", "no partition or inheritance child of an RLS table without RLS");
    children.checked = reach.children.len();
    for path in reach::paths(model, &snap.db, State::AsIs, snap.server_version) {
        let check = match path.class {
            PathClass::View | PathClass::MaterializedView => &mut views,
            PathClass::Rule => &mut rules,
            PathClass::DefinerFunction => &mut definers,
            PathClass::UnprotectedChild => &mut children,
        };
        exempt_or_fail(check, path.class.exemption(), path.subject, format!("{}; fix: {}", path.message, path.fix));
    }
    vec![views, rules, definers, children]
}

/// Role and database defaults that break or weaken the model for the
/// runtime roles (`wants::setting_problem`), and defaults of any setting the
/// policies read.
fn role_settings(model: &Model, snap: &Snapshot, policies: &[Policy]) -> CheckSummary {
    let mut check = CheckSummary::new("role-settings", "no role or database default that weakens RLS");
    let read_by_policies: BTreeSet<String> =
        policies.iter().flat_map(|p| p.settings_read()).map(|s| s.to_ascii_lowercase()).collect();
    for setting in &snap.settings {
        check.checked += 1;
        let place = match (&setting.role, &setting.database) {
            (Some(role), Some(db)) => format!("ALTER ROLE {role} IN DATABASE {db} SET {}", setting.name),
            (Some(role), None) => format!("ALTER ROLE {role} SET {}", setting.name),
            (None, db) => format!("ALTER DATABASE {} SET {}", db.as_deref().unwrap_or("?"), setting.name),
        };
        let problem =
            wants::setting_problem(model, setting.role.as_deref(), &setting.name, &setting.value).or_else(|| {
                let runtime = setting.role.as_deref().is_none_or(|r| r == model.runtime.name);
                (runtime && read_by_policies.contains(&setting.name.to_ascii_lowercase())).then(|| {
                    format!(
                        "{} = '{}' by default, and the RLS policies read it: a session that sets nothing acts with it",
                        setting.name, setting.value
                    )
                })
            });
        if let Some(problem) = problem {
            check.fail(place, format!("{problem}; `cargo xtask db-provision` removes it"));
        }
    }
    check
}

/// CREATE on a schema outside the app schemas, for a runtime role or PUBLIC.
fn other_schemas_create(model: &Model, snap: &Snapshot) -> CheckSummary {
    let mut check = CheckSummary::new("schema-create", "no CREATE for the runtime roles on any other schema");
    let grantees = [Grantee::role(&model.runtime.name), Grantee::role(&model.service.name), Grantee::Public];
    for schema in &snap.db.other_schemas {
        check.checked += 1;
        let wants: Vec<(Grantee, Want)> = grantees.iter().map(|g| (g.clone(), Want::Without(CREATE))).collect();
        for problem in acl_problems(&schema.acl, &wants) {
            check.fail(format!("schema {}", schema.name), format!("{problem}: it may create objects there"));
        }
    }
    check
}

/// USAGE on foreign-data wrappers and servers lets a role create servers and
/// user mappings; user mappings of the runtime roles are listed.
fn foreign_data(model: &Model, snap: &Snapshot) -> CheckSummary {
    let mut check =
        CheckSummary::new("foreign-data", "no USAGE on foreign-data wrappers or servers for the runtime roles");
    let grantees = [Grantee::role(&model.runtime.name), Grantee::role(&model.service.name), Grantee::Public];
    for object in &snap.db.foreign {
        check.checked += 1;
        let wants: Vec<(Grantee, Want)> = grantees.iter().map(|g| (g.clone(), Want::Without(Privs::ALL))).collect();
        for problem in acl_problems(&object.acl, &wants) {
            check.fail(
                format!("{} {}", object.noun(), object.name),
                format!("{problem}: it may create {}", if object.is_server() { "user mappings" } else { "servers" }),
            );
        }
    }
    for (server, user) in &snap.db.user_mappings {
        check.note(
            Verdict::Residual,
            format!("user mapping {user}@{server}"),
            "the mapped remote credentials are used for the foreign tables the role may read",
        );
    }
    check
}

/// Databases and tablespaces the runtime roles own elsewhere in the cluster;
/// what other databases contain is out of this check's scope.
fn other_databases(model: &Model, snap: &Snapshot) -> CheckSummary {
    let mut check = CheckSummary::new("other-databases", "the runtime roles own no database or tablespace");
    for database in snap.other_databases.iter().filter(|d| model.is_runtime_role(&d.owner)) {
        check.checked += 1;
        check.fail(format!("database {}", database.name), format!("owned by `{}`", database.owner));
    }
    for tablespace in snap.tablespaces.iter().filter(|t| model.is_runtime_role(&t.owner)) {
        check.checked += 1;
        check.fail(format!("tablespace {}", tablespace.name), format!("owned by `{}`", tablespace.owner));
    }
    check.note(
        Verdict::NotApplicable,
        "scope",
        "objects inside other databases of the cluster are not checked here; run db-check against each app database",
    );
    check
}

/// The tables tenancy hangs from, and how they were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// `schema.name` of each root table, and a sentence saying why.
    Found { tables: Vec<String>, how: String },
    /// Declared roots that do not exist.
    Missing(Vec<String>),
    /// None found: why, and what to declare.
    None(String),
}

impl Roots {
    /// The first root, for the live proof.
    pub fn first(&self) -> Option<&str> {
        match self {
            Roots::Found { tables, .. } => tables.first().map(String::as_str),
            _ => None,
        }
    }
}

/// Whether a table's name says it holds the users (or accounts) of a
/// multi-tenant app: `users`, `user`, `accounts`, `account`, or a
/// prefixed `<app>_user` as better-auth writes it.
pub fn looks_like_user_table(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "users" | "user" | "accounts" | "account")
        || name.ends_with("_user")
        || name.ends_with("_users")
}

/// The tenant roots: declared in the policy file, or the table named like a
/// user table that most foreign keys reference, or none (said, never a
/// silent pass).
pub fn tenant_roots(model: &Model, snap: &Snapshot, rls: &roles::exemptions::RlsDeclaration) -> Roots {
    let db = &snap.db;
    let tables: Vec<&Relation> =
        db.relations.iter().filter(|r| matches!(r.kind, 'r' | 'p') && model.is_app_schema(&r.schema)).collect();
    if !rls.tenant_roots.is_empty() {
        let missing: Vec<String> =
            rls.tenant_roots.iter().filter(|root| !tables.iter().any(|t| qualified(t) == **root)).cloned().collect();
        if !missing.is_empty() {
            return Roots::Missing(missing);
        }
        return Roots::Found {
            tables: rls.tenant_roots.clone(),
            how: format!("declared in the policy file: {}", rls.tenant_roots.join(", ")),
        };
    }
    let uses_rls = tables.iter().any(|t| t.rls_enabled || t.policies > 0);
    if !uses_rls {
        return Roots::None(
            "no table of the app schemas uses RLS, so no tenancy was checked; if the app uses none by design, say \
             `[rls] enabled = false` in the policy file (platform/db/rls-policy.toml)"
                .to_string(),
        );
    }
    let referenced = |oid: i64| db.foreign_keys.iter().filter(|(from, to)| *to == oid && *from != oid).count();
    let best = tables
        .iter()
        .filter(|t| looks_like_user_table(&t.name))
        .max_by_key(|t| (referenced(t.oid), t.rls_enabled, std::cmp::Reverse(qualified(t))));
    match best {
        Some(root) => Roots::Found {
            tables: vec![qualified(root)],
            how: format!(
                "took `{}` as the tenant root: it is named like a user table and {} foreign keys reference it; \
                 declare `[rls] tenant_roots` in the policy file to make it certain",
                qualified(root),
                referenced(root.oid)
            ),
        },
        None => Roots::None(
            "no table looks like the tenant root (users, user, accounts, <prefix>_user), so no tenancy through foreign \
             keys was checked; declare `[rls] tenant_roots` in the policy file"
                .to_string(),
        ),
    }
}

/// RLS on every table that reaches `root` through foreign keys.
fn tenancy_from(
    root: &str,
    db: &roles::snapshot::DbContents,
    model: &Model,
    by_oid: &BTreeMap<i64, &Relation>,
    tenancy: &mut CheckSummary,
    exempt_or_fail: &mut dyn FnMut(&mut CheckSummary, Kind, String, String),
) {
    let Some(root_rel) = db.relations.iter().find(|r| qualified(r) == root) else { return };
    let mut referencing: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (from, to) in &db.foreign_keys {
        referencing.entry(*to).or_default().push(*from);
    }
    let mut reach: BTreeMap<i64, Option<i64>> = BTreeMap::from([(root_rel.oid, None)]);
    let mut queue = VecDeque::from([root_rel.oid]);
    while let Some(target) = queue.pop_front() {
        for from in referencing.get(&target).into_iter().flatten() {
            if !reach.contains_key(from) {
                reach.insert(*from, Some(target));
                queue.push_back(*from);
            }
        }
    }
    for (oid, via) in &reach {
        let Some(rel) = by_oid.get(oid).filter(|r| matches!(r.kind, 'r' | 'p') && model.is_app_schema(&r.schema))
        else {
            continue;
        };
        tenancy.checked += 1;
        if !rel.rls_enabled {
            let path = via
                .and_then(|v| by_oid.get(&v))
                .map(|v| format!(" (references `{}`)", qualified(v)))
                .unwrap_or_default();
            exempt_or_fail(
                tenancy,
                Kind::Table,
                qualified(rel),
                format!(
                    "reaches `{}`{path} but has no row-level security: every tenant's rows are visible",
                    root_rel.name
                ),
            );
        }
    }
}
