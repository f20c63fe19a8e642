//! The real drizzle-kit as the migration engine (`db-migrate --engine
//! drizzle-kit`): this crate's refusals and lock first, then `node …/bin.cjs
//! migrate` with only the migrator DSN in its environment. The child dies
//! with this process (parent-death signal) and is killed if the connection
//! holding the lock breaks, so no second run can start beside it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dbenv::{keys, Dsn};

use crate::config::{Config, Progress};
use crate::run::{converge_grants, summarise};
use crate::session::{self, release_lock, Prepared};
use crate::status::State;
use crate::{bookkeeping, Folder, Table};

/// `node_modules/drizzle-kit/bin.cjs` under `package` (the folder with the
/// Drizzle config, `platform/db`), when it is installed.
pub fn bin(package: &Path) -> Result<PathBuf> {
    let bin = package.join("node_modules/drizzle-kit/bin.cjs");
    if !bin.exists() {
        bail!("drizzle-kit is not installed in `{}`: run `npm ci --prefix platform/db`", package.display());
    }
    Ok(bin)
}

/// Where drizzle-kit runs: the npm package it is installed in, and the
/// `PATH` that finds `node` (the caller's, passed down).
#[derive(Clone, Debug)]
pub struct Node<'a> {
    pub package: &'a Path,
    pub search_path: OsString,
}

/// The one drizzle-kit command line: `node bin.cjs migrate` in the
/// package, an environment of `PATH`, the DSN and where the migrations and
/// the bookkeeping table are, nothing else (no other secret reaches it).
pub fn command(node: &Node<'_>, dsn: &Dsn, migrations: &Path, table: &Table) -> Result<Command> {
    let mut command = Command::new("node");
    command
        .arg(bin(node.package)?)
        .arg("migrate")
        .current_dir(node.package)
        .env_clear()
        .env("PATH", &node.search_path)
        .env(keys::DATABASE_MIGRATOR_URL, dsn.expose_url())
        .env("DRIZZLE_MIGRATIONS_DIR", migrations)
        .env(keys::DRIZZLE_MIGRATIONS_SCHEMA, &table.schema)
        .env(keys::DRIZZLE_MIGRATIONS_TABLE, &table.name);
    Ok(command)
}

/// What a drizzle-kit run did.
#[derive(Debug, Default)]
pub struct KitOutcome {
    /// The migrations that were pending and are applied now; empty when
    /// nothing was pending and drizzle-kit was not started.
    pub applied: Vec<String>,
    /// Grants to the runtime roles on what the migrations created.
    pub granted: Vec<String>,
}

/// Runs drizzle-kit on what is pending, under this crate's lock; `started`
/// is told the pending migrations before the child starts.
pub fn migrate_with_drizzle_kit(
    config: &Config,
    folder: &Folder,
    node: &Node<'_>,
    progress: &mut dyn Progress,
    started: &mut dyn FnMut(&[String]),
) -> Result<KitOutcome> {
    bin(node.package)?;
    let mut prepared = session::prepare(config, folder, false, progress)?;
    if prepared.pending.is_empty() {
        // drizzle-kit is not started; what another run applied (plain
        // `drizzle-kit migrate`) still gets its grants.
        let granted = converge_grants(&mut prepared.client, config);
        release_lock(&mut prepared.client, config)?;
        return Ok(KitOutcome { applied: Vec::new(), granted: granted? });
    }
    started(&prepared.pending);
    let dsn = session_dsn(config, &mut prepared)?;
    let mut command = command(node, &dsn, &folder.dir, &config.table)?;
    // SAFETY: prctl is async-signal-safe and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().context("start `node` (is Node.js installed?)")?;
    let status = supervise(child, &mut prepared)?;
    finish(config, folder, &mut prepared, status)
}

/// `lock_timeout` reaches drizzle-kit's session through the DSN's
/// `options`, and so does the dead-client check that ends its transaction
/// if it dies.
fn session_dsn(config: &Config, prepared: &mut Prepared) -> Result<Dsn> {
    let mut dsn = config.dsn.clone();
    let mut options: Vec<String> = dsn.param("options").map(|o| vec![o.to_string()]).unwrap_or_default();
    options.push(format!("-c lock_timeout={}", config.lock_timeout.as_millis()));
    if dbenv::ServerVersion::read(&mut prepared.client)?.has_connection_check_interval() {
        options.push("-c client_connection_check_interval=1000".to_string());
    }
    dsn.set_param("options", &options.join(" "));
    Ok(dsn)
}

/// Waits for the child, checking every second that the session holding
/// the lock still lives; kills the child when it does not.
fn supervise(mut child: std::process::Child, prepared: &mut Prepared) -> Result<ExitStatus> {
    let mut last_ping = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if last_ping.elapsed() >= Duration::from_secs(1) {
            last_ping = Instant::now();
            if prepared.client.batch_execute("SELECT 1").is_err() {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the connection holding the migration lock broke, so drizzle-kit was stopped (another run could \
                     otherwise start beside it); its open transaction is rolled back. Run again"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads what drizzle-kit did, grants what it created to the runtime roles
/// while the lock is still held, and releases the lock.
fn finish(config: &Config, folder: &Folder, prepared: &mut Prepared, status: ExitStatus) -> Result<KitOutcome> {
    let table = bookkeeping::read(&mut prepared.client, &config.table)?;
    let after = crate::status::status(folder, &table);
    let still_pending: Vec<&str> = after
        .entries
        .iter()
        .filter(|e| e.state == State::Pending && prepared.pending.contains(&e.migration.tag))
        .map(|e| e.migration.tag.as_str())
        .collect();
    // Also after a failure: what drizzle-kit committed gets its grants.
    let granted = converge_grants(&mut prepared.client, config);
    let _ = release_lock(&mut prepared.client, config);
    if !status.success() {
        let still: Vec<String> = still_pending.iter().map(|t| t.to_string()).collect();
        bail!(
            "drizzle-kit migrate failed ({status}) while {} {} pending; still pending now: {}{}. drizzle-kit \
             0.31.10+ exits without printing the error: run `cargo xtask db-migrate` (the built-in engine) to see \
             the failing statement and its SQLSTATE, or look in the server log",
            summarise(&prepared.pending),
            if prepared.pending.len() == 1 { "was" } else { "were" },
            summarise(&still),
            match &granted {
                Ok(sent) if !sent.is_empty() =>
                    format!("; the runtime roles were granted their access to what stays ({} statements)", sent.len()),
                Ok(_) => String::new(),
                Err(e) => format!("; granting the runtime roles their access failed too ({e:#})"),
            }
        );
    }
    let granted = granted?;
    if !still_pending.is_empty() {
        bail!("drizzle-kit exited successfully but left {} pending", still_pending.join(", "));
    }
    Ok(KitOutcome { applied: prepared.pending.clone(), granted })
}
