//! `cargo xtask db-migrate` and `db-status`: Drizzle migrations as the
//! migrator, with the built-in runner or the real drizzle-kit.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use drizzle::{Config, Folder, Migration, State};

use crate::context::{Context, Env};
use crate::flags::{DbMigrate, Engine, RunnerFlags};
use crate::progress::Activity;

/// The runner's configuration from the environment's migration view
/// (`DATABASE_MIGRATOR_URL` and friends) and the project's policy file.
pub fn config(ctx: &Context, env: &Env) -> Result<Config> {
    let mut config = Config::new(env.vars.migration()?);
    // The project's policy file: what `[[private]]` keeps from a runtime role.
    config.policy = crate::db_provision::policy_file(ctx, None)?;
    let runtime: Vec<String> = config.runtime_users.iter().map(|(_, name)| name.clone()).collect();
    if !runtime.is_empty() {
        config.policy.check_private_roles(&runtime)?;
    }
    Ok(config)
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if !(value > 0.0 && value.is_finite()) {
        bail!("{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

/// The runner's flags applied to `config` (shared with `db-reset`).
pub fn apply_flags(config: &mut Config, flags: &RunnerFlags) -> Result<()> {
    config.lock_timeout = seconds("--lock-timeout", flags.lock_timeout)?;
    config.lock_wait = seconds("--lock-wait", flags.lock_wait)?;
    config.allow_changed = flags.allow_changed;
    config.per_migration = flags.transaction_per_migration;
    Ok(())
}

/// `.sql` files the journal does not list never run: said on stderr.
pub fn warn_unlisted(folder: &Folder) {
    for note in folder.unlisted_notes() {
        eprintln!("warning: {note}");
    }
}

/// `cargo xtask db-migrate`: the flags are checked before the env file is read.
pub fn run(ctx: &Context, env_file: &Path, migrations_dir: &Path, flags: &DbMigrate) -> Result<ExitCode> {
    if flags.engine == Engine::DrizzleKit && flags.runner.transaction_per_migration {
        bail!(
            "--transaction-per-migration is the built-in runner's; drizzle-kit runs the batch in one transaction. \
             Leave out --engine drizzle-kit or the flag"
        );
    }
    let env = ctx.load_env(env_file)?;
    let mut config = config(ctx, &env)?;
    apply_flags(&mut config, &flags.runner)?;
    let folder = drizzle::folder::read(migrations_dir)?;
    warn_unlisted(&folder);
    match flags.engine {
        Engine::Builtin => run_builtin(&config, &folder, flags.dry_run)?,
        Engine::DrizzleKit if flags.dry_run => run_builtin(&config, &folder, true)?,
        Engine::DrizzleKit => run_drizzle_kit(ctx, &config, &folder)?,
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

    fn retrying(&mut self, done: usize) {
        self.done = done as u64;
    }

    fn note(&mut self, text: &str) {
        eprintln!("note: {text}");
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
pub fn run_builtin(config: &Config, folder: &Folder, dry_run: bool) -> Result<()> {
    let started = Instant::now();
    let outcome = drizzle::migrate_builtin(config, folder, dry_run, &mut Terminal::default())?;
    let total = folder.migrations.len();
    if outcome.applied.is_empty() {
        for grant in &outcome.granted {
            println!("  granted: {grant}");
        }
        println!(
            "nothing to apply: {total} migration{} in the folder, none pending{} ({} ms)",
            if total == 1 { "" } else { "s" },
            if outcome.granted.is_empty() {
                String::new()
            } else {
                "; the runtime roles were granted what the applied migrations created".to_string()
            },
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
            "applied {} migration{} ({}) as `{}` {} ({:.2} s)",
            outcome.applied.len(),
            if outcome.applied.len() == 1 { "" } else { "s" },
            match outcome.applied.as_slice() {
                [one] => one.clone(),
                [first, .., last] => format!("{first} to {last}"),
                [] => String::new(),
            },
            config.dsn.user.as_deref().unwrap_or("?"),
            transactions(&outcome),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// How the migrations were committed, in words: never "one transaction"
/// for a batch that committed more than once.
fn transactions(outcome: &drizzle::Outcome) -> String {
    let mut said = match outcome.transactions {
        0 => String::new(),
        1 => "in one transaction".to_string(),
        n => format!("in {n} transactions"),
    };
    if !outcome.outside.is_empty() {
        if !said.is_empty() {
            said.push_str(" and ");
        }
        said.push_str(&format!(
            "outside any transaction for {} {} ({}), after a COMMIT written in a migration, as drizzle-kit runs them",
            outcome.outside.len(),
            if outcome.outside.len() == 1 { "migration" } else { "migrations" },
            drizzle::run::summarise(&outcome.outside)
        ));
    }
    if !outcome.committed_for_enum.is_empty() {
        said.push_str(&format!(
            "; committed after {} so that later migrations could use the enum values added there",
            drizzle::run::summarise(&outcome.committed_for_enum)
        ));
    }
    said
}

/// `--engine drizzle-kit`: the real drizzle-kit under this tool's refusals
/// and lock (`drizzle::kit`).
fn run_drizzle_kit(ctx: &Context, config: &Config, folder: &Folder) -> Result<()> {
    let package = ctx.root.join("platform/db");
    let node = drizzle::kit::Node { package: &package, search_path: ctx.search_path.clone() };
    let announce = &mut |pending: &[String]| println!("pending: {}; running drizzle-kit migrate", pending.join(", "));
    let outcome = drizzle::kit::migrate_with_drizzle_kit(config, folder, &node, &mut Terminal::default(), announce)?;
    for grant in &outcome.granted {
        println!("  granted: {grant}");
    }
    if outcome.applied.is_empty() {
        println!(
            "nothing to apply: none of the {} migrations is pending; drizzle-kit was not started",
            folder.migrations.len()
        );
        return Ok(());
    }
    println!("drizzle-kit applied {}", drizzle::run::summarise(&outcome.applied));
    Ok(())
}

/// `cargo xtask db-status`: exit 0, or 2 when something needs attention.
pub fn status(ctx: &Context, env: &Env, migrations_dir: &Path, json: bool) -> Result<ExitCode> {
    let config = config(ctx, env)?;
    let folder = drizzle::folder::read(migrations_dir)?;
    let (status, mut client) = drizzle::session::inspect(&config, &folder)?;
    // The migration guard, as db-migrate would apply it before anything runs.
    let guarded = drizzle::session::guard(&config, &folder, &status, Some(&mut client))?;
    if json {
        let mut value = status.to_json(&config.table.to_string());
        if !guarded.refused.is_empty() {
            value["ok"] = serde_json::Value::Bool(false);
        }
        value["guard"] = serde_json::json!({
            "refused": guarded.refused.iter().map(|f| serde_json::json!({
                "migration": f.tag, "line": f.line, "statement": f.statement, "fingerprint": f.fingerprint,
                "problem": f.to_string(),
            })).collect::<Vec<_>>(),
            "reviewed": guarded.reviewed.iter().map(|f| serde_json::json!({
                "migration": f.tag, "line": f.line, "fingerprint": f.fingerprint,
            })).collect::<Vec<_>>(),
            "notes": guarded.notes,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
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
        for problem in &status.unlisted {
            println!("  ✗ {problem}");
        }
        for finding in &guarded.refused {
            println!("  ✗ {finding}");
        }
        for finding in &guarded.reviewed {
            println!("  ~ `{}` line {}: reviewed in the policy file", finding.tag, finding.line);
        }
        for note in &guarded.notes {
            println!("  ! {note}");
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
    Ok(if status.has_findings() || !guarded.refused.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
