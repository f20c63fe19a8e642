//! Live probes: log in as each runtime role with its own DSN and try what it
//! must not be able to do, each statement in a transaction that is rolled
//! back. What no catalog shows (what the server actually refuses) is proven
//! here.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dbenv::{Dsn, RoleKind};
use postgres::error::SqlState;
use postgres::Client;
use roles::Model;

use crate::report::{Probe, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// SQLSTATE 42501.
    Denied,
    /// A non-owner's GRANT/REVOKE: a warning and an unchanged ACL (or 42501).
    Warning,
    /// Must work (DML that touches no row).
    Allowed,
    /// A capability no privilege can take away: reported, not judged.
    Residual,
}

impl Expect {
    fn text(self) -> &'static str {
        match self {
            Expect::Denied => "denied (42501)",
            Expect::Warning => "warning, ACL unchanged",
            Expect::Allowed => "allowed",
            Expect::Residual => "allowed (residual)",
        }
    }
}

struct Spec {
    id: &'static str,
    capability: String,
    /// `Err(reason)`: nothing to probe it on.
    sql: Result<String, String>,
    expect: Expect,
    /// For GRANT/REVOKE probes: the relation whose ACL must stay as it was.
    acl_of: Option<String>,
}

/// Objects to aim the probes at, found by the probing role itself.
#[derive(Debug, Default)]
struct Targets {
    schema: String,
    table: Option<String>,
    column: Option<String>,
    policy: Option<String>,
    sequence: Option<String>,
    user_type: Option<String>,
    function: Option<String>,
    matview: Option<String>,
    extension: Option<String>,
    bookkeeping: Option<String>,
}

fn discover(client: &mut Client, model: &Model, table: &drizzle::Table, queries: &mut u32) -> Result<Targets> {
    *queries += 1;
    let bookkeeping = table.sql();
    let row = client.query_one(
        "WITH app AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1)), \
         t AS (SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS q \
               FROM pg_class c JOIN app n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') \
               ORDER BY c.relrowsecurity DESC, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) DESC, \
                        n.nspname, c.relname LIMIT 1) \
         SELECT (SELECT q FROM t), \
                (SELECT quote_ident(a.attname) FROM pg_attribute a, t WHERE a.attrelid = t.oid AND a.attnum > 0 \
                   AND NOT a.attisdropped AND a.attidentity = '' AND a.attgenerated = '' ORDER BY a.attnum LIMIT 1), \
                (SELECT quote_ident(p.polname) FROM pg_policy p, t WHERE p.polrelid = t.oid ORDER BY 1 LIMIT 1), \
                (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN app n \
                   ON n.oid = c.relnamespace WHERE c.relkind = 'S' ORDER BY 1 LIMIT 1), \
                (SELECT quote_ident(n.nspname) || '.' || quote_ident(y.typname) FROM pg_type y JOIN app n \
                   ON n.oid = y.typnamespace WHERE y.typtype IN ('e', 'd') ORDER BY 1 LIMIT 1), \
                (SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || oidvectortypes(p.proargtypes) || ')' \
                   FROM pg_proc p JOIN app n ON n.oid = p.pronamespace WHERE NOT EXISTS (SELECT 1 FROM pg_depend e \
                   WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e') ORDER BY 1 LIMIT 1), \
                (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN app n \
                   ON n.oid = c.relnamespace WHERE c.relkind = 'm' ORDER BY 1 LIMIT 1), \
                (SELECT quote_ident(v.name) FROM pg_available_extension_versions v \
                   JOIN pg_available_extensions e ON e.name = v.name AND e.default_version = v.version \
                   WHERE e.installed_version IS NULL AND v.schema IS NULL AND v.relocatable AND v.requires IS NULL \
                   ORDER BY v.trusted DESC, v.name = 'pg_trgm' DESC, v.name = 'citext' DESC, v.name LIMIT 1), \
                EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                        WHERE n.nspname = $2 AND c.relname = $3)",
        &[&model.app_schemas, &table.schema, &table.name],
    )?;
    Ok(Targets {
        schema: dbenv::quote_ident(&model.app_schemas[0]),
        table: row.get(0),
        column: row.get(1),
        policy: row.get(2),
        sequence: row.get(3),
        user_type: row.get(4),
        function: row.get(5),
        matview: row.get(6),
        extension: row.get(7),
        bookkeeping: row.get::<_, bool>(8).then_some(bookkeeping),
    })
}

fn specs(model: &Model, me: RoleKind, t: &Targets) -> Vec<Spec> {
    let schema = &t.schema;
    let shown_schema = &model.app_schemas[0];
    let other = match me {
        RoleKind::Service => &model.runtime.name,
        _ => &model.service.name,
    };
    let migrator = dbenv::quote_ident(&model.migrator.name);
    let need = |what: &Option<String>, noun: &str| what.clone().ok_or_else(|| format!("n/a (no {noun})"));
    let table = need(&t.table, "table");
    let on_table = |f: &dyn Fn(&str) -> String| table.as_ref().map(|t| f(t)).map_err(Clone::clone);
    let with_column = |f: &dyn Fn(&str, &str) -> String| match (&t.table, &t.column) {
        (Some(table), Some(column)) => Ok(f(table, column)),
        _ => Err("n/a (no table)".to_string()),
    };
    let spec = |id, capability: &str, sql: Result<String, String>, expect| Spec {
        id,
        capability: capability.to_string(),
        sql,
        expect,
        acl_of: None,
    };
    let mut all = vec![
        spec(
            "create-table",
            &format!("CREATE TABLE in {shown_schema}"),
            Ok(format!("CREATE TABLE {schema}._xtask_probe (id int)")),
            Expect::Denied,
        ),
        spec(
            "create-temp-table",
            "CREATE TEMP TABLE",
            Ok("CREATE TEMP TABLE _xtask_probe (id int)".into()),
            Expect::Denied,
        ),
        spec(
            "create-view",
            &format!("CREATE VIEW in {shown_schema}"),
            Ok(format!("CREATE VIEW {schema}._xtask_probe AS SELECT 1 AS x")),
            Expect::Denied,
        ),
        spec(
            "create-function",
            &format!("CREATE FUNCTION in {shown_schema}"),
            Ok(format!("CREATE FUNCTION {schema}._xtask_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'")),
            Expect::Denied,
        ),
        spec(
            "create-type",
            &format!("CREATE TYPE in {shown_schema}"),
            Ok(format!("CREATE TYPE {schema}._xtask_probe AS ENUM ('a')")),
            Expect::Denied,
        ),
        spec(
            "create-sequence",
            &format!("CREATE SEQUENCE in {shown_schema}"),
            Ok(format!("CREATE SEQUENCE {schema}._xtask_probe")),
            Expect::Denied,
        ),
        spec("create-schema", "CREATE SCHEMA", Ok("CREATE SCHEMA _xtask_probe".into()), Expect::Denied),
        spec(
            "create-extension",
            "CREATE EXTENSION",
            need(&t.extension, "extension available to install")
                .map(|e| format!("CREATE EXTENSION {e} SCHEMA {schema}")),
            Expect::Denied,
        ),
        spec("drop-extension", "DROP EXTENSION plpgsql", Ok("DROP EXTENSION plpgsql".into()), Expect::Denied),
        spec("drop-table", "DROP TABLE", on_table(&|t| format!("DROP TABLE {t}")), Expect::Denied),
        spec(
            "alter-table",
            "ALTER TABLE … ADD COLUMN",
            on_table(&|t| format!("ALTER TABLE {t} ADD COLUMN _xtask_probe int")),
            Expect::Denied,
        ),
        spec(
            "disable-rls",
            "ALTER TABLE … DISABLE ROW LEVEL SECURITY",
            on_table(&|t| format!("ALTER TABLE {t} DISABLE ROW LEVEL SECURITY")),
            Expect::Denied,
        ),
        spec(
            "no-force-rls",
            "ALTER TABLE … NO FORCE ROW LEVEL SECURITY",
            on_table(&|t| format!("ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY")),
            Expect::Denied,
        ),
        spec("truncate", "TRUNCATE", on_table(&|t| format!("TRUNCATE {t}")), Expect::Denied),
        spec(
            "create-index",
            "CREATE INDEX",
            with_column(&|t, c| format!("CREATE INDEX _xtask_probe ON {t} ({c})")),
            Expect::Denied,
        ),
        spec("comment", "COMMENT ON TABLE", on_table(&|t| format!("COMMENT ON TABLE {t} IS 'probe'")), Expect::Denied),
        spec(
            "create-policy",
            "CREATE POLICY",
            on_table(&|t| format!("CREATE POLICY _xtask_probe ON {t} USING (true)")),
            Expect::Denied,
        ),
        spec(
            "drop-policy",
            "DROP POLICY",
            match (&t.table, &t.policy) {
                (Some(table), Some(policy)) => Ok(format!("DROP POLICY {policy} ON {table}")),
                _ => Err("n/a (no policy)".into()),
            },
            Expect::Denied,
        ),
        spec(
            "create-trigger",
            "CREATE TRIGGER",
            on_table(&|t| {
                format!("CREATE TRIGGER _xtask_probe BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()")
            }),
            Expect::Denied,
        ),
        spec(
            "alter-owner",
            "ALTER TABLE … OWNER TO itself",
            on_table(&|t| format!("ALTER TABLE {t} OWNER TO CURRENT_USER")),
            Expect::Denied,
        ),
        spec(
            "drop-schema",
            &format!("DROP SCHEMA {shown_schema}"),
            Ok(format!("DROP SCHEMA {schema}")),
            Expect::Denied,
        ),
        spec(
            "rename-schema",
            &format!("ALTER SCHEMA {shown_schema} RENAME"),
            Ok(format!("ALTER SCHEMA {schema} RENAME TO _xtask_probe")),
            Expect::Denied,
        ),
        spec("set-role-migrator", "SET ROLE the migrator", Ok(format!("SET ROLE {migrator}")), Expect::Denied),
        spec(
            "set-role-other",
            "SET ROLE the other runtime role",
            Ok(format!("SET ROLE {}", dbenv::quote_ident(other))),
            Expect::Denied,
        ),
        spec("create-role", "CREATE ROLE", Ok("CREATE ROLE _xtask_probe".into()), Expect::Denied),
        spec("alter-migrator", "ALTER ROLE the migrator", Ok(format!("ALTER ROLE {migrator} NOLOGIN")), Expect::Denied),
        spec(
            "alter-database",
            "ALTER DATABASE … SET",
            Ok("ALTER DATABASE CURRENT_DATABASE SET work_mem = '4MB'"
                .replace("CURRENT_DATABASE", &dbenv::quote_ident(&model.db_name))),
            Expect::Denied,
        ),
        spec(
            "read-bookkeeping",
            "read the Drizzle bookkeeping",
            need(&t.bookkeeping, "bookkeeping table yet").map(|b| format!("SELECT 1 FROM {b} LIMIT 1")),
            Expect::Denied,
        ),
        spec(
            "write-bookkeeping",
            "write the Drizzle bookkeeping",
            need(&t.bookkeeping, "bookkeeping table yet")
                .map(|b| format!("INSERT INTO {b} (hash, created_at) VALUES ('probe', 0)")),
            Expect::Denied,
        ),
        spec(
            "setval",
            "setval() on a sequence",
            need(&t.sequence, "sequence").map(|s| format!("SELECT setval('{s}', 1)")),
            Expect::Denied,
        ),
        spec(
            "alter-sequence",
            "ALTER SEQUENCE",
            need(&t.sequence, "sequence").map(|s| format!("ALTER SEQUENCE {s} RESTART")),
            Expect::Denied,
        ),
        spec(
            "drop-type",
            "DROP TYPE … CASCADE",
            need(&t.user_type, "enum or domain").map(|y| format!("DROP TYPE {y} CASCADE")),
            Expect::Denied,
        ),
        spec(
            "drop-function",
            "DROP FUNCTION … CASCADE",
            need(&t.function, "function").map(|f| format!("DROP FUNCTION {f} CASCADE")),
            Expect::Denied,
        ),
        spec(
            "refresh-matview",
            "REFRESH MATERIALIZED VIEW",
            need(&t.matview, "materialized view").map(|m| format!("REFRESH MATERIALIZED VIEW {m}")),
            Expect::Denied,
        ),
        spec(
            "select",
            "SELECT (no row touched)",
            on_table(&|t| format!("SELECT * FROM {t} WHERE false")),
            Expect::Allowed,
        ),
        spec(
            "insert",
            "INSERT (no row touched)",
            with_column(&|t, c| format!("INSERT INTO {t} ({c}) SELECT {c} FROM {t} WHERE false")),
            Expect::Allowed,
        ),
        spec(
            "update",
            "UPDATE (no row touched)",
            with_column(&|t, c| format!("UPDATE {t} SET {c} = {c} WHERE false")),
            Expect::Allowed,
        ),
        spec(
            "delete",
            "DELETE (no row touched)",
            on_table(&|t| format!("DELETE FROM {t} WHERE false")),
            Expect::Allowed,
        ),
    ];
    if let Some(table) = &t.table {
        all.push(Spec {
            id: "grant",
            capability: "GRANT SELECT … TO PUBLIC".into(),
            sql: Ok(format!("GRANT SELECT ON {table} TO PUBLIC")),
            expect: Expect::Warning,
            acl_of: Some(table.clone()),
        });
        all.push(Spec {
            id: "revoke",
            capability: "REVOKE … FROM the other runtime role".into(),
            sql: Ok(format!("REVOKE SELECT ON {table} FROM {}", dbenv::quote_ident(other))),
            expect: Expect::Warning,
            acl_of: Some(table.clone()),
        });
    }
    all
}

/// Capabilities no privilege can take from a login role, tried where that is
/// harmless (rolled back) and listed where it is not.
fn residual_specs(model: &Model, me: RoleKind, t: &Targets) -> Vec<Spec> {
    let myself = dbenv::quote_ident(&model.role(me).name);
    let other = match me {
        RoleKind::Service => &model.runtime.name,
        _ => &model.service.name,
    };
    let residual = |id, capability: &str, sql: Result<String, String>| Spec {
        id,
        capability: capability.into(),
        sql,
        expect: Expect::Residual,
        acl_of: None,
    };
    vec![
        residual("own-password", "change its own password", Ok("ALTER ROLE CURRENT_USER PASSWORD NULL".into())),
        residual(
            "own-settings",
            "change its own role settings",
            Ok("ALTER ROLE CURRENT_USER SET work_mem = '4MB'".into()),
        ),
        residual(
            "own-default-privileges",
            "ALTER DEFAULT PRIVILEGES for itself (inert: it creates nothing)",
            Ok("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC".into()),
        ),
        residual(
            "grant-own-role",
            "grant its own role to others (PostgreSQL 13/14)",
            Ok(format!("GRANT {myself} TO {}", dbenv::quote_ident(other))),
        ),
        residual("large-object", "create large objects (lo_create)", Ok("SELECT lo_create(0)".into())),
        residual(
            "lock-exclusive",
            "LOCK TABLE … IN ACCESS EXCLUSIVE MODE on a table it may update",
            Err(format!(
                "not tried: it would block the app{}",
                t.table.as_ref().map(|t| format!(" on {t}")).unwrap_or_default()
            )),
        ),
    ]
}

/// Runs one probe in its own transaction, rolled back whatever happens.
fn run(client: &mut Client, notices: &Arc<Mutex<Vec<String>>>, spec: &Spec, queries: &mut u32) -> (String, Verdict) {
    let sql = match &spec.sql {
        Ok(sql) => sql,
        Err(reason) => {
            return (
                reason.clone(),
                if spec.expect == Expect::Residual { Verdict::Residual } else { Verdict::NotApplicable },
            )
        }
    };
    *queries += 3;
    if let Err(error) =
        client.batch_execute("BEGIN; SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '10s'")
    {
        return (format!("could not start: {error}"), Verdict::Inconclusive);
    }
    let acl = |client: &mut Client, relation: &str| -> Option<String> {
        client
            .query_one("SELECT coalesce(relacl::text, '') FROM pg_class WHERE oid = $1::regclass", &[&relation])
            .ok()
            .map(|r| r.get(0))
    };
    let before = spec.acl_of.as_deref().and_then(|r| acl(client, r));
    notices.lock().unwrap().clear();
    let result = client.batch_execute(sql);
    let after = spec.acl_of.as_deref().and_then(|r| if result.is_ok() { acl(client, r) } else { None });
    let _ = client.batch_execute("ROLLBACK");
    let warnings = notices.lock().unwrap().clone();
    let code = result.as_ref().err().and_then(|e| e.code().cloned());
    let inconclusive = |code: &SqlState| *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED;
    match (spec.expect, &result, &code) {
        (_, Err(_), Some(code)) if inconclusive(code) => {
            (format!("timed out ({})", code.code()), Verdict::Inconclusive)
        }
        (Expect::Denied | Expect::Warning, Err(_), Some(code)) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            ("denied (42501)".into(), Verdict::Pass)
        }
        (Expect::Denied, Ok(()), _) => ("ALLOWED".into(), Verdict::Fail),
        (Expect::Warning, Ok(()), _) if before == after && !warnings.is_empty() => {
            ("warning, ACL unchanged".into(), Verdict::Pass)
        }
        (Expect::Warning, Ok(()), _) => ("ACL CHANGED".into(), Verdict::Fail),
        (Expect::Allowed, Ok(()), _) => ("allowed".into(), Verdict::Pass),
        (Expect::Residual, Ok(()), _) => ("allowed".into(), Verdict::Residual),
        (Expect::Residual, Err(_), code) => {
            (format!("denied here ({})", code.as_ref().map(|c| c.code()).unwrap_or("?")), Verdict::Residual)
        }
        (_, Err(error), code) => (
            format!(
                "error {}: {}",
                code.as_ref().map(|c| c.code()).unwrap_or("?"),
                error.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| error.to_string())
            ),
            if spec.expect == Expect::Allowed { Verdict::Fail } else { Verdict::Inconclusive },
        ),
    }
}

/// A session as `kind`, with a notice collector.
pub(crate) fn connect_as(dsn: &Dsn, var: &str) -> Result<(Client, Arc<Mutex<Vec<String>>>)> {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config = dbenv::pg_config(dsn);
    config.application_name("cargo xtask db-check");
    config.notice_callback(move |notice| {
        sink.lock().unwrap().push(format!("{}: {}", notice.code().code(), notice.message()))
    });
    let client = dbenv::connect_with(dsn, var, config)?;
    Ok((client, notices))
}

/// What the probes of one role found.
pub struct RoleProbes {
    pub probes: Vec<Probe>,
    pub residuals: Vec<Probe>,
}

/// Every probe as `kind`, plus the set-based privilege checks run as that role.
pub fn probe_role(
    model: &Model,
    bookkeeping: &drizzle::Table,
    kind: RoleKind,
    dsn: &Dsn,
    queries: &mut u32,
) -> Result<RoleProbes> {
    let var = kind.dsn_var();
    let (mut client, notices) = connect_as(dsn, var).with_context(|| format!("log in as the {kind} role"))?;
    let role = model.role(kind).name.clone();
    let targets = discover(&mut client, model, bookkeeping, queries)?;
    let mut probes = Vec::new();
    for spec in specs(model, kind, &targets) {
        let (observed, verdict) = run(&mut client, &notices, &spec, queries);
        probes.push(Probe {
            role: role.clone(),
            id: spec.id,
            capability: spec.capability,
            sql: spec.sql.unwrap_or_default(),
            expected: spec.expect.text().into(),
            observed,
            verdict,
        });
    }
    let started = std::time::Instant::now();
    probes.extend(privilege_checks(&mut client, model, &role, queries)?);
    let version: i32 = client.query_one("SELECT current_setting('server_version_num')::int", &[])?.get(0);
    *queries += 1;
    probes.extend(crate::powers::check(&mut client, &role, version, queries)?);
    if std::env::var_os("XTASK_TRACE_QUERIES").is_some() {
        eprintln!("{:>8.1} ms  privilege checks as {role}", started.elapsed().as_secs_f64() * 1000.0);
    }
    let residuals = residual_specs(model, kind, &targets)
        .into_iter()
        .map(|spec| {
            let (observed, verdict) = run(&mut client, &notices, &spec, queries);
            Probe {
                role: role.clone(),
                id: spec.id,
                capability: spec.capability,
                sql: spec.sql.unwrap_or_default(),
                expected: spec.expect.text().into(),
                observed,
                verdict,
            }
        })
        .collect();
    Ok(RoleProbes { probes, residuals })
}

/// DML on every app table and USAGE on every sequence a column default
/// uses, asked of the server as the role itself: two queries, whatever the
/// number of tables.
fn privilege_checks(client: &mut Client, model: &Model, role: &str, queries: &mut u32) -> Result<Vec<Probe>> {
    *queries += 2;
    let version: i32 = client.query_one("SELECT current_setting('server_version_num')::int", &[])?.get(0);
    let extra = if version >= 170000 { " OR has_table_privilege(c.oid, 'MAINTAIN')" } else { "" };
    let row = client.query_one(
        &format!(
            "SELECT count(*), \
                    array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY n.nspname, c.relname) \
                      FILTER (WHERE NOT (has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT') \
                                    AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE'))), \
                    array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY n.nspname, c.relname) \
                      FILTER (WHERE has_table_privilege(c.oid, 'TRUNCATE') OR has_table_privilege(c.oid, 'REFERENCES') \
                                 OR has_table_privilege(c.oid, 'TRIGGER'){extra}) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'f')"
        ),
        &[&model.app_schemas],
    )?;
    let tables: i64 = row.get(0);
    let lacking: Option<Vec<String>> = row.get(1);
    let excess: Option<Vec<String>> = row.get(2);
    let sequences = client.query_one(
        "SELECT count(DISTINCT s.oid), \
                array_agg(DISTINCT quote_ident(sn.nspname) || '.' || quote_ident(s.relname)) \
                  FILTER (WHERE NOT has_sequence_privilege(s.oid, 'USAGE')) \
         FROM pg_attrdef ad \
         JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass \
         JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace \
         JOIN pg_class t ON t.oid = ad.adrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = ANY($1)",
        &[&model.app_schemas],
    )?;
    let defaults: i64 = sequences.get(0);
    let unusable: Option<Vec<String>> = sequences.get(1);
    let list = |names: &[String]| {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        format!(
            "{}{}",
            shown.join(", "),
            if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() }
        )
    };
    let probe = |id, capability: String, sql: &str, expected: &str, problem: Option<String>, empty: bool| Probe {
        role: role.to_string(),
        id,
        capability,
        sql: sql.to_string(),
        expected: expected.to_string(),
        observed: match (&problem, empty) {
            (Some(problem), _) => problem.clone(),
            (None, true) => "nothing to check".to_string(),
            (None, false) => "as expected".to_string(),
        },
        verdict: match (&problem, empty) {
            (Some(_), _) => Verdict::Fail,
            (None, true) => Verdict::NotApplicable,
            (None, false) => Verdict::Pass,
        },
    };
    Ok(vec![
        probe(
            "dml-everywhere",
            format!("SELECT, INSERT, UPDATE, DELETE on all {tables} app tables"),
            "has_table_privilege(…) as the role",
            "all held",
            lacking.filter(|l| !l.is_empty()).map(|l| format!("LACKS on {}", list(&l))),
            tables == 0,
        ),
        probe(
            "no-extra-table-privileges",
            "no TRUNCATE, REFERENCES, TRIGGER, MAINTAIN".to_string(),
            "has_table_privilege(…) as the role",
            "none held",
            excess.filter(|l| !l.is_empty()).map(|l| format!("HELD on {}", list(&l))),
            tables == 0,
        ),
        probe(
            "sequence-defaults",
            format!("USAGE on the {defaults} sequences of column defaults"),
            "has_sequence_privilege(…, 'USAGE') as the role",
            "all held",
            unusable.filter(|l| !l.is_empty()).map(|l| format!("LACKS on {}", list(&l))),
            defaults == 0,
        ),
    ])
}
