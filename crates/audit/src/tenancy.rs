//! RLS with rows, proven live: without a tenant the runtime role sees no
//! row of a non-empty RLS table that the service role sees (beyond the rows
//! declared public), and with a tenant that owns nothing it cannot insert a
//! copy of any existing row (every tenant table's `WITH CHECK` refuses it).

use anyhow::Result;
use dbenv::{quote_literal, Dsn, RoleKind};
use postgres::Client;
use roles::Model;

use crate::count::QueryCount;
use crate::exemptions::Kind;
use crate::probe_rows;
use crate::probes::connect_as;
use crate::report::{Probe, RlsBehaviour, Verdict};
use crate::reviewed::{exempt_note, Reviewed};
use crate::writes::{
    cross_tenant_insert, explain_read_error, leaking_in, set_tenant, Outcomes, Sample, Samples, TABLES_PER_QUERY,
};

/// Reads the samples as the service role (it bypasses RLS): one query for
/// the tables, one per 200 tables that may hold rows. The tables are those of
/// the app schemas and, in any other schema, those the runtime role may use
/// (a tenant table elsewhere with DML for `app_user` is in scope). The
/// tenant value is chosen later, once the catalog audit named the tenant root.
pub fn sample(model: &Model, service: &mut Client, queries: &QueryCount) -> Result<Samples> {
    queries.add(1);
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
        queries.add(1);
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
    queries: &QueryCount,
) -> Result<()> {
    // The tenant root's key type decides what a tenant value that owns
    // nothing looks like.
    let root = root.and_then(|root| samples.samples.iter().find(|s| s.name == root)).map(|s| s.table.clone());
    let key = match &root {
        Some(root) => {
            queries.add(1);
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
            queries.add(1);
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
    queries: &QueryCount,
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
    queries: &QueryCount,
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
        queries.add(1);
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

/// The tenantless writes (`probe_rows::tenantless_writes`) in a probe
/// transaction of their own, rolled back.
fn tenantless_in_own_transaction(
    runtime: &mut Client,
    model: &Model,
    plan: Option<&probe_rows::Plan>,
    samples: &Samples,
    queries: &QueryCount,
) -> Outcomes {
    queries.add(1);
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
    queries: &QueryCount,
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
    queries: &QueryCount,
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
