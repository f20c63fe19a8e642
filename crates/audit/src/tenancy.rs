//! RLS with rows, proven live: without a tenant the runtime role sees no
//! row of a non-empty RLS table that the service role sees (beyond the rows
//! declared public), and with a tenant that owns nothing it cannot insert a
//! copy of any existing row (every tenant table's `WITH CHECK` refuses it).

use std::collections::BTreeMap;

use anyhow::Result;
use dbenv::{quote_literal, Dsn, RoleKind};
use postgres::error::SqlState;
use postgres::Client;
use roles::Model;

use crate::exemptions::Kind;
use crate::probe_rows;
use crate::probes::connect_as;
use crate::report::{Probe, RlsBehaviour, Verdict};
use crate::reviewed::{exempt_note, Reviewed};

/// How many tables one sampling query reads.
const TABLES_PER_QUERY: usize = 200;

/// An RLS table of the app schemas as the service role sees it.
struct Sample {
    table: String,
    /// `schema.table`, as the exemptions file names it.
    name: String,
    /// Columns an INSERT may name (not generated).
    columns: String,
    /// One row, as JSON, when the table has rows.
    row: Option<String>,
}

/// What the service role reads for both proofs: every RLS table of the app
/// schemas with one of its rows, and a tenant value that owns nothing.
pub struct Samples {
    /// The RLS tables of the app schemas that may hold rows.
    samples: Vec<Sample>,
    /// How many RLS tables the app schemas have.
    rls_tables: usize,
    fresh_tenant: String,
}

/// Reads the samples as the service role (it bypasses RLS): one query for
/// the tables, one per 200 tables that may hold rows. The tables are those of
/// the app schemas and, in any other schema, those the runtime role may use
/// (a tenant table elsewhere with DML for `app_user` is in scope). The
/// tenant value is chosen later, once the catalog audit named the tenant root.
pub fn sample(model: &Model, service: &mut Client, queries: &mut u32) -> Result<Samples> {
    *queries += 1;
    // Only tables with a page can hold a row: the others are counted, not
    // described (describing 10,000 empty tables costs more than the rest).
    let tables = service.query(
        "WITH rls AS (SELECT c.oid, n.oid AS nsp, n.nspname, c.relname, c.relkind FROM pg_class c \
                      JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity \
                        AND (n.nspname = ANY($1) \
                             OR (n.nspname NOT IN ('pg_catalog', 'information_schema') \
                                 AND n.nspname::text NOT LIKE 'pg\\_%' \
                                 AND EXISTS (SELECT 1 FROM pg_roles u WHERE u.rolname = $2 \
                                               AND has_schema_privilege(u.oid, n.oid, 'USAGE') \
                                               AND has_table_privilege(u.oid, c.oid, \
                                                                       'SELECT, INSERT, UPDATE, DELETE'))))), \
              paged AS (SELECT * FROM rls WHERE (relkind = 'p' OR pg_relation_size(oid) > 0) \
                          AND has_schema_privilege(nsp, 'USAGE') AND has_table_privilege(oid, 'SELECT')) \
         SELECT (SELECT count(*) FROM rls), quote_ident(p.nspname) || '.' || quote_ident(p.relname), \
                p.nspname || '.' || p.relname, \
                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a \
                 WHERE a.attrelid = p.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') \
         FROM (SELECT 1) one LEFT JOIN paged p ON true ORDER BY 2",
        &[&model.app_schemas, &model.runtime.name],
    )?;
    let rls_tables = tables.first().map(|r| r.get::<_, i64>(0) as usize).unwrap_or(0);
    let samples: Vec<Sample> = tables
        .iter()
        .filter_map(|r| {
            Some(Sample {
                table: r.get::<_, Option<String>>(1)?,
                name: r.get::<_, Option<String>>(2)?,
                columns: r.get::<_, Option<String>>(3).unwrap_or_default(),
                row: None,
            })
        })
        .collect();
    let maybe_rows: Vec<String> = samples.iter().map(|s| s.table.clone()).collect();
    let mut samples = samples;
    // One row per table, a bounded number of tables per query (a UNION of
    // thousands exhausts the server's stack).
    for chunk in maybe_rows.chunks(TABLES_PER_QUERY) {
        *queries += 1;
        let probe = chunk
            .iter()
            .map(|table| {
                format!("SELECT {}::text, (SELECT to_json(x)::text FROM {table} x LIMIT 1)", quote_literal(table))
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for row in service.query(&probe, &[])? {
            let table: String = row.get(0);
            if let Some(sample) = samples.iter_mut().find(|s| s.table == table) {
                sample.row = row.get(1);
            }
        }
    }
    Ok(Samples { samples, rls_tables, fresh_tenant: String::new() })
}

/// Picks a tenant value that owns nothing, of the tenant root's key type.
fn choose_fresh_tenant(
    service: &mut Client,
    samples: &mut Samples,
    root: Option<&str>,
    queries: &mut u32,
) -> Result<()> {
    // The tenant root's key type decides what a tenant value that owns
    // nothing looks like.
    let root = root.and_then(|root| samples.samples.iter().find(|s| s.name == root)).map(|s| s.table.clone());
    let key = match &root {
        Some(root) => {
            *queries += 1;
            service
                .query_opt(
                    "SELECT quote_ident(a.attname), format_type(a.atttypid, NULL) FROM pg_index i JOIN pg_attribute a \
                     ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                     WHERE i.indrelid = $1::text::regclass AND i.indisprimary AND i.indnatts = 1",
                    &[root],
                )?
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        }
        None => None,
    };
    samples.fresh_tenant = match (&key, &root) {
        (Some((column, kind)), Some(root)) if matches!(kind.as_str(), "integer" | "bigint" | "smallint") => {
            *queries += 1;
            let max: i64 =
                service.query_one(&format!("SELECT coalesce(max({column}), 0)::int8 FROM {root}"), &[])?.get(0);
            max.saturating_add(1_000_001).to_string()
        }
        (Some((_, kind)), _) if matches!(kind.as_str(), "text" | "character varying") => fresh_uuid().replace('-', ""),
        _ => fresh_uuid(),
    };
    Ok(())
}

/// A UUID no row holds (version 4 layout from the clock and the process).
fn fresh_uuid() -> String {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = (nanos ^ ((std::process::id() as u128) << 64) ^ 0x5bd1_e995_5bd1_e995_5bd1_e995_5bd1_e995)
        .wrapping_add(call.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
    let hex = format!("{mixed:032x}");
    // The variant digit drawn too (8, 9, a or b): nothing marks the value.
    let variant = ["8", "9", "a", "b"][(mixed >> 126) as usize & 3];
    format!("{}-{}-4{}-{variant}{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// Without a tenant, `app_user` sees no row of a non-empty RLS table that
/// the service role sees, except the rows the exemptions file declares
/// public (`[[public]]`, all rows or those matching `rows`).
pub fn behaviour(
    model: &Model,
    samples: &Samples,
    runtime: &mut Client,
    exemptions: &Reviewed<'_>,
    queries: &mut u32,
) -> RlsBehaviour {
    let with_rows: Vec<&Sample> = samples.samples.iter().filter(|s| s.row.is_some()).collect();
    if samples.rls_tables == 0 {
        return RlsBehaviour { verdict: Verdict::Unproven, message: "no table has row-level security yet".into() };
    }
    if with_rows.is_empty() {
        return RlsBehaviour {
            verdict: Verdict::Unproven,
            message: format!("unproven: none of the {} RLS tables has rows to hide", samples.rls_tables),
        };
    }
    // Per table: the rows app_user must not see without a tenant.
    let mut checked = Vec::new();
    let mut parts = Vec::new();
    for sample in &with_rows {
        let hidden = match exemptions.public(&sample.name) {
            Some(public) => match &public.rows {
                None => continue, // every row is public by design
                Some(rows) => format!("SELECT 1 FROM {} WHERE NOT coalesce(({rows}), false)", sample.table),
            },
            None => format!("SELECT 1 FROM {}", sample.table),
        };
        checked.push(sample.name.clone());
        parts.push((sample.name.clone(), format!("SELECT {}::text, EXISTS ({hidden})", quote_literal(&sample.name))));
    }
    if parts.is_empty() {
        return RlsBehaviour {
            verdict: Verdict::Unproven,
            message: "unproven: every RLS table with rows is declared public-readable".into(),
        };
    }
    let runtime_name = &model.runtime.name;
    let setting = &model.tenant_setting;
    let Seen { leaks, failing, unproven, exempt } =
        match every_state(model, samples, runtime, &parts, exemptions, queries) {
            Ok(found) => found,
            Err(failed) => return failed,
        };
    let declared = with_rows.len() - checked.len();
    let public_note = if declared > 0 { format!("; {declared} declared public-readable") } else { String::new() };
    let mut failing_note =
        if failing.is_empty() { String::new() } else { format!("; the app's queries fail {}", failing.join("; ")) };
    failing_note.push_str(&exempt_note(&exempt, "it sees rows of"));
    if leaks.is_empty() && !unproven.is_empty() {
        RlsBehaviour {
            verdict: Verdict::Unproven,
            message: format!("unproven: reading failed on {}{failing_note}", unproven.join("; ")),
        }
    } else if leaks.is_empty() {
        RlsBehaviour {
            verdict: Verdict::Pass,
            message: format!(
                "without {setting}, with a tenant that owns nothing and on a pooled session, `{runtime_name}` sees \
                 no row of {} non-empty RLS tables that `{}` sees ({}){public_note}{failing_note}",
                checked.len(),
                model.service.name,
                checked.join(", ")
            ),
        }
    } else {
        RlsBehaviour {
            verdict: Verdict::Fail,
            message: format!(
                "{}{}",
                leaks.join("; "),
                if exemptions.entries.iter().any(|e| e.kind == Kind::Public) {
                    " (beyond the rows declared public)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// What the runtime role saw of the hidden rows in every state.
#[derive(Default)]
struct Seen {
    /// `<state>, <role> sees rows of <tables>`.
    leaks: Vec<String>,
    /// Tables whose read fails on the pooled session's '' (the app fails there).
    failing: Vec<String>,
    /// Tables whose read fails with a tenant set or with none: unproven.
    unproven: Vec<String>,
    /// Tables whose policies the policy file declares reviewed, with the
    /// state in which the runtime role saw their rows.
    exempt: Vec<String>,
}

/// The runtime role's view of the hidden rows in each state a session is
/// in: fresh; with a tenant that owns nothing; and pooled, after an earlier
/// transaction committed a `SET LOCAL` of the tenant (the setting then
/// reads '', not NULL). Each read runs in a probe transaction that is
/// rolled back, so whatever a policy's functions do is undone. A data error
/// (a cast of the setting) fails one table, never the others.
fn every_state(
    model: &Model,
    samples: &Samples,
    runtime: &mut Client,
    parts: &[(String, String)],
    exemptions: &Reviewed<'_>,
    queries: &mut u32,
) -> Result<Seen, RlsBehaviour> {
    let runtime_name = &model.runtime.name;
    let setting = &model.tenant_setting;
    let set_fresh = set_tenant(setting, &samples.fresh_tenant);
    let begin = crate::probes::begin_probe();
    let states = [
        (format!("without {setting}"), begin.clone(), false),
        (format!("with {setting} set to a tenant that owns nothing"), format!("{begin}; {set_fresh}"), false),
        (
            format!("after an earlier transaction set {setting} locally (it reads '')"),
            format!("BEGIN; {set_fresh}; COMMIT; {begin}"),
            true,
        ),
    ];
    let mut seen = Seen::default();
    for (state, start, pooled) in &states {
        *queries += 1;
        if let Err(error) = runtime.batch_execute(start) {
            let _ = runtime.batch_execute("ROLLBACK");
            return Err(RlsBehaviour { verdict: Verdict::Fail, message: explain_read_error(runtime_name, &error) });
        }
        let read = leaking_in(runtime, parts, queries);
        let _ = runtime.batch_execute("ROLLBACK");
        let (leaking, errors) = read.map_err(|error| RlsBehaviour {
            verdict: Verdict::Fail,
            message: explain_read_error(runtime_name, &error),
        })?;
        let (leaking, exempt) = exemptions.split(leaking);
        seen.exempt.extend(exempt.into_iter().map(|table| format!("{table} {state}")));
        if !leaking.is_empty() {
            seen.leaks.push(format!("{state}, `{runtime_name}` sees rows of {}", leaking.join(", ")));
        }
        for (table, message) in errors {
            let line = format!("{table} {state}: {message}");
            if *pooled {
                seen.failing.push(line)
            } else {
                seen.unproven.push(line)
            }
        }
    }
    Ok(seen)
}

/// The tables of `parts` whose hidden rows the session sees, a bounded
/// number of tables per query, and the tables whose read failed with a
/// data error (read one by one once their chunk failed). Runs inside a
/// transaction.
#[allow(clippy::type_complexity)]
pub(crate) fn leaking_in(
    runtime: &mut Client,
    parts: &[(String, String)],
    queries: &mut u32,
) -> Result<(Vec<String>, Vec<(String, String)>), postgres::Error> {
    let (mut leaking, mut errors) = (Vec::new(), Vec::new());
    let data_error = |e: &postgres::Error| e.code().is_some_and(|c| c.code().starts_with("22"));
    for chunk in parts.chunks(TABLES_PER_QUERY) {
        *queries += 2;
        runtime.batch_execute("SAVEPOINT xtask_read")?;
        let sql = chunk.iter().map(|(_, sql)| sql.as_str()).collect::<Vec<_>>().join(" UNION ALL ");
        let rows = match runtime.query(&sql, &[]) {
            Ok(rows) => rows,
            Err(error) if data_error(&error) => {
                runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_read")?;
                let mut rows = Vec::new();
                for (table, sql) in chunk {
                    *queries += 2;
                    match runtime.query(sql, &[]) {
                        Ok(found) => rows.extend(found),
                        Err(error) if data_error(&error) => {
                            runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_read")?;
                            let message = error.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                            errors.push((table.clone(), message));
                        }
                        Err(error) => return Err(error),
                    }
                }
                rows
            }
            Err(error) => return Err(error),
        };
        leaking.extend(rows.iter().filter(|r| r.get::<_, bool>(1)).map(|r| r.get::<_, String>(0)));
    }
    Ok((leaking, errors))
}

/// The runtime role's read failed: say why in the model's terms.
fn explain_read_error(role: &str, error: &postgres::Error) -> String {
    let message = error.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| error.to_string());
    if message.contains("row-level security") {
        format!(
            "`{role}` cannot read RLS tables at all: row_security is off in its session (a role or database default; \
             see the role-settings check), so every app query on an RLS table fails ({message})"
        )
    } else {
        format!("`{role}` could not read the RLS tables: {message}")
    }
}

/// What one attempt to write another tenant's row did.
pub(crate) enum Insert {
    /// Refused by row-level security.
    Denied,
    /// Passed the policies: the table, and what stopped the row later if anything.
    Allowed(String),
    /// Refused for another reason: the table and the reason.
    Unproven(String),
    /// Written, but into the probe's own tenant (a BEFORE trigger set the
    /// tenant): no cross-tenant write.
    OwnTenant(String),
}

/// What the probe-row plan knows of a table the copies write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Known {
    /// Columns a fresh key must never change: foreign keys and columns of
    /// the tenant key's type (changing them could move the copy out of its
    /// tenant and hide a leak).
    pub fixed: Vec<String>,
    /// The column that names the row's tenant directly (a foreign key to
    /// the root, or a column of the root key's type).
    pub tenant_column: Option<String>,
    /// Fresh values for the table's primary key, as a JSON patch, when it
    /// is made only of columns a fresh key may change and of types the
    /// probe makes up (uuid, integers, text).
    pub fresh_pk: Option<String>,
    /// Triggers or rules that may act outside the transaction: the table
    /// is not written at all.
    pub outside: Option<String>,
}

/// A JSON value as PostgreSQL prints it as text (`NULL` as `None`).
fn as_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// The JSON value of `column` in the row `json`, as text.
fn json_text(json: &str, column: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    as_text(value.get(column)?)
}

/// A WHERE clause that finds a row by the values of a JSON patch, as text.
fn lookup_from(patch: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(patch).ok()?;
    let object = value.as_object().filter(|o| !o.is_empty())?;
    let parts: Option<Vec<String>> = object
        .iter()
        .map(|(column, v)| Some(format!("{}::text = {}", dbenv::quote_ident(column), quote_literal(&as_text(v)?))))
        .collect();
    Some(parts?.join(" AND "))
}

/// The statement that sets the tenant for the rest of the transaction.
pub(crate) fn set_tenant(setting: &str, value: &str) -> String {
    format!("SELECT pg_catalog.set_config({}, {}, true)", quote_literal(setting), quote_literal(value))
}

/// Inserts a copy of `sample`'s row under a savepoint, rolled back. With
/// what the plan knows, the copy first gets a primary key of its own (so it
/// can be found again) and the tenant its original names is the victim: a
/// copy that only the writer sees, not the victim, is a BEFORE trigger's
/// doing. A copy that collides on another unique key once the policies
/// passed it stays a cross-tenant write unless a retry with that key fresh
/// proves the trigger.
fn insert_other_tenants_row(
    runtime: &mut Client,
    sample: &Sample,
    tenants: &Tenants<'_>,
    known: Option<&Known>,
) -> Insert {
    let row = sample.row.as_deref().unwrap_or("{}");
    let insert = |patch: &str| {
        format!(
            "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} \
             FROM json_populate_record(NULL::{table}, ({row}::jsonb || {patch}::jsonb)::json)",
            table = sample.table,
            columns = sample.columns,
            row = quote_literal(row),
            patch = quote_literal(patch)
        )
    };
    let mut patch = "{}".to_string();
    let mut own = None;
    if let Some((known, fresh)) = known.and_then(|k| k.fresh_pk.as_ref().map(|f| (k, f))) {
        if let Some(victim) = known.tenant_column.as_deref().and_then(|c| json_text(row, c)) {
            own = lookup_from(fresh).map(|lookup| (lookup, victim));
            patch = fresh.clone();
        }
    }
    let has_own = own.is_some();
    let write = Write {
        name: &sample.name,
        table: &sample.table,
        insert: true,
        tenants,
        own,
        tenantless: tenants.writer.is_empty(),
    };
    let (first, mut unique) = try_write_keyed(runtime, &write, &insert(&patch));
    if !has_own || !matches!(first, Insert::Allowed(_)) {
        return first;
    }
    let fixed = known.map(|k| k.fixed.clone()).unwrap_or_default();
    for _ in 0..2 {
        let Some(constraint) = unique.take() else { break };
        let Some(fresh) = fresh_key(runtime, &sample.table, &constraint, &patch, &fixed).filter(|f| *f != patch) else {
            break;
        };
        patch = fresh;
        let (retry, collided) = try_write_keyed(runtime, &write, &insert(&patch));
        if matches!(retry, Insert::OwnTenant(_)) {
            return retry;
        }
        unique = collided;
    }
    first
}

/// Whether the row just written is the writer's own: a BEFORE trigger put
/// it in the writer's tenant. Found again by its own key, in the same
/// savepoint (the write is never run twice, so a trigger cannot answer two
/// runs differently): the writer must see it, and the tenant it was taken
/// from (the victim) must not. Unknown key or victim, or anything that
/// fails: no.
fn written_for_writer(runtime: &mut Client, write: &Write<'_>) -> bool {
    let Some((lookup, victim)) = &write.own else { return false };
    let Tenants { setting, writer } = write.tenants;
    let count = format!("SELECT count(*) FROM {} WHERE {lookup}", write.table);
    let seen = |runtime: &mut Client| -> Option<i64> { runtime.query_one(count.as_str(), &[]).ok().map(|r| r.get(0)) };
    let by_writer = seen(runtime);
    let switched = runtime.batch_execute(&set_tenant(setting, victim));
    let by_victim = switched.ok().and_then(|()| seen(runtime));
    let back = runtime.batch_execute(&set_tenant(setting, writer));
    by_writer == Some(1) && by_victim == Some(0) && back.is_ok()
}

/// `patch` with fresh values for the columns of the unique index
/// `constraint` of `table`, as JSON, or `None` when the index has an
/// expression, a type the probe cannot make up, or a column of `fixed`.
fn fresh_key(runtime: &mut Client, table: &str, constraint: &str, patch: &str, fixed: &[String]) -> Option<String> {
    // Under a savepoint: a failed read must not abort the probe's transaction.
    runtime.batch_execute("SAVEPOINT xtask_key").ok()?;
    let row = runtime
        .query_opt(
            "SELECT ($3::text::jsonb || jsonb_object_agg(a.attname, CASE \
                      WHEN t.typname = 'uuid' THEN to_jsonb(pg_catalog.gen_random_uuid()) \
                      WHEN t.typname = 'int2' THEN to_jsonb(1000 + floor(random() * 30000)::int) \
                      WHEN t.typcategory = 'N' THEN to_jsonb(1000000 + floor(random() * 1000000000)::int8) \
                      WHEN t.typcategory = 'S' THEN to_jsonb(left(md5(random()::text) || md5(random()::text), \
                           CASE WHEN a.atttypmod > 4 THEN a.atttypmod - 4 ELSE 40 END)) END))::text, \
                    bool_and((t.typname = 'uuid' OR t.typcategory IN ('N', 'S')) AND NOT (0 = ANY (i.indkey)) \
                             AND NOT (a.attname::text = ANY ($4::text[]))) \
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE i.indrelid = $1::text::regclass AND (($2 = '' AND i.indisprimary) \
                   OR i.indexrelid = (SELECT c.oid FROM pg_class c \
                     WHERE c.relname = $2 AND c.relnamespace = (SELECT relnamespace FROM pg_class \
                                                                WHERE oid = $1::text::regclass))) \
             GROUP BY i.indexrelid",
            &[&table, &constraint, &patch, &fixed],
        )
        .ok()
        .flatten();
    let _ = runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_key; RELEASE SAVEPOINT xtask_key");
    let row = row?;
    row.get::<_, Option<bool>>(1).filter(|ok| *ok)?;
    row.get(0)
}

/// Runs one write that the policies must refuse (an INSERT or UPDATE of
/// another tenant's row) under a savepoint, rolled back, and says what it
/// did. No RETURNING on the write itself: it makes the server check the
/// SELECT policies on the new row too, and a row its writer may not see is
/// exactly the cross-tenant write this looks for. An UPDATE that touched no
/// row proves nothing (`insert` false: the writer's own row was not there).
pub(crate) fn try_write(runtime: &mut Client, write: &Write<'_>, statement: &str) -> Insert {
    try_write_keyed(runtime, write, statement).0
}

/// The tenant setting and the writer's tenant.
pub(crate) struct Tenants<'a> {
    pub setting: &'a str,
    pub writer: &'a str,
}

/// One write of a proof: the table as reports name it and as SQL does,
/// whether it is an INSERT (else an UPDATE, which must touch a row), and how
/// to find the written row again with the tenant it was taken from (the
/// victim), when both are known.
pub(crate) struct Write<'a> {
    pub name: &'a str,
    pub table: &'a str,
    pub insert: bool,
    pub tenants: &'a Tenants<'a>,
    /// A WHERE clause over the written row's own key, and the victim.
    pub own: Option<(String, String)>,
    /// Written with no tenant: a data error (the setting cast to the key's
    /// type) refuses the write as it refuses the app's.
    pub tenantless: bool,
}

/// [`try_write`], and the unique index the write collided with after the
/// policies passed it (23505), if it did.
fn try_write_keyed(runtime: &mut Client, write: &Write<'_>, statement: &str) -> (Insert, Option<String>) {
    let name = write.name;
    // One round trip: the savepoint, then the write, whose count is the
    // last one the server reports.
    let result = runtime.simple_query(&format!("SAVEPOINT xtask_probe; {statement}")).map(|messages| {
        messages
            .iter()
            .rev()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0)
    });
    let own_tenant = matches!(result, Ok(n) if n > 0) && written_for_writer(runtime, write);
    let _ = runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_probe; RELEASE SAVEPOINT xtask_probe");
    let code = |error: &postgres::Error| error.code().map(|c| c.code().to_string());
    let unique = match &result {
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            error.as_db_error().and_then(|d| d.constraint()).map(str::to_string)
        }
        _ => None,
    };
    let outcome = match result {
        Err(error) if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            // Only the server's own WITH CHECK refusal counts: a trigger can
            // raise 42501 with the same words for sessions it recognises.
            let routine = error.as_db_error().and_then(|d| d.routine());
            // The policy's WITH CHECK, or no privilege at all (a stronger
            // denial); a trigger's RAISE is neither.
            if matches!(routine, Some("ExecWithCheckOptions" | "aclcheck_error")) {
                Insert::Denied
            } else {
                let routine = routine.unwrap_or("?");
                Insert::Unproven(format!("{name} (42501 from `{routine}`, not the policies' WITH CHECK)"))
            }
        }
        Err(error) if write.tenantless && code(&error).is_some_and(|c| c.starts_with("22")) => Insert::Denied,
        Ok(0) if !write.insert => Insert::Unproven(format!("{name} (the writer's own row was not there to update)")),
        Ok(_) if own_tenant => Insert::OwnTenant(name.to_string()),
        // The row passed the policies' WITH CHECK: whatever stopped it
        // afterwards (a unique key, a foreign key, a NOT NULL) came later.
        Ok(_) => Insert::Allowed(name.to_string()),
        Err(error) if code(&error).is_some_and(|c| c.starts_with("23")) => {
            Insert::Allowed(format!("{name} (then {})", code(&error).unwrap_or_default()))
        }
        Err(error) => Insert::Unproven(format!("{name} ({})", code(&error).unwrap_or_else(|| error.to_string()))),
    };
    (outcome, unique)
}

/// As `app_user` with a tenant that owns nothing, inserting a copy of an
/// existing row must be refused by RLS (SQLSTATE 42501) on every RLS table
/// with rows; each attempt is rolled back.
pub fn cross_tenant_insert(
    model: &Model,
    samples: &Samples,
    runtime: Option<&mut Client>,
    exemptions: &Reviewed<'_>,
    queries: &mut u32,
) -> Probe {
    let with_rows = samples.samples.iter().any(|s| s.row.is_some());
    let Some(runtime) = runtime.filter(|_| with_rows) else {
        let mut probe = insert_probe(model, &Outcomes::default(), "a tenant that owns nothing");
        probe.observed = "n/a (no RLS table has rows)".into();
        probe.verdict = Verdict::NotApplicable;
        return probe;
    };
    *queries += 1;
    let start =
        format!("{}; {}", crate::probes::begin_probe(), set_tenant(&model.tenant_setting, &samples.fresh_tenant));
    if let Err(error) = runtime.batch_execute(&start) {
        let _ = runtime.batch_execute("ROLLBACK");
        let mut probe = insert_probe(model, &Outcomes::default(), "a tenant that owns nothing");
        probe.observed = format!("could not start: {error}");
        probe.verdict = Verdict::Inconclusive;
        return probe;
    }
    let tenants = Tenants { setting: &model.tenant_setting, writer: &samples.fresh_tenant };
    let mut outcomes = copies(runtime, samples, &tenants, &BTreeMap::new(), queries);
    let _ = runtime.batch_execute("ROLLBACK");
    outcomes.review(exemptions, 'a');
    insert_probe(model, &outcomes, "a tenant that owns nothing")
}

/// What the writes of one proof did, by table.
#[derive(Default)]
pub(crate) struct Outcomes {
    pub denied: Vec<String>,
    pub allowed: Vec<String>,
    pub unproven: Vec<String>,
    pub own: Vec<String>,
    /// The table of each entry of `allowed`.
    pub allowed_tables: Vec<String>,
    /// Writes the policies let through on tables whose policies the policy
    /// file declares reviewed: `how (exempt: reason)`.
    pub exempt: Vec<String>,
}

impl Outcomes {
    pub(crate) fn add(&mut self, table: &str, outcome: Insert) {
        match outcome {
            Insert::Denied => self.denied.push(table.to_string()),
            Insert::Allowed(how) => {
                self.allowed.push(how);
                self.allowed_tables.push(table.to_string());
            }
            Insert::Unproven(why) => self.unproven.push(why),
            Insert::OwnTenant(table) => self.own.push(table),
        }
    }

    /// Moves the writes (`command`: `a` inserts, `w` updates) let through
    /// on tables whose policies for it the policy file declares reviewed
    /// (`[[policy]]`) from `allowed` to `exempt`.
    pub(crate) fn review(&mut self, exemptions: &Reviewed<'_>, command: char) {
        let allowed = std::mem::take(&mut self.allowed);
        let tables = std::mem::take(&mut self.allowed_tables);
        for (how, table) in allowed.into_iter().zip(tables) {
            match exemptions.reviewed(&table, command) {
                Some(entry) => self.exempt.push(format!("{how} (exempt: {})", entry.reason)),
                None => {
                    self.allowed.push(how);
                    self.allowed_tables.push(table);
                }
            }
        }
    }
}

/// Inserts a copy of one existing row of every RLS table with rows, in the
/// caller's transaction, with the caller's tenant set.
pub(crate) fn copies(
    runtime: &mut Client,
    samples: &Samples,
    tenants: &Tenants<'_>,
    known: &BTreeMap<String, Known>,
    queries: &mut u32,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for sample in samples.samples.iter().filter(|s| s.row.is_some()) {
        // A table whose triggers or rules may act outside the transaction
        // is not touched.
        if let Some(outside) = known.get(&sample.name).and_then(|k| k.outside.as_deref()) {
            outcomes.unproven.push(format!("{} (not touched: {outside} may act outside the transaction)", sample.name));
            continue;
        }
        *queries += 3;
        outcomes.add(&sample.name, insert_other_tenants_row(runtime, sample, tenants, known.get(&sample.name)));
    }
    outcomes
}

/// The cross-tenant insert probe from its outcomes; `tenant` says which
/// tenant the copies were written with.
pub(crate) fn insert_probe(model: &Model, outcomes: &Outcomes, tenant: &str) -> Probe {
    let mut probe = Probe {
        role: model.runtime.name.clone(),
        id: "cross-tenant-insert",
        capability: "INSERT a copy of another tenant's existing row into each RLS table".into(),
        sql: format!(
            "SET LOCAL {} = <{tenant}>; INSERT INTO <table> SELECT <a row of another tenant>",
            model.tenant_setting
        ),
        expected: "denied (42501)".into(),
        observed: String::new(),
        verdict: Verdict::Pass,
    };
    let Outcomes { denied, allowed, unproven, own, exempt, .. } = outcomes;
    let exempt_note = exempt_note(exempt, "let through on");
    let trigger_note = if own.is_empty() {
        String::new()
    } else {
        format!("; proven by a BEFORE trigger that put the row in the probe's own tenant on {}", own.join(", "))
    };
    if !allowed.is_empty() {
        probe.observed = format!("ALLOWED on {}{exempt_note}", allowed.join(", "));
        probe.verdict = Verdict::Fail;
    } else if denied.is_empty() && own.is_empty() && !exempt.is_empty() && unproven.is_empty() {
        probe.observed = format!("exempt only{exempt_note}");
        probe.verdict = Verdict::Exempt;
    } else if denied.is_empty() && own.is_empty() {
        probe.observed = if unproven.is_empty() {
            "n/a (no RLS table has rows)".into()
        } else {
            format!("unproven: {}{exempt_note}", unproven.join(", "))
        };
        probe.verdict = if unproven.is_empty() { Verdict::NotApplicable } else { Verdict::Unproven };
    } else {
        probe.observed = format!(
            "denied (42501) on {} tables{trigger_note}{}{exempt_note}",
            denied.len(),
            if unproven.is_empty() { String::new() } else { format!("; unproven on {}", unproven.join(", ")) }
        );
        // A table the proof could not reach is said, never folded into a pass.
        if !unproven.is_empty() {
            probe.verdict = Verdict::Unproven;
        }
    }
    probe
}

/// The tenantless writes (`probe_rows::tenantless_writes`) in a probe
/// transaction of their own, rolled back.
fn tenantless_in_own_transaction(
    runtime: &mut Client,
    model: &Model,
    plan: Option<&probe_rows::Plan>,
    samples: &Samples,
    queries: &mut u32,
) -> Outcomes {
    *queries += 1;
    if let Err(error) = runtime.batch_execute(&crate::probes::begin_probe()) {
        let _ = runtime.batch_execute("ROLLBACK");
        return Outcomes { unproven: vec![format!("could not start: {error}")], ..Outcomes::default() };
    }
    let outcomes = probe_rows::tenantless_writes(runtime, model, plan, Some(samples), queries);
    let _ = runtime.batch_execute("ROLLBACK");
    outcomes
}

/// The probe of writes without a tenant, on a fresh session.
fn no_tenant_probe(model: &Model, outcomes: Option<&Outcomes>) -> Probe {
    let sql = format!("<{} never set>; INSERT INTO <table> VALUES (<a row of any tenant>)", model.tenant_setting);
    match outcomes {
        Some(outcomes) => probe_rows::write_probe(
            &model.runtime.name,
            ("no-tenant-insert", "INSERT with no tenant set on a fresh session, empty tables included"),
            &sql,
            outcomes,
            &[],
        ),
        None => {
            let mut probe = probe_rows::write_probe(
                &model.runtime.name,
                ("no-tenant-insert", "INSERT with no tenant set on a fresh session, empty tables included"),
                &sql,
                &Outcomes::default(),
                &[],
            );
            probe.observed = "not tried (--no-write-probes): the RLS write policies are unproven".into();
            probe.verdict = Verdict::Unproven;
            probe
        }
    }
}

/// What the service role read, in its own session, while the rest of the
/// check ran.
pub struct Sampled {
    client: Client,
    samples: Samples,
    /// The probe-row plan of a root the policy file declares, read early.
    early: Option<(String, Result<probe_rows::Plan, probe_rows::NoPlan>)>,
    /// The runtime role's probe session, opened early (it has set nothing).
    runtime: Option<Client>,
}

/// Connects as the service role and samples the RLS tables (run beside the
/// catalog audit and the probes: it is the slowest read on large databases).
/// Where the policy file declares the tenant root, the probe-row plan is
/// read here too, beside the rest; a plan that cannot be read here is read
/// again later, where its error counts.
pub fn sample_as_service(
    model: &Model,
    (service, runtime): (&Dsn, &Dsn),
    declared_root: Option<&str>,
    queries: &mut u32,
) -> Result<Sampled> {
    let (mut client, _) = connect_as(service, RoleKind::Service.dsn_var())?;
    let samples = sample(model, &mut client, queries)?;
    let early = declared_root.and_then(|root| {
        let plan = probe_rows::plan(model, &mut client, root, queries).ok()?;
        Some((root.to_string(), plan))
    });
    // A session that fails to open here is opened again later, where its
    // error counts.
    let runtime = connect_as(runtime, RoleKind::Runtime.dsn_var()).ok().map(|(client, _)| client);
    Ok(Sampled { client, samples, early, runtime })
}

/// The proofs, from the samples: RLS without a tenant, the cross-tenant
/// insert with a tenant value chosen after `root`'s key, and the probe-row
/// proofs (`probe_rows`) from the root.
pub fn prove(
    model: &Model,
    runtime: &Dsn,
    sampled: Option<Sampled>,
    exemptions: &Reviewed<'_>,
    root: Option<&str>,
    write_probes: bool,
    queries: &mut u32,
) -> Result<(RlsBehaviour, Vec<Probe>)> {
    let Some(Sampled { mut client, mut samples, early, runtime: opened }) = sampled.filter(|_| exemptions.rls.enabled)
    else {
        let why = format!(
            "unproven: the app declares no RLS ({}: {})",
            exemptions.source_text(),
            exemptions.rls.reason.as_deref().unwrap_or("no reason given")
        );
        let empty = Samples { samples: Vec::new(), rls_tables: 0, fresh_tenant: String::new() };
        let mut insert = cross_tenant_insert(model, &empty, None, exemptions, queries);
        insert.observed = why.clone();
        let mut probes = vec![insert];
        probes.extend(probe_rows::not_tried(model, &why, Verdict::NotApplicable));
        // Said as unproven: a declaration in a file is not a proof.
        return Ok((RlsBehaviour { verdict: Verdict::Unproven, message: why }, probes));
    };
    choose_fresh_tenant(&mut client, &mut samples, root, queries)?;
    let plan = match (root, early) {
        (None, _) => Err((
            Verdict::NotApplicable,
            "n/a: no tenant root (declare `[rls] tenant_roots` in the policy file)".to_string(),
        )),
        (Some(_), _) if !write_probes => Err((Verdict::Unproven, String::new())),
        (Some(root), Some((declared, plan))) if declared == root => plan,
        (Some(root), _) => {
            let t = std::time::Instant::now();
            let plan = probe_rows::plan(model, &mut client, root, queries)?;
            crate::trace("probe rows: plan", t);
            plan
        }
    };
    let mut runtime_client = match opened {
        Some(client) => client,
        None => connect_as(runtime, RoleKind::Runtime.dsn_var())?.0,
    };
    // First, while this session has never set the tenant (it reads NULL,
    // which no later transaction of the session can see again): no write.
    let null_writes = write_probes.then(|| {
        let mut outcomes =
            tenantless_in_own_transaction(&mut runtime_client, model, plan.as_ref().ok(), &samples, queries);
        outcomes.review(exemptions, 'a');
        outcomes
    });
    let behaviour = behaviour(model, &samples, &mut runtime_client, exemptions, queries);
    let null_probe = no_tenant_probe(model, null_writes.as_ref());
    if !write_probes {
        let mut insert =
            cross_tenant_insert(model, &Samples { samples: Vec::new(), ..samples }, None, exemptions, queries);
        let why = "not tried (--no-write-probes): the RLS write policies are unproven";
        insert.observed = why.into();
        insert.verdict = Verdict::Unproven;
        let mut probes = vec![insert, null_probe];
        probes.extend(probe_rows::not_tried(model, why, Verdict::Unproven));
        return Ok((behaviour, probes));
    }
    let mut probes = match plan {
        // The copies of existing rows are written with tenant B set, which
        // exists: a row a BEFORE trigger moved into B passes its foreign keys.
        Ok(plan) => probe_rows::prove(model, &plan, &mut runtime_client, exemptions, &samples, queries)?,
        Err((verdict, why)) => {
            let mut probes = vec![cross_tenant_insert(model, &samples, Some(&mut runtime_client), exemptions, queries)];
            probes.extend(probe_rows::not_tried(model, &why, verdict));
            probes
        }
    };
    probes.insert(1, null_probe);
    Ok((behaviour, probes))
}
