//! The catalog audit (spec §6): a pure function of the model, the snapshot
//! the provisioner also reads, the exemptions and the bookkeeping status.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use roles::acl::{AclItem, Grantee, Privs, Want};
use roles::snapshot::{Relation, Snapshot};
use roles::{wants, Model};

use crate::exemptions::{Exemptions, Kind};
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
    for schema in &db.other_schemas {
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

    let mut policies = CheckSummary::new("rls-policies", "RLS enabled on every table with a policy");
    for rel in db.relations.iter().filter(|r| is_table(r) && r.policies > 0) {
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

    let mut tenancy = CheckSummary::new("rls-tenancy", "RLS on every table that reaches `users` through foreign keys");
    let users = model
        .app_schemas
        .iter()
        .find_map(|schema| db.relations.iter().find(|r| r.schema == *schema && r.name == "users" && is_table(r)));
    match users {
        None => tenancy.note(Verdict::NotApplicable, "users", "no `users` table in the app schemas yet"),
        Some(users) => {
            // Tables that reach `users` directly or through other tables.
            let mut referencing: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for (from, to) in &db.foreign_keys {
                referencing.entry(*to).or_default().push(*from);
            }
            let mut reach: BTreeMap<i64, Option<i64>> = BTreeMap::from([(users.oid, None)]);
            let mut queue = VecDeque::from([users.oid]);
            while let Some(target) = queue.pop_front() {
                for from in referencing.get(&target).into_iter().flatten() {
                    if !reach.contains_key(from) {
                        reach.insert(*from, Some(target));
                        queue.push_back(*from);
                    }
                }
            }
            for (oid, via) in &reach {
                let Some(rel) = by_oid.get(oid).filter(|r| is_table(r) && model.is_app_schema(&r.schema)) else {
                    continue;
                };
                tenancy.checked += 1;
                if !rel.rls_enabled {
                    let path = via
                        .and_then(|v| by_oid.get(&v))
                        .map(|v| format!(" (references `{}`)", qualified(v)))
                        .unwrap_or_default();
                    exempt_or_fail(
                        &mut tenancy,
                        Kind::Table,
                        qualified(rel),
                        format!("reaches `users`{path} but has no row-level security: every tenant's rows are visible"),
                    );
                }
            }
        }
    }
    checks.push(tenancy);

    let mut views = CheckSummary::new("views-over-rls", "no view bypasses RLS through its owner's rights");
    for view in db.relations.iter().filter(|r| matches!(r.kind, 'v' | 'm')) {
        let Some(table) = db.rls_source(view.oid) else { continue };
        views.checked += 1;
        let problem = if view.kind == 'm' {
            Some(format!(
                "materialized view over RLS table `{}`: it stores every tenant's rows as its owner `{}` saw them at refresh",
                qualified(table),
                view.owner
            ))
        } else if snap.server_version < 150000 {
            Some(format!(
                "view over RLS table `{}` runs with its owner's rights (`{}`), and PostgreSQL {} has no security_invoker",
                qualified(table),
                view.owner,
                snap.major()
            ))
        } else if !view.security_invoker {
            Some(format!(
                "view over RLS table `{}` runs with its owner's rights (`{}`, which bypasses RLS); set security_invoker = true",
                qualified(table),
                view.owner
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            exempt_or_fail(&mut views, Kind::View, qualified(view), problem);
        }
    }
    checks.push(views);

    let mut definers =
        CheckSummary::new("security-definer", "no SECURITY DEFINER function owned by a role that bypasses RLS");
    for function in &db.definer_functions {
        definers.checked += 1;
        if function.owner_bypasses_rls {
            exempt_or_fail(
                &mut definers,
                Kind::Function,
                function.identity.clone(),
                format!("SECURITY DEFINER, owned by `{}`, which bypasses RLS: callers get its rights", function.owner),
            );
        }
    }
    checks.push(definers);

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
