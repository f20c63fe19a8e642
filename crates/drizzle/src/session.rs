//! The migrator's session: connect, check who we are, take the lock, read
//! the bookkeeping and refuse what drizzle-kit would get silently wrong.
//! What both engines start from.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use dbenv::{keys, RoleKind};
use postgres::types::Type;
use postgres::Client;
use roles::model::Attribute;

use crate::bookkeeping::{self, TableState};
use crate::config::{Config, Progress};
use crate::folder::Folder;
use crate::guard::{Catalog, Pending};
use crate::refusal::{Lack, NotTheMigrator, Refusal, Refused};
use crate::status::{status, Status};

/// Opens the migrator's session: keepalives on (the lock lives as long as
/// the connection), `lock_timeout` set.
pub fn connect(config: &Config, what: &str) -> Result<Client> {
    let mut pg = dbenv::pg_config(&config.dsn);
    pg.keepalives(true).keepalives_idle(Duration::from_secs(15));
    pg.application_name(config.dsn.param("application_name").unwrap_or("cargo xtask db-migrate"));
    // One server session for the whole run, learnt before anything is set.
    let mut client = dbenv::pooling::connect_own_backend(&config.dsn, keys::DATABASE_MIGRATOR_URL, pg, what)?;
    // On PostgreSQL 14+, if this process dies mid-statement, the server
    // notices within a second and rolls back, instead of holding locks until
    // it next writes. One round trip for both.
    client.batch_execute(&format!(
        "{}; SELECT pg_catalog.set_config('client_connection_check_interval', '1000', false) WHERE {}",
        roles::sql::lock_timeout(config.lock_timeout, false),
        dbenv::ServerVersion::sql_at_least(14)
    ))?;
    Ok(client)
}

/// A DSN naming a pooler must reach the database `DB_HOST`/`DB_PORT` name
/// ([`connect`] already refused a transaction-mode pooler).
fn check_route(client: &mut Client, config: &Config) -> Result<()> {
    let var = keys::DATABASE_MIGRATOR_URL;
    if let Some(direct) = &config.direct {
        let mut there = dbenv::connect(direct, "DATABASE_MIGRATOR_URL at DB_HOST/DB_PORT")?;
        let expected = dbenv::pooling::Identity::read(&mut there)?;
        let described = format!("the migrator's session at DB_HOST/DB_PORT ({})", direct.address());
        dbenv::pooling::require_same_database(client, var, &expected, &described)?;
    }
    Ok(())
}

/// Checks positively that the session is the migrator's: it owns the
/// database and the app schemas, has BYPASSRLS, is no superuser, and is
/// neither the runtime nor the service role. Also the privilege preflight.
pub fn verify_identity(client: &mut Client, config: &Config) -> Result<()> {
    let attributes: Vec<String> = Attribute::ALL.iter().map(|a| format!("r.{}", a.column())).collect();
    let row = client.query_typed_one(
        &format!(
            "SELECT current_user::text, d.datdba = r.oid, has_database_privilege(current_database(), 'CREATE'), \
                    ARRAY(SELECT s FROM unnest($1::text[]) s JOIN pg_namespace n ON n.nspname = s \
                          WHERE n.nspowner <> r.oid), \
                    (SELECT n.nspowner = r.oid FROM pg_namespace n WHERE n.nspname = $2), {} \
             FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()",
            attributes.join(", ")
        ),
        &[(&config.app_schemas, Type::TEXT_ARRAY), (&config.table.schema, Type::TEXT)],
    )?;
    let user: String = row.get(0);
    let (owns_db, can_create): (bool, bool) = (row.get(1), row.get(2));
    let foreign_schemas: Vec<String> = row.get(3);
    let owns_bookkeeping: Option<bool> = row.get(4);
    // The model's migrator (`roles::Attribute`): no superuser, and every
    // attribute it must have. Powers it should not have beyond that are
    // db-check's and db-provision's business, not a reason to stop a deploy.
    let attributes: Vec<(Attribute, bool)> =
        Attribute::ALL.iter().enumerate().map(|(i, a)| (*a, row.get::<_, bool>(5 + i))).collect();
    let superuser = attributes.iter().any(|(a, held)| *a == Attribute::Superuser && *held);
    let lacking = attributes.iter().filter(|(a, held)| a.wanted(RoleKind::Migrator) && !held).map(|(a, _)| *a);
    if let Some((var, _)) = config.runtime_users.iter().find(|(_, name)| *name == user) {
        return Err(NotTheMigrator::RuntimeRole { user, var }.into());
    }
    if superuser {
        return Err(NotTheMigrator::Superuser { user }.into());
    }
    let mut lacks = Vec::new();
    if !owns_db {
        lacks.push(Lack::DatabaseOwner { database: config.db_name().to_string() });
    }
    if !foreign_schemas.is_empty() {
        lacks.push(Lack::SchemaOwner { schemas: foreign_schemas });
    }
    lacks.extend(lacking.map(Lack::Attribute));
    let schema = config.table.schema.clone();
    match owns_bookkeeping {
        Some(false) => lacks.push(Lack::BookkeepingOwner { schema }),
        None if !can_create => lacks.push(Lack::BookkeepingCreate { schema }),
        _ => {}
    }
    if !lacks.is_empty() {
        return Err(NotTheMigrator::Lacks { user, lacks }.into());
    }
    Ok(())
}

/// Takes the run's advisory lock, polling while another run holds it, for
/// at most `config.lock_wait`.
pub fn acquire_lock(client: &mut Client, config: &Config, progress: &mut dyn Progress) -> Result<()> {
    let key = config.table.lock_key();
    let start = Instant::now();
    let mut reported = Duration::ZERO;
    loop {
        if client.query_typed_one("SELECT pg_try_advisory_lock($1)", &[(&key, Type::INT8)])?.get::<_, bool>(0) {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= config.lock_wait {
            bail!(
                "another migration run held the lock on `{}` for more than {} s; it may be stuck (look for \
                 application_name `cargo xtask db-migrate` in pg_stat_activity) — nothing was applied",
                config.table,
                config.lock_wait.as_secs()
            );
        }
        if waited >= reported {
            let holder: Option<i32> = client
                .query_opt(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                       AND classid::int8 = ($1::int8 >> 32) & 4294967295 AND objid::int8 = $1::int8 & 4294967295",
                    &[&key],
                )?
                .map(|row| row.get(0));
            progress.waiting_for_lock(holder, waited);
            reported = waited + Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn release_lock(client: &mut Client, config: &Config) -> Result<()> {
    client.query_typed_one("SELECT pg_advisory_unlock($1)", &[(&config.table.lock_key(), Type::INT8)])?;
    Ok(())
}

/// A session that is the migrator's, holds the lock, and found nothing to
/// refuse: what both engines start from.
pub struct Prepared {
    pub client: Client,
    pub table: TableState,
    pub pending: Vec<String>,
}

/// Connects, checks identity, takes the lock (unless `read_only`), reads
/// the bookkeeping and refuses what drizzle-kit would get silently wrong.
pub fn prepare(config: &Config, folder: &Folder, read_only: bool, progress: &mut dyn Progress) -> Result<Prepared> {
    let mut client = connect(config, "db-migrate")?;
    check_route(&mut client, config)?;
    verify_identity(&mut client, config)?;
    if !read_only {
        acquire_lock(&mut client, config, progress)?;
    }
    let table = bookkeeping::read(&mut client, &config.table)?;
    if table.is_drizzle_v1() {
        bail!(
            "`{}` has drizzle-kit 1.0's columns (`name`); this tool writes drizzle-kit 0.31's rows and never a row \
             without `name` into that table. Migrate this database with drizzle-kit 1.0",
            config.table
        );
    }
    let status = status(folder, &table);
    let mut refusals = status.refusals(config.allow_changed);
    let guarded = guard(config, folder, &status, Some(&mut client))?;
    refusals.extend(guarded.refused.into_iter().map(Refusal::Guarded));
    if !refusals.is_empty() {
        return Err(crate::refusal::Refused { refusals }.into());
    }
    for note in guarded.notes {
        progress.note(&note);
    }
    let pending: Vec<String> = status.pending().iter().map(|m| m.tag.clone()).collect();
    check_extensions(&mut client, folder, &pending)?;
    Ok(Prepared { client, table, pending })
}

/// Scans every pending migration of `folder` (both engines and `db-status`
/// call it before anything runs). A review entry for an applied migration
/// counts as used; one whose tag is not in the folder, or that matches no
/// statement of its pending migration, is named in `notes`. With `client`
/// (the run's session) and something pending, the guard reads what it
/// needs of the catalog (`guard::Catalog`); without, it judges by the text.
pub fn guard(
    config: &Config,
    folder: &Folder,
    status: &crate::Status,
    mut client: Option<&mut Client>,
) -> Result<Pending> {
    let runtime = config.runtime_users.iter().map(|(_, name)| name.clone());
    let mut runtime: Vec<String> = runtime.collect();
    runtime.sort();
    runtime.dedup();
    // The bookkeeping schema is protected unless it is also an app schema.
    let schema = &config.table.schema;
    let bookkeeping = (!config.app_schemas.contains(schema))
        .then(|| crate::guard::Relation { schema: Some(schema.clone()), name: config.table.name.clone() });
    let names = crate::guard::Names { migrator: config.migrator.clone(), runtime, bookkeeping };
    // The catalog is read only when something is pending: nothing to scan otherwise.
    let catalog = match client.as_deref_mut() {
        Some(client) if !status.pending().is_empty() => Catalog::read(client)?,
        _ => Catalog::default(),
    };
    let mut scanner = crate::guard::Guard::new(names, catalog);
    let reviews = &config.policy.reviews;
    let mut outcome = Pending::default();
    let pending = status.pending();
    // A file that is not UTF-8 has its own refusal.
    for migration in pending.iter().filter(|m| !m.lossy) {
        let found = scanner.scan(&migration.tag, &migration.text, reviews);
        outcome.refused.extend(found.refused);
        outcome.reviewed.extend(found.reviewed);
    }
    let shadowed = scanner.finish(client, reviews)?;
    outcome.refused.extend(shadowed.refused);
    outcome.reviewed.extend(shadowed.reviewed);
    // In the order of the migrations and their lines.
    let order = |tag: &str| pending.iter().position(|m| m.tag == tag);
    outcome.refused.sort_by_key(|f| (order(&f.tag), f.line));
    for review in reviews {
        let in_folder = folder.migrations.iter().any(|m| m.tag == review.tag);
        let is_pending = pending.iter().any(|m| m.tag == review.tag);
        let used = outcome.reviewed.iter().any(|f| crate::guard::matches(review, f));
        let what = review.fingerprint.as_ref().map_or_else(
            || format!("line {}", review.line.unwrap_or_default()),
            |fingerprint| format!("fingerprint {fingerprint}"),
        );
        if !in_folder {
            outcome.notes.push(format!(
                "the policy file's [[migration]] entry for `{}` ({what}) names no migration of the folder; remove it",
                review.tag
            ));
        } else if is_pending && !used {
            outcome.notes.push(format!(
                "the policy file's [[migration]] entry for `{}` ({what}) matches no statement the guard refuses; \
                 remove it (or correct its fingerprint or line)",
                review.tag
            ));
        }
    }
    Ok(outcome)
}

/// Extensions the pending migrations create that the migrator may not
/// (not trusted, so only an admin may create them: pgvector, postgis, …)
/// and that are not installed yet: refused before anything runs, naming
/// `APP_DB_EXTENSIONS`, which makes `db-provision` create them as the admin.
fn check_extensions(client: &mut Client, folder: &Folder, pending: &[String]) -> Result<()> {
    let mut wanted: Vec<(String, usize, String)> = Vec::new();
    for migration in folder.migrations.iter().filter(|m| pending.contains(&m.tag)) {
        for (line, name) in crate::transactions::created_extensions(&migration.text) {
            wanted.push((migration.tag.clone(), line, name));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = wanted.iter().map(|(_, _, name)| name.clone()).collect();
    let rows = client.query_typed(
        "SELECT n, x.extname IS NOT NULL, e.name IS NOT NULL, coalesce(v.trusted, false) FROM unnest($1::text[]) n \
         LEFT JOIN pg_extension x ON x.extname = n LEFT JOIN pg_available_extensions e ON e.name = n \
         LEFT JOIN pg_available_extension_versions v ON v.name = n AND v.version = e.default_version",
        &[(&names, Type::TEXT_ARRAY)],
    )?;
    let mut problems = Vec::new();
    for (tag, line, name) in &wanted {
        let Some(row) = rows.iter().find(|r| r.get::<_, String>(0) == *name) else { continue };
        let (installed, available, trusted): (bool, bool, bool) = (row.get(1), row.get(2), row.get(3));
        if installed || (available && trusted) {
            continue;
        }
        let (tag, line, name) = (tag.clone(), *line, name.clone());
        problems.push(if available {
            Refusal::UntrustedExtension { tag, line, name }
        } else {
            Refusal::MissingExtension { tag, line, name }
        });
    }
    if !problems.is_empty() {
        return Err(Refused { refusals: problems }.into());
    }
    Ok(())
}

/// The status of the database against `folder`, and the read-only session
/// it was read in (for the guard).
pub fn inspect<'a>(config: &Config, folder: &'a Folder) -> Result<(Status<'a>, Client)> {
    let mut client = connect(config, "db-status")?;
    check_route(&mut client, config)?;
    client.batch_execute("SET default_transaction_read_only = on")?;
    let table = bookkeeping::read(&mut client, &config.table)?;
    Ok((status(folder, &table), client))
}
