//! `cargo xtask env`: create or complete `.env.local` and `.env.test`;
//! `--check` validates them and writes nothing.

use std::path::Path;
use std::process::ExitCode;

use crate::flags::EnvCmd;
use anyhow::{bail, Result};
use dbenv::envfile::{sync_env_files, FileAction, MANAGED_FILES};
use dbenv::invariants::{self, Context, Severity};
use dbenv::{check_sibling_env_files, EnvVars, ProcessEnv, Settings};

pub fn run(env_file: &Path, flags: &EnvCmd) -> Result<ExitCode> {
    let dir = directory_of(env_file);
    if flags.check {
        return check(dir);
    }
    sync(dir, flags.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

/// The directory holding the env files and their examples.
pub fn directory_of(env_file: &Path) -> &Path {
    env_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates or completes the env files in `dir`; prints what it did.
pub fn sync(dir: &Path, dry_run: bool) -> Result<()> {
    let report = sync_env_files(dir, dry_run)?;
    let verb = |done: &'static str, would: &'static str| if dry_run { would } else { done };
    for file in &report.files {
        let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        match &file.action {
            FileAction::Created => println!("{} {name} from its example (mode 0600)", verb("created", "would create")),
            FileAction::Added(keys) => println!("{} to {name}: {}", verb("added", "would add"), keys.join(", ")),
            FileAction::Unchanged => println!("{name} has every key; nothing changed"),
        }
        if file.tightened_mode {
            println!("{name} was readable by others; now 0600");
        }
    }
    if !report.conflicts.is_empty() {
        bail!("the env files disagree (nothing was overwritten):\n  - {}", report.conflicts.join("\n  - "));
    }
    Ok(())
}

/// Validates both env files: each gives complete settings, and together they
/// give every role one password.
fn check(dir: &Path) -> Result<ExitCode> {
    let mut problems = Vec::new();
    for (file, _) in MANAGED_FILES {
        let path = dir.join(file);
        if !path.exists() {
            problems.push(format!("`{file}` does not exist; run `cargo xtask env`"));
            continue;
        }
        let vars = EnvVars::load(&path, true, ProcessEnv::Include)?;
        if let Err(error) = Settings::from_env(&vars) {
            problems.push(format!("`{file}`: {error:#}"));
        }
        for violation in invariants::check(&vars, Context::EnvFile) {
            match violation.severity {
                Severity::Error => problems.push(format!("`{file}` [{}]: {}", violation.rule, violation.message)),
                Severity::Warning => eprintln!("warning: `{file}` [{}]: {}", violation.rule, violation.message),
            }
        }
        // The comparison is symmetric: once, from the first file, is enough.
        if *file == MANAGED_FILES[0].0 {
            if let Err(error) = check_sibling_env_files(&path, &vars, ProcessEnv::Include) {
                problems.push(format!("{error:#}"));
            }
        }
    }
    if problems.is_empty() {
        println!("env files are valid, keep the roles apart, and agree on every role's password");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(ExitCode::from(2))
}
