//! `db-check --primary-env`: on a hot standby, whether the catalogs the
//! audit read are the primary's. A standby audits the primary's catalogs as
//! replayed; when it lags (or replays from another primary, or is paused),
//! "holds" would describe a past state. So the check digests the catalogs
//! the audit reads, on both servers, and compares them:
//!
//! 1. on the primary: it is no standby, it holds the same database (OID and
//!    name), it is the cluster the standby replays (system identifier), and
//!    where its WAL ends;
//! 2. on the standby, on a session that reached the server the routes and
//!    the audit reached: wait (at most [`REPLAY_WAIT`]) until it has
//!    replayed that far, then digest its catalogs before the audit and
//!    again after it (a change between the two means the audit read a
//!    moving state);
//! 3. after the audit, digest the primary's catalogs.
//!
//! It holds only when the three digests are equal: what the audit read is
//! what the primary has now. A difference left after the wait is a
//! difference beyond the replay lag, and fails, naming the catalogs. The
//! digests are SHA-256 over each catalog's rows as text (a table's with
//! their `xmin`, so a change undone in between still shows), read in one
//! repeatable-read, read-only transaction with the settings that shape the
//! text (search path, time zone, date style, float digits, identifier
//! quoting) pinned locally. Columns the server updates in place (VACUUM's
//! `relpages`, `reltuples`, `relfrozenxid`, …) are left out: they change
//! without a transaction and say nothing about privileges. Server settings
//! (`postgresql.conf`) are no catalog and are not replicated; they are not
//! compared.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dbenv::pooling::Identity;
use dbenv::Dsn;
use postgres::{Client, SimpleQueryMessage};

use crate::checks::CheckId;
use crate::report::CheckSummary;

/// How long the standby may take to replay the primary's WAL as it was
/// when the check began, before the catalogs are compared anyway.
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// Every catalog the audit reads, as the rows that are compared: a
/// table's rows with their `xmin` (equal on a physical standby; any change,
/// even one undone later, writes a new row version), a view's (no `xmin`)
/// as they read. `*` compares whole rows; the others leave out what the
/// server updates in place or does not replicate.
const CATALOGS: &[Catalog] = &[
    Catalog::view(
        "pg_roles",
        "oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, \
         rolconnlimit, rolvaliduntil, rolconfig",
    ),
    Catalog::view("pg_user_mappings", "*"),
    Catalog::table("pg_database", "oid, datname, datdba, encoding, datistemplate, datallowconn, datconnlimit, datacl"),
    Catalog::table("pg_tablespace", "oid, spcname, spcowner, spcacl, spcoptions"),
    Catalog::table(
        "pg_class",
        "oid, relname, relnamespace, reltype, reloftype, relowner, relam, reltablespace, relkind, relpersistence, \
         relisshared, relnatts, relchecks, relrowsecurity, relforcerowsecurity, relispartition, relreplident, relacl, \
         reloptions, relpartbound",
    ),
    Catalog::table("pg_auth_members", "*"),
    Catalog::table("pg_db_role_setting", "*"),
    Catalog::table("pg_shdepend", "*"),
    Catalog::table("pg_shdescription", "*"),
    Catalog::table("pg_namespace", "*"),
    Catalog::table("pg_attribute", "*"),
    Catalog::table("pg_attrdef", "*"),
    Catalog::table("pg_constraint", "*"),
    Catalog::table("pg_index", "*"),
    Catalog::table("pg_inherits", "*"),
    Catalog::table("pg_policy", "*"),
    Catalog::table("pg_trigger", "*"),
    Catalog::table("pg_event_trigger", "*"),
    Catalog::table("pg_rewrite", "*"),
    Catalog::table("pg_proc", "*"),
    Catalog::table("pg_aggregate", "*"),
    Catalog::table("pg_language", "*"),
    Catalog::table("pg_type", "*"),
    Catalog::table("pg_range", "*"),
    Catalog::table("pg_operator", "*"),
    Catalog::table("pg_opclass", "*"),
    Catalog::table("pg_opfamily", "*"),
    Catalog::table("pg_collation", "*"),
    Catalog::table("pg_conversion", "*"),
    Catalog::table("pg_ts_config", "*"),
    Catalog::table("pg_ts_dict", "*"),
    Catalog::table("pg_statistic_ext", "*"),
    Catalog::table("pg_extension", "*"),
    Catalog::table("pg_foreign_data_wrapper", "*"),
    Catalog::table("pg_foreign_server", "*"),
    Catalog::table("pg_foreign_table", "*"),
    Catalog::table("pg_default_acl", "*"),
    Catalog::table("pg_init_privs", "*"),
    Catalog::table("pg_largeobject_metadata", "*"),
    Catalog::table("pg_depend", "*"),
    Catalog::table("pg_description", "*"),
];

/// Catalogs that exist from a major on.
const SINCE: &[(u32, Catalog)] = &[(150_000, Catalog::table("pg_parameter_acl", "*"))];

/// One catalog and the columns of it that are compared.
#[derive(Clone, Copy)]
struct Catalog {
    name: &'static str,
    columns: &'static str,
    view: bool,
}

impl Catalog {
    const fn table(name: &'static str, columns: &'static str) -> Catalog {
        Catalog { name, columns, view: false }
    }

    const fn view(name: &'static str, columns: &'static str) -> Catalog {
        Catalog { name, columns, view: true }
    }

    /// The rows compared, as a query.
    fn rows(self) -> String {
        let (name, columns) = (self.name, self.columns);
        let columns = if columns == "*" {
            "c.*".to_string()
        } else {
            columns.split(", ").map(|c| format!("c.{}", c.trim())).collect::<Vec<_>>().join(", ")
        };
        if self.view {
            format!("SELECT {columns} FROM pg_catalog.{name} c")
        } else {
            format!("SELECT c.xmin, {columns} FROM pg_catalog.{name} c")
        }
    }
}

/// What the text of a catalog row depends on, pinned for the transaction
/// only (the session may be a pooler's).
const PINNED: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                      SET LOCAL search_path = pg_catalog; SET LOCAL TimeZone = 'UTC'; \
                      SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; \
                      SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; \
                      SET LOCAL quote_all_identifiers = off";

/// One catalog's rows and their SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    rows: u64,
    sha256: String,
}

/// The digest of one server's catalogs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Digest(BTreeMap<String, Part>);

fn digest_sql(server_version_num: u32) -> String {
    let since = SINCE.iter().filter(|(from, _)| server_version_num >= *from).map(|(_, catalog)| *catalog);
    CATALOGS
        .iter()
        .copied()
        .chain(since)
        .map(|catalog| {
            format!(
                "SELECT '{}', pg_catalog.count(*), pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(\
                 COALESCE(pg_catalog.string_agg(x::pg_catalog.text, E'\\n' ORDER BY x::pg_catalog.text COLLATE \
                 pg_catalog.\"C\"), ''), 'UTF8')), 'hex') FROM ({}) x",
                catalog.name,
                catalog.rows()
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The rows of one simple query.
fn rows(client: &mut Client, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let mut found = Vec::new();
    for message in client.simple_query(sql)? {
        if let SimpleQueryMessage::Row(row) = message {
            found.push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
        }
    }
    Ok(found)
}

/// The catalogs' digest, in a transaction of its own.
fn digest(client: &mut Client) -> Result<Digest> {
    client.batch_execute(PINNED)?;
    let version = dbenv::pooling::simple_row(client, "SELECT pg_catalog.current_setting('server_version_num')")?;
    let version: u32 = version[0].as_deref().unwrap_or_default().parse().context("server_version_num")?;
    let found = rows(client, &digest_sql(version));
    client.batch_execute("COMMIT")?;
    let mut parts = BTreeMap::new();
    for row in found? {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        parts.insert(text(0), Part { rows: text(1).parse().unwrap_or_default(), sha256: text(2) });
    }
    Ok(Digest(parts))
}

/// An LSN (`16/B374D848`) as a number.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

/// The primary, read through `DATABASE_MIGRATOR_URL` (or `DATABASE_URL`)
/// of the primary's env file.
#[derive(Clone, Debug)]
pub struct PrimaryDsn {
    pub dsn: Dsn,
    /// Where the DSN comes from, for errors: `DATABASE_URL of primary.env`.
    pub described: String,
}

/// The comparison under way: the sessions and the digest before the audit.
pub struct Comparison {
    primary: Client,
    standby: Client,
    described: String,
    before: Digest,
    /// The primary's WAL end when the check began, and whether the standby
    /// replayed that far within [`REPLAY_WAIT`].
    primary_lsn: String,
    caught_up: bool,
}

/// Begins the comparison when `--primary-env` asks for it: only on a
/// standby (`standby`), else the check stops.
pub fn start(
    primary: Option<&PrimaryDsn>,
    standby: bool,
    dsn: &Dsn,
    var: &str,
    at: &Identity,
) -> Result<Option<Comparison>> {
    match primary {
        None => Ok(None),
        Some(_) if !standby => bail!(
            "--primary-env compares a hot standby's catalogs with its primary's, but {var} ({}) reaches a primary \
             (pg_is_in_recovery() is false): run db-check there without --primary-env (or the target's primary_env)",
            dsn.address()
        ),
        Some(primary) => begin(primary, dsn, var, at).map(Some),
    }
}

/// Steps 1 and 2: the primary's identity and WAL end, the standby's wait
/// and its digest before the audit. `standby` is the catalog DSN of the
/// check, `var` its variable, `at` the database the check reaches.
fn begin(primary: &PrimaryDsn, standby: &Dsn, var: &str, at: &Identity) -> Result<Comparison> {
    let described = primary.described.clone();
    let mut p = dbenv::connect_unpinned(&primary.dsn, &described, dbenv::pg_config(&primary.dsn))
        .with_context(|| format!("--primary-env: connect to the primary through {described}"))?;
    let recovery = dbenv::pooling::simple_row(&mut p, "SELECT pg_catalog.pg_is_in_recovery()")?;
    if recovery[0].as_deref() == Some("t") {
        bail!(
            "--primary-env: {described} ({}) reaches a standby too (pg_is_in_recovery() is true): name the primary's \
             env file, whose DSN reaches the server the standby replays from",
            primary.dsn.address()
        );
    }
    let there = Identity::read(&mut p)?;
    if (there.database_oid, &there.database) != (at.database_oid, &at.database) {
        bail!(
            "--primary-env: {described} reaches database `{}` (OID {}), but the standby's is `{}` (OID {}): a standby \
             made by pg_basebackup has its primary's databases, OIDs included. Name the env file of the primary this \
             standby replays from",
            there.database,
            there.database_oid,
            at.database,
            at.database_oid
        );
    }
    let mut s = dbenv::connect_unpinned(standby, var, dbenv::pg_config(standby))?;
    // The digests must describe the server the audit reads (a DSN may name
    // several hosts, or a balancer) and a standby of this very primary.
    let here = Identity::read(&mut s)?;
    if here != *at {
        bail!(
            "--primary-env: a second session through {var} reached {here}, not {at}: the DSN leads to more than one \
             server (several hosts, a load balancer), so what the audit read cannot be compared. Point {var} at one \
             standby"
        );
    }
    let system = "SELECT system_identifier::pg_catalog.text FROM pg_catalog.pg_control_system()";
    let (ours, theirs) = (dbenv::pooling::simple_row(&mut s, system)?, dbenv::pooling::simple_row(&mut p, system)?);
    if ours != theirs {
        bail!(
            "--primary-env: {described} reaches a cluster with system identifier {}, but the standby's is {}: it \
             is not the primary this standby replays from (another cluster with the same databases, or a former \
             primary after a failover). Name the env file of the current primary",
            theirs[0].as_deref().unwrap_or("?"),
            ours[0].as_deref().unwrap_or("?")
        );
    }
    let lsn = dbenv::pooling::simple_row(&mut p, "SELECT pg_catalog.pg_current_wal_lsn()::pg_catalog.text")?;
    let primary_lsn = lsn[0].clone().unwrap_or_default();
    let target = parse_lsn(&primary_lsn).with_context(|| format!("BUG: an LSN `{primary_lsn}`"))?;
    let started = Instant::now();
    let caught_up = loop {
        let replayed =
            dbenv::pooling::simple_row(&mut s, "SELECT pg_catalog.pg_last_wal_replay_lsn()::pg_catalog.text")?;
        if replayed[0].as_deref().and_then(parse_lsn).is_some_and(|at| at >= target) {
            break true;
        }
        if started.elapsed() >= REPLAY_WAIT {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let before = digest(&mut s).context("digest the standby's catalogs")?;
    Ok(Comparison { primary: p, standby: s, described, before, primary_lsn, caught_up })
}

impl Comparison {
    /// Step 3, after the audit: the check's result.
    pub fn finish(mut self) -> Result<(CheckSummary, Option<String>)> {
        let after = digest(&mut self.standby).context("digest the standby's catalogs after the audit")?;
        let primary = digest(&mut self.primary).context("digest the primary's catalogs")?;
        let replay = dbenv::pooling::simple_row(
            &mut self.standby,
            "SELECT pg_catalog.pg_last_wal_replay_lsn()::pg_catalog.text, \
                    pg_catalog.pg_last_xact_replay_timestamp()::pg_catalog.text",
        )?;
        let replayed = replay[0].clone().unwrap_or_else(|| "nothing".into());
        let mut check = CheckSummary::new(CheckId::PrimaryCatalogs);
        check.checked = primary.0.len();
        let lag = if self.caught_up {
            format!(
                "the standby had replayed the primary's WAL end at the start ({}); it is at {replayed}",
                self.primary_lsn
            )
        } else {
            format!(
                "the standby had not replayed the primary's WAL end at the start ({}) after {} s: it is at {replayed}, \
                 last replayed transaction {}",
                self.primary_lsn,
                REPLAY_WAIT.as_secs(),
                replay[1].as_deref().unwrap_or("none")
            )
        };
        for (name, part) in &primary.0 {
            let (was, is) = (self.before.0.get(name), after.0.get(name));
            if was != is {
                check.fail(
                    name.clone(),
                    "changed on the standby while the check ran: the audit read a moving state. Run db-check \
                     again once the primary's change has replayed",
                );
            } else if is != Some(part) {
                let rows = |p: Option<&Part>| p.map_or("no".to_string(), |p| p.rows.to_string());
                check.fail(
                    name.clone(),
                    format!(
                        "differs from the primary's ({} rows on the standby as audited, {} on the primary) beyond the \
                         replay lag: {lag}. The audit describes the standby, not the primary: run db-check against \
                         the primary, or once the standby has replayed",
                        rows(is),
                        rows(Some(part))
                    ),
                );
            }
        }
        let holds = check.findings.is_empty();
        let rows: u64 = primary.0.values().map(|p| p.rows).sum();
        let note = holds.then(|| {
            format!(
                "--primary-env: the standby's catalogs as audited are the primary's now ({} catalogs, {rows} rows \
                 compared through {}; {lag})",
                primary.0.len(),
                self.described
            )
        });
        Ok((check, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_compare_as_numbers() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        assert!(parse_lsn("0/3000060").unwrap() > parse_lsn("0/300005F").unwrap());
        assert_eq!(parse_lsn("garbage"), None);
    }

    #[test]
    fn the_digest_names_every_catalog_once_and_the_newer_ones_by_major() {
        let old = digest_sql(130_000);
        let new = digest_sql(180_000);
        assert!(!old.contains("pg_parameter_acl") && new.contains("pg_parameter_acl"));
        for catalog in CATALOGS {
            let name = catalog.name;
            assert_eq!(new.matches(&format!("SELECT '{name}'")).count(), 1, "{name}");
            // A table's rows carry their row version; a view has none.
            assert_eq!(catalog.rows().contains("c.xmin"), !catalog.view, "{name}");
        }
    }
}
