//! Live probes: log in as each runtime role with its own DSN and try what it
//! must not be able to do, each statement in a transaction that is rolled
//! back. What no catalog shows (what the server actually refuses) is proven
//! here.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dbenv::{quote_literal, Dsn, RoleKind};
use postgres::error::SqlState;
use postgres::Client;
use roles::Model;

use crate::count::QueryCount;
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
    /// A boolean the role's own catalog answers: when true, the role holds
    /// the power the probe would try (it owns the object, or holds the
    /// privilege), so the statement is not sent (it could change something
    /// a rollback does not undo, or lock the app out) and the probe fails on
    /// the catalog's word.
    guard: Option<String>,
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
    /// The bookkeeping's schema and table, unquoted, when it exists.
    bookkeeping_names: Option<(String, String)>,
}

/// An extension the `create-extension` probe may name: available, not
/// installed, relocatable, needing no other. The same for every role of
/// the database, and costly to find (the server reads every extension's
/// control and script files): the first role to need it asks, the others
/// wait for its answer. Every DSN of a check reaches one database of one
/// server (`route`), so the answer is theirs too; only a superuser's
/// per-role setting (18's `extension_control_path`) could make it differ,
/// and then the probe is undecided for that role, never passed.
#[derive(Default)]
pub(crate) struct Extension(Mutex<Option<Option<String>>>);

impl Extension {
    fn get(&self, client: &mut Client, queries: &QueryCount) -> Result<Option<String>> {
        let mut found = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(name) = &*found {
            return Ok(name.clone());
        }
        queries.add(1);
        let row = client.query_one(
            "SELECT (SELECT quote_ident(v.name) FROM pg_available_extension_versions v \
               JOIN pg_available_extensions e ON e.name = v.name AND e.default_version = v.version \
               WHERE e.installed_version IS NULL AND v.schema IS NULL AND v.relocatable AND v.requires IS NULL \
               ORDER BY v.trusted DESC, v.name = 'pg_trgm' DESC, v.name = 'citext' DESC, v.name LIMIT 1)",
            &[],
        )?;
        let name: Option<String> = row.get(0);
        *found = Some(name.clone());
        Ok(name)
    }
}

fn discover(
    client: &mut Client,
    model: &Model,
    (table, extension): (&drizzle::Table, &Extension),
    queries: &QueryCount,
) -> Result<Targets> {
    queries.add(1);
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
        extension: extension.get(client, queries)?,
        bookkeeping: row.get::<_, bool>(7).then_some(bookkeeping),
        bookkeeping_names: row.get::<_, bool>(7).then(|| (table.schema.clone(), table.name.clone())),
    })
}

/// The probes as data, one a line: the id, what it tries (`{shown}`: the
/// first app schema), the statement with placeholders for the names and the
/// discovered targets (see [`Ctx::render`]), and what must happen. Creating
/// objects anywhere first, then DDL on the app's tables, the schema, roles
/// and database, the other objects, and last the DML the roles must keep.
const PROBES: &str = "\
create-table      | CREATE TABLE in {shown}                   | CREATE TABLE {schema}._xtask_probe (id int) | denied
create-temp-table | CREATE TEMP TABLE                         | CREATE TEMP TABLE _xtask_probe (id int) | denied
create-view       | CREATE VIEW in {shown}                    | CREATE VIEW {schema}._xtask_probe AS SELECT 1 AS x | denied
create-function   | CREATE FUNCTION in {shown}                | CREATE FUNCTION {schema}._xtask_probe() RETURNS int LANGUAGE sql AS 'SELECT 1' | denied
create-type       | CREATE TYPE in {shown}                    | CREATE TYPE {schema}._xtask_probe AS ENUM ('a') | denied
create-sequence   | CREATE SEQUENCE in {shown}                | CREATE SEQUENCE {schema}._xtask_probe | denied
create-schema     | CREATE SCHEMA                             | CREATE SCHEMA _xtask_probe | denied
create-extension  | CREATE EXTENSION                          | CREATE EXTENSION {extension} SCHEMA {schema} | denied
drop-extension    | DROP EXTENSION plpgsql                    | DROP EXTENSION plpgsql | denied
drop-table        | DROP TABLE                                | DROP TABLE {table} | denied
alter-table       | ALTER TABLE … ADD COLUMN                  | ALTER TABLE {table} ADD COLUMN _xtask_probe int | denied
disable-rls       | ALTER TABLE … DISABLE ROW LEVEL SECURITY  | ALTER TABLE {table} DISABLE ROW LEVEL SECURITY | denied
no-force-rls      | ALTER TABLE … NO FORCE ROW LEVEL SECURITY | ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY | denied
truncate          | TRUNCATE                                  | TRUNCATE {table} | denied
create-index      | CREATE INDEX                              | CREATE INDEX _xtask_probe ON {table} ({column}) | denied
comment           | COMMENT ON TABLE                          | COMMENT ON TABLE {table} IS 'probe' | denied
create-policy     | CREATE POLICY                             | CREATE POLICY _xtask_probe ON {table} USING (true) | denied
drop-policy       | DROP POLICY                               | DROP POLICY {policy} ON {table} | denied
create-trigger    | CREATE TRIGGER                            | CREATE TRIGGER _xtask_probe BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger() | denied
alter-owner       | ALTER TABLE … OWNER TO itself             | ALTER TABLE {table} OWNER TO CURRENT_USER | denied
drop-schema       | DROP SCHEMA {shown}                       | DROP SCHEMA {schema} | denied
rename-schema     | ALTER SCHEMA {shown} RENAME               | ALTER SCHEMA {schema} RENAME TO _xtask_probe | denied
as-login-create   | as its login (SET ROLE NONE): CREATE TABLE | SET LOCAL ROLE NONE; CREATE TABLE {schema}._xtask_probe (id int) | denied
as-login-temp     | as its login (SET ROLE NONE): CREATE TEMP TABLE | SET LOCAL ROLE NONE; CREATE TEMP TABLE _xtask_probe (id int) | denied
set-role-migrator | SET ROLE the migrator                     | SET ROLE {migrator} | denied
set-role-other    | SET ROLE the other runtime role           | SET ROLE {other} | denied
create-role       | CREATE ROLE                               | CREATE ROLE _xtask_probe | denied
alter-migrator    | ALTER ROLE the migrator                   | ALTER ROLE {migrator} NOLOGIN | denied
alter-database    | ALTER DATABASE … SET                      | ALTER DATABASE {db} SET work_mem = '4MB' | denied
read-bookkeeping  | read the Drizzle bookkeeping              | SELECT 1 FROM {bookkeeping} LIMIT 1 | denied
write-bookkeeping | write the Drizzle bookkeeping             | INSERT INTO {bookkeeping} (hash, created_at) VALUES ('probe', 0) | denied
alter-sequence    | ALTER SEQUENCE                            | ALTER SEQUENCE {sequence} RESTART | denied
drop-type         | DROP TYPE … CASCADE                       | DROP TYPE {type} CASCADE | denied
drop-function     | DROP FUNCTION … CASCADE                   | DROP FUNCTION {function} CASCADE | denied
refresh-matview   | REFRESH MATERIALIZED VIEW                 | REFRESH MATERIALIZED VIEW {matview} | denied
select            | SELECT (no row touched)                   | SELECT * FROM {table} WHERE false | allowed
insert            | INSERT (no row touched)                   | INSERT INTO {table} ({column}) SELECT {column} FROM {table} WHERE false | allowed
update            | UPDATE (no row touched)                   | UPDATE {table} SET {column} = {column} WHERE false | allowed
delete            | DELETE (no row touched)                   | DELETE FROM {table} WHERE false | allowed
";

/// The rows of [`PROBES`].
fn rows() -> impl Iterator<Item = (&'static str, &'static str, &'static str, Expect)> {
    PROBES.lines().map(|line| {
        let fields: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let expect = match fields.get(3) {
            Some(&"allowed") => Expect::Allowed,
            Some(&"denied") => Expect::Denied,
            _ => panic!("BUG: probe row `{line}` does not end in `| denied` or `| allowed`"),
        };
        (fields[0], fields[1], fields[2], expect)
    })
}

/// What the specs are built from: the probe targets and the names they need.
struct Ctx<'a> {
    t: &'a Targets,
    /// The first app schema as shown.
    shown_schema: &'a str,
    /// The other runtime role, the migrator and the database, quoted.
    other: String,
    migrator: String,
    db: String,
}

impl Ctx<'_> {
    /// `template` with the names and the discovered targets filled in, or
    /// why the probe does not apply here (a target this database lacks).
    fn render(&self, template: &str) -> Result<String, String> {
        let t = self.t;
        let targets = [
            ("{policy}", &t.policy, "policy"),
            ("{column}", &t.column, "table"),
            ("{table}", &t.table, "table"),
            ("{sequence}", &t.sequence, "sequence"),
            ("{type}", &t.user_type, "enum or domain"),
            ("{function}", &t.function, "function"),
            ("{matview}", &t.matview, "materialized view"),
            ("{extension}", &t.extension, "extension available to install"),
            ("{bookkeeping}", &t.bookkeeping, "bookkeeping table yet"),
        ];
        let mut sql = template
            .replace("{schema}", &t.schema)
            .replace("{migrator}", &self.migrator)
            .replace("{other}", &self.other)
            .replace("{db}", &self.db);
        for (placeholder, target, noun) in targets {
            if sql.contains(placeholder) {
                let Some(value) = target else { return Err(format!("n/a (no {noun})")) };
                sql = sql.replace(placeholder, value);
            }
        }
        Ok(sql)
    }

    /// The catalog's answer to the power probe `id` tries on a relation,
    /// type or function, asked as the role (see [`Spec::guard`]).
    fn guard(&self, id: &str) -> Option<String> {
        let t = self.t;
        let owns_relation = |r: &str| {
            format!("pg_has_role((SELECT relowner FROM pg_class WHERE oid = {}::regclass), 'USAGE')", quote_literal(r))
        };
        // A schema's owner may drop what is in it, and the schema itself.
        let owns_schema = |namespace: String| {
            format!("pg_has_role((SELECT nspowner FROM pg_namespace WHERE oid = ({namespace})), 'USAGE')")
        };
        let table = t.table.as_deref();
        match id {
            "drop-table" => table.map(|r| {
                let namespace = format!("SELECT relnamespace FROM pg_class WHERE oid = {}::regclass", quote_literal(r));
                format!("{} OR {}", owns_relation(r), owns_schema(namespace))
            }),
            "alter-table" | "disable-rls" | "no-force-rls" | "create-index" | "comment" | "create-policy"
            | "drop-policy" | "alter-owner" => table.map(owns_relation),
            "drop-schema" | "rename-schema" => Some(format!(
                "pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = {}), 'USAGE')",
                quote_literal(self.shown_schema)
            )),
            // An INSERT would take a value of the bookkeeping's SERIAL, which
            // a rollback does not give back. The role may lack USAGE on its
            // schema, so the table is found by name, not cast to regclass.
            "write-bookkeeping" => t.bookkeeping_names.as_ref().map(|(schema, name)| {
                format!(
                    "has_any_column_privilege((SELECT c.oid FROM pg_class c JOIN pg_namespace n \
                     ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {}), 'INSERT')",
                    quote_literal(schema),
                    quote_literal(name)
                )
            }),
            "truncate" => table.map(|r| format!("has_table_privilege({}::regclass, 'TRUNCATE')", quote_literal(r))),
            "create-trigger" => {
                table.map(|r| format!("has_table_privilege({}::regclass, 'TRIGGER')", quote_literal(r)))
            }
            "alter-sequence" => t.sequence.as_deref().map(owns_relation),
            "refresh-matview" => t.matview.as_deref().map(|m| {
                format!(
                    "{} OR ({} AND has_table_privilege({}::regclass, 'MAINTAIN'))",
                    owns_relation(m),
                    dbenv::ServerVersion::sql_at_least(17),
                    quote_literal(m)
                )
            }),
            "drop-type" => t.user_type.as_deref().map(|y| {
                let y = quote_literal(y);
                format!(
                    "pg_has_role((SELECT typowner FROM pg_type WHERE oid = {y}::regtype), 'USAGE') OR {}",
                    owns_schema(format!("SELECT typnamespace FROM pg_type WHERE oid = {y}::regtype"))
                )
            }),
            "drop-function" => t.function.as_deref().map(|f| {
                let f = quote_literal(f);
                format!(
                    "pg_has_role((SELECT proowner FROM pg_proc WHERE oid = {f}::regprocedure), 'USAGE') OR {}",
                    owns_schema(format!("SELECT pronamespace FROM pg_proc WHERE oid = {f}::regprocedure"))
                )
            }),
            _ => None,
        }
    }

    fn specs(&self) -> Vec<Spec> {
        rows()
            .map(|(id, capability, sql, expect)| Spec {
                id,
                capability: capability.replace("{shown}", self.shown_schema),
                sql: self.render(sql),
                expect,
                acl_of: None,
                guard: self.guard(id),
            })
            .collect()
    }
}

fn specs(model: &Model, me: RoleKind, t: &Targets) -> Vec<Spec> {
    let other = match me {
        RoleKind::Service => &model.runtime.name,
        _ => &model.service.name,
    };
    let c = Ctx {
        t,
        shown_schema: &model.app_schemas[0],
        other: dbenv::quote_ident(other),
        migrator: dbenv::quote_ident(&model.migrator.name),
        db: dbenv::quote_ident(&model.db_name),
    };
    let mut all = c.specs();
    // Changing another role's access: a warning, with the ACL shown.
    if let Some(table) = &t.table {
        let warning = |id, capability: &str, sql: String| Spec {
            id,
            capability: capability.to_string(),
            sql: Ok(sql),
            expect: Expect::Warning,
            acl_of: Some(table.clone()),
            guard: None,
        };
        all.push(warning("grant", "GRANT SELECT … TO PUBLIC", format!("GRANT SELECT ON {table} TO PUBLIC")));
        let revoke = format!("REVOKE SELECT ON {table} FROM {}", c.other);
        all.push(warning("revoke", "REVOKE … FROM the other runtime role", revoke));
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
        guard: None,
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
        // What one session of the role can do to another of the same role
        // (the app's other connections): PostgreSQL grants it to the role.
        residual(
            "read-own-role-queries",
            "read the query text of the role's other sessions (pg_stat_activity)",
            Ok("SELECT query FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid() LIMIT 0"
                .into()),
        ),
        residual(
            "terminate-own-role",
            "cancel or terminate the role's other sessions (pg_terminate_backend)",
            Err("not tried: it would end one of the app's sessions".into()),
        ),
        residual(
            "listen-notify",
            "LISTEN and NOTIFY on any channel, the app's included",
            Ok("LISTEN _xtask_probe".into()),
        ),
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

/// How long a probe statement may wait for a lock. While it waits, the
/// app's requests for conflicting locks queue behind it, so it is short; a
/// probe that times out is tried again after a pause (see [`PROBE_ATTEMPTS`]).
pub const PROBE_LOCK_TIMEOUT_MS: u64 = 50;
/// Attempts of a probe whose lock is taken, pausing 100, 200, 400 ms between.
const PROBE_ATTEMPTS: u32 = 4;

/// The transaction every probe statement runs in: rolled back, waiting at
/// most [`PROBE_LOCK_TIMEOUT_MS`] for a lock and 10 s in all.
pub(crate) fn begin_probe() -> String {
    format!("BEGIN; SET LOCAL lock_timeout = '{PROBE_LOCK_TIMEOUT_MS}ms'; SET LOCAL statement_timeout = '10s'")
}

/// What the catalog said of a probe's power before it was tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// Not held, or nothing to ask: the statement is tried.
    No,
    /// Held: the statement is not sent.
    Yes,
    /// The question itself failed: the statement is not sent either.
    Unknown,
}

/// Runs one probe in its own transaction, rolled back whatever happens,
/// unless the catalog already answered; tried again when a lock was taken.
fn run(client: &mut Client, notices: &Notices, spec: &Spec, held: Held, queries: &QueryCount) -> (String, Verdict) {
    match held {
        Held::Yes => return ("HELD (the catalog shows it; not tried)".into(), Verdict::Fail),
        Held::Unknown => return ("not tried: the catalog could not be asked".into(), Verdict::Inconclusive),
        // CREATE TRIGGER locks the table against the app's writes before it
        // checks the privilege: tried live, it queues in front of the app
        // whenever a write transaction is open. The privilege (or owning the
        // table) is all it needs, so the catalog's "not held" is the answer.
        Held::No if spec.id == "create-trigger" && spec.guard.is_some() => {
            return ("denied (the catalog shows no TRIGGER; not tried: it locks before checking)".into(), Verdict::Pass)
        }
        Held::No => {}
    }
    let mut attempt = 1;
    loop {
        let (observed, verdict, code) = run_once(client, notices, spec, queries);
        // Only a lock that was taken is worth another try; a statement that
        // ran out of time would run out again.
        if code != Some(SqlState::LOCK_NOT_AVAILABLE) || attempt == PROBE_ATTEMPTS {
            return (observed, verdict);
        }
        std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
        attempt += 1;
    }
}

/// One try of a probe: what was observed, the verdict, and the SQLSTATE
/// the statement failed with.
fn run_once(
    client: &mut Client,
    notices: &Notices,
    spec: &Spec,
    queries: &QueryCount,
) -> (String, Verdict, Option<SqlState>) {
    let sql = match &spec.sql {
        Ok(sql) => sql,
        Err(reason) => {
            let verdict = if spec.expect == Expect::Residual { Verdict::Residual } else { Verdict::NotApplicable };
            return (reason.clone(), verdict, None);
        }
    };
    queries.add(3);
    if let Err(error) = client.batch_execute(&begin_probe()) {
        return (format!("could not start: {error}"), Verdict::Inconclusive, None);
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
    let (observed, verdict) = match (spec.expect, &result, &code) {
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
    };
    (observed, verdict, code)
}

/// What a probe session's notices are collected into.
pub(crate) type Notices = Arc<Mutex<Vec<String>>>;

/// A probe session: the client and its notices.
pub(crate) type ProbeSession = (Client, Notices);

/// How a probe session connects through `dsn`, and where its notices go.
pub(crate) fn probe_config(dsn: &Dsn) -> (postgres::Config, Notices) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    (probe_config_into(dsn, &notices), notices)
}

/// How a probe session connects through `dsn`, its notices going to `notices`.
pub(crate) fn probe_config_into(dsn: &Dsn, notices: &Notices) -> postgres::Config {
    let sink = notices.clone();
    let mut config = dbenv::pg_config(dsn);
    // The sessions that prove what the runtime roles can do look like the
    // app's: nothing a policy could test (`current_setting('application_name')`)
    // tells them apart.
    config.application_name(dsn.param("application_name").unwrap_or(""));
    config.notice_callback(move |notice| {
        sink.lock().unwrap().push(format!("{}: {}", notice.code().code(), notice.message()))
    });
    config
}

/// A session as `kind`, with a notice collector.
pub(crate) fn connect_as(dsn: &Dsn, var: &str) -> Result<ProbeSession> {
    let (config, notices) = probe_config(dsn);
    let client = dbenv::connect_with(dsn, var, config)?;
    Ok((client, notices))
}

/// What the probes of one role found.
pub struct RoleProbes {
    pub probes: Vec<Probe>,
    pub residuals: Vec<Probe>,
}

/// Every probe as `kind`, plus the set-based privilege checks run as that
/// role: on `session` when given (opened by [`probe_config`], unpinned and
/// with nothing set), else on a session of their own.
pub(crate) fn probe_role(
    model: &Model,
    (bookkeeping, extension): (&drizzle::Table, &Extension),
    (kind, dsn): (RoleKind, &Dsn),
    session: Option<ProbeSession>,
    queries: &QueryCount,
) -> Result<RoleProbes> {
    let var = kind.dsn_var();
    // A session that has set nothing yet (the route's), pinned first; a new
    // one when it was closed meanwhile (an idle timeout).
    let held = session.and_then(|(client, notices)| dbenv::pin(client).ok().map(|client| (client, notices)));
    let (mut client, notices) = match held {
        Some(held) => held,
        None => connect_as(dsn, var).with_context(|| format!("log in as the {kind} role"))?,
    };
    let role = model.role(kind).name.clone();
    let session = session_probe(&mut client, &role, &model.role(kind).login, queries)?;
    let targets = discover(&mut client, model, (bookkeeping, extension), queries)?;
    let probe = |spec: Spec, held: Held, client: &mut Client, queries: &QueryCount| {
        let (observed, verdict) = run(client, &notices, &spec, held, queries);
        let (sql, expected) = (spec.sql.unwrap_or_default(), spec.expect.text().into());
        Probe { role: role.clone(), id: spec.id, capability: spec.capability, sql, expected, observed, verdict }
    };
    let specs = specs(model, kind, &targets);
    let held = ask_the_catalog(&mut client, &specs, queries);
    let mut probes = vec![session];
    probes.extend(specs.into_iter().zip(held).map(|(spec, held)| probe(spec, held, &mut client, queries)));
    let started = std::time::Instant::now();
    probes.extend(privilege_checks(&mut client, model, &role, queries)?);
    let version = dbenv::ServerVersion::read(&mut client)?;
    queries.add(1);
    probes.extend(crate::powers::check(&mut client, &role, version, queries)?);
    crate::trace(&format!("privilege checks as {role}"), started);
    let residuals = residual_specs(model, kind, &targets)
        .into_iter()
        .map(|spec| probe(spec, Held::No, &mut client, queries))
        .collect();
    Ok(RoleProbes { probes, residuals })
}

/// The session the probes run in logs in as the DSN's login and acts as
/// the role from its first statement: a rotated role's alternate login that
/// started as itself (or as another role) would make every probe after it
/// prove something else.
fn session_probe(client: &mut Client, role: &str, login: &str, queries: &QueryCount) -> Result<Probe> {
    queries.add(1);
    let sql = "SELECT current_user::text, session_user::text";
    let row = client.query_one(sql, &[])?;
    let (current, session): (String, String) = (row.get(0), row.get(1));
    let (observed, verdict) = if current == role && session == login {
        (format!("{session} as {current}"), Verdict::Pass)
    } else {
        (format!("{session} as {current}, NOT {login} as {role}"), Verdict::Fail)
    };
    Ok(Probe {
        role: role.to_string(),
        id: "session",
        capability: "the DSN's login starts as the role".to_string(),
        sql: sql.to_string(),
        expected: "its login, as the role".to_string(),
        observed,
        verdict,
    })
}

/// Every probe's guard in one query, asked as the role: whether it holds
/// the power the probe would try (see [`Spec::guard`]).
fn ask_the_catalog(client: &mut Client, specs: &[Spec], queries: &QueryCount) -> Vec<Held> {
    let guards: Vec<&str> = specs.iter().filter_map(|s| s.guard.as_deref()).collect();
    if guards.is_empty() {
        return vec![Held::No; specs.len()];
    }
    queries.add(1);
    let answers: Option<Vec<bool>> = client
        .query_one(
            &format!(
                "SELECT ARRAY[{}]",
                guards.iter().map(|g| format!("coalesce(({g}), false)")).collect::<Vec<_>>().join(", ")
            ),
            &[],
        )
        .ok()
        .map(|row| row.get(0));
    let mut answers = answers.map(Vec::into_iter);
    specs
        .iter()
        .map(|spec| match (&spec.guard, answers.as_mut()) {
            (None, _) => Held::No,
            (Some(_), None) => Held::Unknown,
            (Some(_), Some(answers)) => match answers.next() {
                Some(true) => Held::Yes,
                Some(false) => Held::No,
                None => Held::Unknown,
            },
        })
        .collect()
}

/// The app sequences the role may `setval()`, and how many there are.
/// `setval` is not undone by a rollback: the catalog answers, the function
/// is never called.
fn settable_sequences(client: &mut Client, model: &Model, queries: &QueryCount) -> Result<(i64, Option<Vec<String>>)> {
    queries.add(1);
    let row = client.query_one(
        "SELECT count(*), array_agg(quote_ident(n.nspname) || '.' || quote_ident(s.relname) ORDER BY n.nspname, s.relname) \
                  FILTER (WHERE has_sequence_privilege(s.oid, 'UPDATE')) \
         FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace \
         WHERE n.nspname = ANY($1) AND s.relkind = 'S'",
        &[&model.app_schemas],
    )?;
    Ok((row.get(0), row.get(1)))
}

/// At most five names, and how many more.
fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// The relations `[[private]]` keeps from `role`.
fn private_names(model: &Model, role: &str) -> Vec<String> {
    let private =
        |e: &&roles::Exemption| e.kind == roles::exemptions::Kind::Private && e.roles.iter().any(|r| r == role);
    model.exemptions.entries.iter().filter(private).map(|e| e.name.clone()).collect()
}

/// How many relations the writers grant the role DML on, those where it
/// lacks some, and those where it holds more than DML.
#[allow(clippy::type_complexity)]
fn table_privileges(
    client: &mut Client,
    model: &Model,
    role: &str,
    version: dbenv::ServerVersion,
) -> Result<(i64, Option<Vec<String>>, Option<Vec<String>>)> {
    let extra = if version.has_maintain() { " OR has_table_privilege(c.oid, 'MAINTAIN')" } else { "" };
    let private = private_names(model, role);
    let invoker = roles::snapshot::reach::INVOKER_SQL;
    // The lineage is read only when the policy file keeps something private:
    // it is a recursive query per relation.
    let private_test = if private.is_empty() {
        "cardinality($2::text[]) < 0".to_string()
    } else {
        format!("{} && $2", roles::snapshot::reach::LINEAGE_SQL)
    };
    let row = client.query_one(
        &format!(
            "SELECT count(*) FILTER (WHERE granted), \
                    array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY n.nspname, c.relname) \
                      FILTER (WHERE granted AND NOT (has_table_privilege(c.oid, 'SELECT') \
                                    AND has_table_privilege(c.oid, 'INSERT') \
                                    AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE'))), \
                    array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY n.nspname, c.relname) \
                      FILTER (WHERE has_table_privilege(c.oid, 'TRUNCATE') OR has_table_privilege(c.oid, 'REFERENCES') \
                                 OR has_table_privilege(c.oid, 'TRIGGER'){extra}) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL (SELECT (c.relkind IN ('r', 'p') OR (c.relkind = 'v' AND {invoker})) \
                                        AND NOT ({private_test}) AS granted) g \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        ),
        &[&model.app_schemas, &private],
    )?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// DML on every app table and invoker view the writers grant (not the ones
/// the policy file keeps from the role) and USAGE on every sequence a column
/// default uses, asked of the server as the role itself: two queries,
/// whatever the number of tables.
fn privilege_checks(client: &mut Client, model: &Model, role: &str, queries: &QueryCount) -> Result<Vec<Probe>> {
    queries.add(2);
    let version = dbenv::ServerVersion::read(client)?;
    let (tables, lacking, excess) = table_privileges(client, model, role, version)?;
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
    let (sequences_checked, settable) = settable_sequences(client, model, queries)?;
    let probe = |id, capability: String, sql: &str, expected: &str, problem: Option<String>, empty: bool| {
        let (observed, verdict) = match (problem, empty) {
            (Some(problem), _) => (problem, Verdict::Fail),
            (None, true) => ("nothing to check".to_string(), Verdict::NotApplicable),
            (None, false) => ("as expected".to_string(), Verdict::Pass),
        };
        let (sql, expected) = (sql.to_string(), expected.to_string());
        Probe { role: role.to_string(), id, capability, sql, expected, observed, verdict }
    };
    Ok(vec![
        probe(
            "dml-everywhere",
            format!("SELECT, INSERT, UPDATE, DELETE on all {tables} app tables and invoker views (not [[private]])"),
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
        probe(
            "setval",
            format!("setval() on the {sequences_checked} app sequences"),
            "has_sequence_privilege(…, 'UPDATE') as the role (setval is not undone by a rollback: never called)",
            "none held",
            settable.filter(|l| !l.is_empty()).map(|l| format!("HELD on {}", list(&l))),
            sequences_checked == 0,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_row_has_four_fields_and_a_unique_id() {
        let rows: Vec<_> = rows().collect();
        assert_eq!(rows.len(), PROBES.lines().count());
        let mut ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rows.len(), "a probe id appears twice");
        for (id, capability, sql, _) in &rows {
            assert!(!id.contains(' ') && !capability.is_empty() && !sql.is_empty(), "{id}");
        }
        assert_eq!(rows.iter().filter(|r| r.3 == Expect::Allowed).count(), 4, "the DML the roles keep");
    }
}
