//! After migrations that created an app schema, or objects the migrator's
//! default privileges do not cover (a schema `db-provision` left to the
//! migrations has none yet), the runner converges the runtime roles'
//! access there as the migrator, which owns it all: `USAGE` on the schema,
//! DML on tables and views, `USAGE, SELECT` on sequences, and the
//! migrator's default privileges for what later migrations create. It runs
//! in the batch's transaction where it can, so no request ever meets a
//! table without its grants, and sends nothing when nothing is missing.
//! Like `db-provision`, it grants DML only on tables and views that run as
//! their caller (`roles::wants::writers_grant`), and nothing the policy file
//! declares `[[private]]` for a role.

use anyhow::{Context, Result};
use postgres::types::Type;
use postgres::Client;

use roles::acl::{AclChange, Grantee, Privs, DML, SEQUENCE_USE, USAGE};
use roles::snapshot::reach::security_invoker;
use roles::sql::Change;
use roles::wants;

use crate::config::Config;

/// The privileges the runtime roles hold on app tables and sequences, as
/// the model declares them (`roles::acl::DML`, `SEQUENCE_USE`), by name.
fn privileges() -> (Vec<String>, Vec<String>) {
    let names = |privs: Privs| privs.sql().split(", ").map(str::to_string).collect();
    (names(DML), names(SEQUENCE_USE))
}

/// `function(g.oid, c.oid, 'P1') AND …`: every one of `privs` held.
fn holds(function: &str, privs: &[String]) -> String {
    privs.iter().map(|p| format!("{function}(g.oid, c.oid, '{p}')")).collect::<Vec<_>>().join(" AND ")
}

/// `'P1', 'P2'`: `privs` as SQL literals.
fn list(privs: &[String]) -> String {
    privs.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
}

/// One query: everything the runtime roles lack in the app schemas the
/// session's role owns, as `(kind, object, role, schema.name, relkind,
/// reloptions)`.
fn missing_sql() -> String {
    let (table, sequence) = privileges();
    format!(
        "WITH me AS (SELECT oid FROM pg_roles WHERE rolname = current_user), \
grantees AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY($2)), \
schemas AS (SELECT n.oid, n.nspname FROM pg_namespace n WHERE n.nspname = ANY($1) AND n.nspowner = (SELECT oid FROM me)) \
SELECT 'schema', quote_ident(s.nspname), g.rolname::text, ARRAY[s.nspname::text], 'n', NULL::text[] \
  FROM schemas s CROSS JOIN grantees g \
  WHERE NOT has_schema_privilege(g.oid, s.oid, 'USAGE') \
UNION ALL \
SELECT 'table', quote_ident(s.nspname) || '.' || quote_ident(c.relname), g.rolname::text, \
       {lineage}, c.relkind::text, c.reloptions \
  FROM pg_class c JOIN schemas s ON s.oid = c.relnamespace CROSS JOIN grantees g \
  WHERE c.relkind IN ('r', 'p', 'v') AND c.relowner = (SELECT oid FROM me) AND NOT ({table_holds}) \
UNION ALL \
SELECT 'sequence', quote_ident(s.nspname) || '.' || quote_ident(c.relname), g.rolname::text, \
       ARRAY[s.nspname || '.' || c.relname], 'S', NULL \
  FROM pg_class c JOIN schemas s ON s.oid = c.relnamespace CROSS JOIN grantees g \
  WHERE c.relkind = 'S' AND c.relowner = (SELECT oid FROM me) AND NOT ({sequence_holds}) \
UNION ALL \
SELECT 'default ' || t.objtype, quote_ident(s.nspname), g.rolname::text, ARRAY[s.nspname::text], 'n', NULL \
  FROM schemas s CROSS JOIN (VALUES ('r'), ('S')) t(objtype) CROSS JOIN grantees g \
  WHERE (SELECT count(DISTINCT a.privilege_type) FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a \
         WHERE d.defaclrole = (SELECT oid FROM me) AND d.defaclnamespace = s.oid AND d.defaclobjtype = t.objtype::\"char\" \
           AND a.grantee = g.oid AND a.privilege_type = ANY (CASE t.objtype WHEN 'r' \
               THEN ARRAY[{table_list}] ELSE ARRAY[{sequence_list}] END)) \
        < CASE t.objtype WHEN 'r' THEN {table_count} ELSE {sequence_count} END \
ORDER BY 1, 2, 3",
        lineage = roles::snapshot::reach::LINEAGE_SQL,
        table_holds = holds("has_table_privilege", &table),
        sequence_holds = holds("has_sequence_privilege", &sequence),
        table_list = list(&table),
        sequence_list = list(&sequence),
        table_count = table.len(),
        sequence_count = sequence.len(),
    )
}

/// The runtime roles the grants go to: the names the environment gives
/// (`APP_DB_USER`, `APP_DB_SERVICE_USER` or their DSNs), else the defaults.
fn grantees(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config.runtime_users.iter().map(|(_, name)| name.clone()).collect();
    if names.is_empty() {
        names = vec![dbenv::RoleKind::Runtime.default_name().into(), dbenv::RoleKind::Service.default_name().into()];
    }
    names.sort();
    names.dedup();
    names
}

/// A lean first look (cheap to plan on a fresh session): whether any grant
/// [`converge`] might send is missing. It may say yes where `converge` then
/// sends nothing (an owner-rights view, a `[[private]]` relation); it never
/// says no where `converge` would send something.
fn anything_missing_sql() -> String {
    let (table, sequence) = privileges();
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace s, pg_roles g \
           WHERE s.nspname = ANY($1) AND g.rolname = ANY($2) \
             AND s.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
             AND (NOT has_schema_privilege(g.oid, s.oid, 'USAGE') \
                  OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = s.oid AND c.relowner = s.nspowner \
                               AND c.relkind IN ('r', 'p', 'v', 'S') AND NOT CASE WHEN c.relkind = 'S' \
                               THEN {sequence_holds} ELSE {table_holds} END) \
                  OR (SELECT count(DISTINCT (d.defaclobjtype, a.privilege_type)) \
                        FROM pg_default_acl d, aclexplode(d.defaclacl) a \
                       WHERE d.defaclrole = s.nspowner AND d.defaclnamespace = s.oid AND a.grantee = g.oid \
                         AND ((d.defaclobjtype = 'r' AND a.privilege_type IN ({table_list})) \
                              OR (d.defaclobjtype = 'S' AND a.privilege_type IN ({sequence_list})))) < {count}))",
        table_holds = holds("has_table_privilege", &table),
        sequence_holds = holds("has_sequence_privilege", &sequence),
        table_list = list(&table),
        sequence_list = list(&sequence),
        count = table.len() + sequence.len(),
    )
}

/// Whether anything may be missing, in one read-only statement (see
/// [`anything_missing_sql`]), or a `[[private]]` relation may need a revoke.
pub fn anything_missing(client: &mut Client, config: &Config) -> Result<bool> {
    let roles = grantees(config);
    let row = client
        .query_typed_one(
            &anything_missing_sql(),
            &[(&config.app_schemas, Type::TEXT_ARRAY), (&roles, Type::TEXT_ARRAY)],
        )
        .context("read whether the runtime roles lack anything in the app schemas")?;
    let private = config.policy.entries.iter().any(|e| e.kind == roles::exemptions::Kind::Private);
    Ok(row.get::<_, bool>(0) || private)
}

/// Grants what is missing; returns a line per statement sent (nothing when
/// nothing was missing).
pub fn converge(client: &mut Client, config: &Config) -> Result<Vec<String>> {
    let roles = grantees(config);
    let rows = client
        .query_typed(&missing_sql(), &[(&config.app_schemas, Type::TEXT_ARRAY), (&roles, Type::TEXT_ARRAY)])
        .context("read what the runtime roles lack in the app schemas")?;
    // (kind, role) → objects, so one statement covers many objects.
    let mut grouped: Vec<((String, String), Vec<String>)> = Vec::new();
    for row in &rows {
        let key = (row.get::<_, String>(0), row.get::<_, String>(2));
        let (names, kind) = (row.get::<_, Vec<String>>(3), row.get::<_, String>(4));
        let options: Vec<String> = row.get::<_, Option<Vec<String>>>(5).unwrap_or_default();
        let relkind = roles::kinds::RelKind::from_code(kind.chars().next().unwrap_or('?'));
        let relation = key.0 == "table" || key.0 == "sequence";
        let private = names.iter().any(|name| config.policy.private_for(name, &key.1));
        if relation && (private || !wants::writers_grant(relkind, security_invoker(&options))) {
            continue;
        }
        let object: String = row.get(1);
        match grouped.iter_mut().find(|(k, _)| *k == key) {
            Some((_, objects)) => objects.push(object),
            None => grouped.push((key, vec![object])),
        }
    }
    let mut sent = Vec::new();
    for ((kind, role), objects) in grouped {
        let grantee = Grantee::role(&role);
        let defaults = |objects_kind: &'static str, privs: Privs| -> Vec<Change> {
            objects
                .iter()
                .map(|schema| Change::DefaultPrivileges {
                    role: None,
                    schema: Some(schema.clone()),
                    objects: objects_kind,
                    change: AclChange::Grant { grantee: grantee.clone(), privs },
                })
                .collect()
        };
        let changes: Vec<Change> = match kind.as_str() {
            "schema" => vec![Change::grant("SCHEMA", objects.clone(), USAGE, grantee.clone())],
            "table" => vec![Change::grant("TABLE", objects.clone(), DML, grantee.clone())],
            "sequence" => vec![Change::grant("SEQUENCE", objects.clone(), SEQUENCE_USE, grantee.clone())],
            "default r" => defaults("TABLES", DML),
            _ => defaults("SEQUENCES", SEQUENCE_USE),
        };
        for change in changes {
            sent.push(send(client, change, "grant the runtime roles")?);
        }
    }
    sent.extend(keep_private(client, config, &roles)?);
    Ok(sent)
}

/// What a migration's default privileges gave a runtime role on a relation
/// the policy file keeps from it (`[[private]]`) is taken back, on the
/// relations the session's role owns.
fn keep_private(client: &mut Client, config: &Config, roles: &[String]) -> Result<Vec<String>> {
    let pairs: Vec<(String, String)> = config
        .policy
        .entries
        .iter()
        .filter(|e| e.kind == roles::exemptions::Kind::Private)
        .flat_map(|e| e.roles.iter().filter(|r| roles.contains(r)).map(|r| (e.name.clone(), r.clone())))
        .collect();
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let (names, grantees): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    let rows = client
        .query_typed(
            &format!(
                "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname), p.role \
                 FROM unnest($1::text[], $2::text[]) p(name, role) \
                 JOIN pg_class c ON c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_roles g ON g.rolname = p.role \
                 WHERE p.name = ANY ({lineage}) AND c.relowner = \
                       (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                   AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = g.oid) \
                 ORDER BY 1, 2",
                lineage = roles::snapshot::reach::LINEAGE_SQL
            ),
            &[(&names, Type::TEXT_ARRAY), (&grantees, Type::TEXT_ARRAY)],
        )
        .context("read the grants on the relations the policy file keeps private")?;
    let mut sent = Vec::new();
    for row in rows {
        let change = Change::RevokeAll { relation: row.get(0), role: row.get(1) };
        sent.push(send(client, change, "keep a private relation private")?);
    }
    Ok(sent)
}

/// Sends `change` (rendered by `roles::sql`); returns it as shown.
fn send(client: &mut Client, change: Change, what: &str) -> Result<String> {
    let statement = roles::Statement::new(change);
    client.batch_execute(&statement.text()).with_context(|| format!("{what}: {statement}"))?;
    Ok(statement.to_string())
}
