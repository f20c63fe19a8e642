//! `cargo xtask db-migrate` and `db-status`: Drizzle migrations as the
//! migrator, with the built-in runner or the real drizzle-kit.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dbenv::{EnvVars, ProcessEnv};
use drizzle::{Config, Folder, Migration, State};

use crate::flags::{DbMigrate, Engine};
use crate::progress::Activity;

/// Reads the migration settings: `DATABASE_MIGRATOR_URL` and friends.
pub fn load_config(env_file: &Path) -> Result<Config> {
    let explicit = env_file.file_name().and_then(|n| n.to_str()) != Some(dbenv::DEFAULT_ENV_FILE);
    let vars = EnvVars::load(env_file, explicit, ProcessEnv::Include)?;
    Config::from_env(&vars)
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if !(value > 0.0 && value.is_finite()) {
        bail!("{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

pub fn run(env_file: &Path, migrations_dir: &Path, flags: &DbMigrate) -> Result<ExitCode> {
    let mut config = load_config(env_file)?;
    config.lock_timeout = seconds("--lock-timeout", flags.lock_timeout)?;
    config.lock_wait = seconds("--lock-wait", flags.lock_wait)?;
    config.allow_changed = flags.allow_changed;
    config.per_migration = flags.transaction_per_migration;
    let folder = drizzle::folder::read(migrations_dir)?;
    match flags.engine {
        Engine::Builtin => migrate(&config, &folder, flags.dry_run)?,
        Engine::DrizzleKit if flags.dry_run => migrate(&config, &folder, true)?,
        Engine::DrizzleKit => drizzle_kit(&config, &folder)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress: a live line on a terminal, a few lines in a log (the summary
/// is printed by the caller).
#[derive(Default)]
struct Terminal {
    lock: Option<Activity>,
    applying: Option<Activity>,
    done: u64,
}

impl drizzle::Progress for Terminal {
    fn waiting_for_lock(&mut self, holder: Option<i32>, _waited: Duration) {
        match &mut self.lock {
            Some(activity) => activity.update(0, ""),
            None => {
                let holder = holder.map(|pid| format!(" (server pid {pid})")).unwrap_or_default();
                self.lock = Some(Activity::start(format!("waiting for another migration run{holder} to finish"), None));
            }
        }
    }

    fn applying(&mut self, migration: &Migration, _index: usize, total: usize) {
        if let Some(lock) = self.lock.take() {
            let seconds = lock.elapsed().as_secs_f64();
            lock.finish(Some(&format!("the other migration run finished after {seconds:.1} s")));
        }
        let activity = self.applying.get_or_insert_with(|| Activity::start("applying migrations", Some(total as u64)));
        activity.update(self.done, &migration.tag);
    }

    fn applied(&mut self, migration: &Migration, _elapsed: Duration) {
        self.done += 1;
        if let Some(activity) = &mut self.applying {
            activity.update(self.done, &migration.tag);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        for activity in [self.lock.take(), self.applying.take()].into_iter().flatten() {
            activity.finish(None);
        }
    }
}

/// The built-in engine; shared with `db-setup` and `db-reset`.
pub fn migrate(config: &Config, folder: &Folder, dry_run: bool) -> Result<()> {
    let started = Instant::now();
    let outcome = drizzle::migrate(config, folder, dry_run, &mut Terminal::default())?;
    let total = folder.migrations.len();
    if outcome.applied.is_empty() {
        println!(
            "nothing to apply: {total} migration{} in the folder, none pending ({} ms)",
            if total == 1 { "" } else { "s" },
            started.elapsed().as_millis()
        );
    } else if dry_run {
        println!("dry run: {} pending, nothing applied:", outcome.applied.len());
        for tag in &outcome.applied {
            let note = folder.migrations.iter().find(|m| m.tag == *tag).map(Migration::transaction_note);
            println!("  {tag}{}", note.unwrap_or_default());
        }
    } else {
        for grant in &outcome.granted {
            println!("  granted: {grant}");
        }
        println!(
            "applied {} migration{} as `{}` in {} ({:.2} s)",
            outcome.applied.len(),
            if outcome.applied.len() == 1 { "" } else { "s" },
            config.dsn.user.as_deref().unwrap_or("?"),
            if config.per_migration { "one transaction each" } else { "one transaction" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `--engine drizzle-kit`: this tool's refusals and lock, then the real
/// drizzle-kit with only the migrator DSN in its environment. The child dies
/// with this process (parent-death signal) and is killed if the connection
/// holding the lock breaks, so no second run can start beside it.
fn drizzle_kit(config: &Config, folder: &Folder) -> Result<()> {
    let root = crate::project_root();
    let package = root.join("platform/db");
    let bin = package.join("node_modules/drizzle-kit/bin.cjs");
    if !bin.exists() {
        bail!("drizzle-kit is not installed in `{}`: run `npm ci --prefix platform/db`", package.display());
    }
    let mut prepared = drizzle::prepare(config, folder, false, &mut Terminal::default())?;
    if prepared.pending.is_empty() {
        println!(
            "nothing to apply: none of the {} migrations is pending; drizzle-kit was not started",
            folder.migrations.len()
        );
        return Ok(());
    }
    println!("pending: {}; running drizzle-kit migrate", prepared.pending.join(", "));

    // lock_timeout reaches drizzle-kit's session through the DSN's `options`,
    // and so does the dead-client check that ends its transaction if it dies.
    let mut dsn = config.dsn.clone();
    let mut options: Vec<String> = dsn.param("options").map(|o| vec![o.to_string()]).unwrap_or_default();
    options.push(format!("-c lock_timeout={}", config.lock_timeout.as_millis()));
    if drizzle::runner::server_version(&mut prepared.client)? >= 140000 {
        options.push("-c client_connection_check_interval=1000".to_string());
    }
    dsn.set_param("options", &options.join(" "));
    let mut command = Command::new("node");
    command
        .arg(&bin)
        .arg("migrate")
        .current_dir(&package)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_MIGRATOR_URL", dsn.expose_url())
        .env("DRIZZLE_MIGRATIONS_DIR", &folder.dir)
        .env("DRIZZLE_MIGRATIONS_SCHEMA", &config.table.schema)
        .env("DRIZZLE_MIGRATIONS_TABLE", &config.table.name);
    // SAFETY: prctl is async-signal-safe and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().context("start `node` (is Node.js installed?)")?;
    let mut last_ping = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
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
    };

    let table = drizzle::bookkeeping::read(&mut prepared.client, &config.table)?;
    let after = drizzle::status::status(folder, &table);
    let still_pending: Vec<&str> = after
        .entries
        .iter()
        .filter(|e| e.state == State::Pending && prepared.pending.contains(&e.migration.tag))
        .map(|e| e.migration.tag.as_str())
        .collect();
    // What drizzle-kit created in app schemas the runtime roles must reach,
    // granted while the lock is still held.
    let granted = if status.success() && still_pending.is_empty() {
        prepared.client.batch_execute("BEGIN")?;
        let granted = drizzle::grants::converge(&mut prepared.client, config)?;
        prepared.client.batch_execute("COMMIT")?;
        granted
    } else {
        Vec::new()
    };
    let _ = drizzle::runner::release_lock(&mut prepared.client, config);
    if !status.success() {
        bail!(
            "drizzle-kit migrate failed ({status}) while {} {} pending; still pending now: {}. drizzle-kit 0.31.10+ \
             exits without printing the error: run `cargo xtask db-migrate` (the built-in engine) to see the failing \
             statement and its SQLSTATE, or look in the server log",
            prepared.pending.join(", "),
            if prepared.pending.len() == 1 { "was" } else { "were" },
            if still_pending.is_empty() { "none".to_string() } else { still_pending.join(", ") }
        );
    }
    if !still_pending.is_empty() {
        bail!("drizzle-kit exited successfully but left {} pending", still_pending.join(", "));
    }
    for grant in &granted {
        println!("  granted: {grant}");
    }
    println!("drizzle-kit applied {}", prepared.pending.join(", "));
    Ok(())
}

/// `cargo xtask db-status`: exit 0, or 2 when something needs attention.
pub fn status(env_file: &Path, migrations_dir: &Path, json: bool) -> Result<ExitCode> {
    let config = load_config(env_file)?;
    let folder = drizzle::folder::read(migrations_dir)?;
    let status = drizzle::runner::inspect(&config, &folder)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status.to_json(&config.table.to_string()))?);
    } else {
        println!("migrations in {} against `{}`:", folder.dir.display(), config.table);
        for entry in &status.entries {
            let mark = match entry.state {
                State::Applied => "✓",
                State::Pending => "·",
                _ => "✗",
            };
            let note = if entry.state == State::Pending { entry.migration.transaction_note() } else { String::new() };
            println!("  {mark} {:<28} {}{note}", entry.state.label(), entry.migration.tag);
        }
        for problem in status.refusals(false) {
            println!("  ✗ {problem}");
        }
        println!(
            "{} applied, {} pending, {} changed, {} out of order, {} unknown rows",
            status.count(|s| *s == State::Applied),
            status.count(|s| *s == State::Pending),
            status.count(|s| matches!(s, State::Changed { .. })),
            status.count(|s| *s == State::OutOfOrder),
            status.unknown_rows.len() + status.null_rows.len()
        );
    }
    Ok(if status.has_findings() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
