//! Writing and reading as a tenant, one statement at a time: what a write
//! of another tenant's row, or of a row without a tenant, shows about the
//! policies, and which tables leak rows a session should not see. Shared by
//! the tenancy proof on sampled rows ([`crate::tenancy`]) and on probe rows
//! ([`crate::probe_rows`]).

use std::collections::BTreeMap;

use anyhow::Result;
use dbenv::quote_literal;
use postgres::error::SqlState;
use postgres::Client;
use roles::Model;

use crate::count::QueryCount;
use crate::report::{Probe, Verdict};
use crate::reviewed::{exempt_note, Reviewed};

/// How many tables one sampling query reads.
pub(crate) const TABLES_PER_QUERY: usize = 200;

/// An RLS table of the app schemas as the service role sees it.
pub(crate) struct Sample {
    pub(crate) table: String,
    /// `schema.table`, as the exemptions file names it.
    pub(crate) name: String,
    /// Columns an INSERT may name (not generated).
    pub(crate) columns: String,
    /// One row, as JSON, when the table has rows.
    pub(crate) row: Option<String>,
}

/// What the service role reads for both proofs: every RLS table of the app
/// schemas with one of its rows, and a tenant value that owns nothing.
pub struct Samples {
    /// The RLS tables of the app schemas that may hold rows.
    pub(crate) samples: Vec<Sample>,
    /// How many RLS tables the app schemas have.
    pub(crate) rls_tables: usize,
    pub(crate) fresh_tenant: String,
}

/// The tables of `parts` whose hidden rows the session sees, a bounded
/// number of tables per query, and the tables whose read failed with a
/// data error (read one by one once their chunk failed). Runs inside a
/// transaction.
#[allow(clippy::type_complexity)]
pub(crate) fn leaking_in(
    runtime: &mut Client,
    parts: &[(String, String)],
    queries: &QueryCount,
) -> Result<(Vec<String>, Vec<(String, String)>), postgres::Error> {
    let (mut leaking, mut errors) = (Vec::new(), Vec::new());
    let data_error = |e: &postgres::Error| e.code().is_some_and(|c| c.code().starts_with("22"));
    for chunk in parts.chunks(TABLES_PER_QUERY) {
        queries.add(2);
        runtime.batch_execute("SAVEPOINT xtask_read")?;
        let sql = chunk.iter().map(|(_, sql)| sql.as_str()).collect::<Vec<_>>().join(" UNION ALL ");
        let rows = match runtime.query(&sql, &[]) {
            Ok(rows) => rows,
            Err(error) if data_error(&error) => {
                runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_read")?;
                let mut rows = Vec::new();
                for (table, sql) in chunk {
                    queries.add(2);
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
pub(crate) fn explain_read_error(role: &str, error: &postgres::Error) -> String {
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
    queries: &QueryCount,
) -> Probe {
    let with_rows = samples.samples.iter().any(|s| s.row.is_some());
    let Some(runtime) = runtime.filter(|_| with_rows) else {
        let mut probe = insert_probe(model, &Outcomes::default(), "a tenant that owns nothing");
        probe.observed = "n/a (no RLS table has rows)".into();
        probe.verdict = Verdict::NotApplicable;
        return probe;
    };
    queries.add(1);
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
    queries: &QueryCount,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for sample in samples.samples.iter().filter(|s| s.row.is_some()) {
        // A table whose triggers or rules may act outside the transaction
        // is not touched.
        if let Some(outside) = known.get(&sample.name).and_then(|k| k.outside.as_deref()) {
            outcomes.unproven.push(format!("{} (not touched: {outside} may act outside the transaction)", sample.name));
            continue;
        }
        queries.add(3);
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
