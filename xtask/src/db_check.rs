//! `cargo xtask db-check`: prove the model on a live database.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use audit::primary::PrimaryDsn;
use audit::{CheckConfig, Report};

use crate::context::{Context as Ctx, Env};
use crate::flags::DbCheck;

/// Runs the check and prints it as asked; shared with `db-setup`.
pub fn check(ctx: &Ctx, env: &Env, migrations_dir: &Path, policy: Option<&Path>) -> Result<Report> {
    audit::check(&config(ctx, env, migrations_dir, policy)?)
}

fn config(ctx: &Ctx, env: &Env, migrations_dir: &Path, policy: Option<&Path>) -> Result<CheckConfig> {
    let exemptions = crate::db_provision::policy_file(ctx, policy)?;
    CheckConfig::new(env.vars.checking()?, Some(migrations_dir.to_path_buf()), exemptions)
}

/// `--primary-env FILE` (or a target's `primary_env`): the DSN that reads
/// the primary's catalogs. The file is read alone: the process environment,
/// which names the standby for this run, must not override it.
pub fn primary(path: &Path) -> Result<PrimaryDsn> {
    let shown = path.display();
    let vars = dbenv::EnvVars::load(path, true, &dbenv::ProcessEnv::none())
        .with_context(|| format!("primary env file `{shown}`"))?;
    let env = vars.checking().with_context(|| format!("primary env file `{shown}`"))?;
    let (creds, var) = match env.migrator {
        Some(migrator) => (migrator, dbenv::keys::DATABASE_MIGRATOR_URL),
        None => (env.runtime, dbenv::keys::DATABASE_URL),
    };
    Ok(PrimaryDsn { dsn: creds.dsn, described: format!("{var} of `{shown}`") })
}

pub fn run(ctx: &Ctx, env: &Env, migrations_dir: &Path, policy: Option<&Path>, flags: &DbCheck) -> Result<ExitCode> {
    let mut config = config(ctx, env, migrations_dir, policy)?;
    config.write_probes = !flags.no_write_probes;
    if let Some(path) = &flags.primary_env {
        config.primary = Some(primary(&ctx.invoked_from.join(path))?);
    }
    let report = audit::check(&config)?;
    let invoked_from = &ctx.invoked_from;
    if let Some(path) = &flags.junit {
        write_report(&invoked_from.join(path), &report.to_junit(), "--junit")?;
    }
    let tap_to_stdout = flags.tap.as_deref() == Some(Path::new("-"));
    match &flags.tap {
        Some(path) if !tap_to_stdout => write_report(&invoked_from.join(path), &report.to_tap(), "--tap")?,
        _ => {}
    }
    if tap_to_stdout {
        print!("{}", report.to_tap());
    } else if flags.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else if flags.markdown {
        let markdown = report.to_markdown();
        print!("{markdown}");
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&summary)
                .with_context(|| format!("append to GITHUB_STEP_SUMMARY `{}`", Path::new(&summary).display()))?;
            file.write_all(markdown.as_bytes())?;
        }
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.holds() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Writes a CI report, replacing the file through a rename so a reader
/// never sees half of it.
pub fn write_report(path: &Path, text: &str, flag: &str) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("{flag}: cannot write in `{}`; create the directory first", dir.display()))?;
    temp.write_all(text.as_bytes())?;
    temp.persist(path).with_context(|| format!("{flag}: write `{}`", path.display()))?;
    Ok(())
}
