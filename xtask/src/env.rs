//! `cargo xtask env`: create or complete `.env.local` and `.env.test`, or
//! exactly the files named with `--env-file`; `--check` validates them, each
//! in the role it plays, and writes nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::flags::EnvCmd;
use anyhow::{bail, Result};
use dbenv::envfile::{sync_env_files, sync_env_files_named, FileAction, SyncReport, MANAGED_FILES};
use dbenv::filecheck::{check_file, password_conflicts, FileRole};
use dbenv::{EnvVars, ProcessEnv};

use crate::context::Context as Ctx;

/// `files`: the `--env-file` paths given (none: `.env.local` and
/// `.env.test` in the project root, both created or checked).
pub fn run(ctx: &Ctx, files: &[PathBuf], flags: &EnvCmd) -> Result<ExitCode> {
    let root = &ctx.root;
    if flags.check {
        return match files {
            [] => check_managed(ctx, root),
            files => check_named(files),
        };
    }
    match files {
        [] => sync(root, flags.dry_run)?,
        files => sync_named(root, files, flags.dry_run)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The directory holding the env files and their examples.
pub fn directory_of(env_file: &Path) -> &Path {
    env_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates or completes the env files in `dir`; prints what it did.
pub fn sync(dir: &Path, dry_run: bool) -> Result<()> {
    print_sync(sync_env_files(dir, dry_run)?, dry_run)
}

/// Creates or completes the named files only (together: values they share
/// come from each other, and disagreements are reported). Each starts from
/// the example beside it, else the project's (`.env.test.example` for a file
/// named `.env.test`, `.env.local.example` for any other).
pub fn sync_named(root: &Path, files: &[PathBuf], dry_run: bool) -> Result<()> {
    // A runtime or migration environment is never completed from a
    // development example: that would add the admin's and other roles'
    // credentials to it.
    let mut development = Vec::new();
    for file in files {
        if file.exists() {
            let role = FileRole::of(&EnvVars::load(file, true, &ProcessEnv::none())?);
            if role != FileRole::Development {
                println!(
                    "{} is a {role}: left as it is (`env` completes development files only); check it with \
                     `cargo xtask env --check --env-file {}`",
                    file.display(),
                    file.display()
                );
                continue;
            }
        }
        development.push(file.clone());
    }
    if development.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(PathBuf, PathBuf)> = development
        .iter()
        .map(|file| {
            let example = match file.file_name().and_then(|n| n.to_str()) {
                Some(".env.test") => ".env.test.example",
                _ => ".env.local.example",
            };
            let beside = directory_of(file).join(example);
            (file.clone(), if beside.exists() { beside } else { root.join(example) })
        })
        .collect();
    print_sync(sync_env_files_named(&pairs, dry_run)?, dry_run)
}

fn print_sync(report: SyncReport, dry_run: bool) -> Result<()> {
    let verb = |done: &'static str, would: &'static str| if dry_run { would } else { done };
    for file in &report.files {
        let name = file.path.display();
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

/// `.env.local` and `.env.test` in the project root, with the process
/// environment over them (what the commands read): each complete, and
/// together one password per role.
fn check_managed(ctx: &Ctx, dir: &Path) -> Result<ExitCode> {
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (file, _) in MANAGED_FILES {
        let path = dir.join(file);
        if !path.exists() {
            problems.push(format!("`{}` does not exist; run `cargo xtask env`", path.display()));
            continue;
        }
        loaded.push((path.clone(), EnvVars::load(&path, true, &ctx.process)?));
    }
    Ok(report_checks(&loaded, problems))
}

/// Exactly the files named, each alone (the process environment is left
/// out: the file is what is checked), in the role it plays.
fn check_named(files: &[PathBuf]) -> Result<ExitCode> {
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for path in files {
        if !path.is_file() {
            problems.push(format!("`{}` does not exist or is not a file", path.display()));
            continue;
        }
        match EnvVars::load(path, true, &ProcessEnv::none()) {
            Ok(vars) => loaded.push((path.clone(), vars)),
            Err(error) => problems.push(format!("{error:#}")),
        }
    }
    Ok(report_checks(&loaded, problems))
}

/// Prints every file's role, errors and warnings; exit 2 on any error.
fn report_checks(files: &[(PathBuf, EnvVars)], mut problems: Vec<String>) -> ExitCode {
    for (path, vars) in files {
        let check = check_file(path, vars);
        println!("{}: {}", path.display(), check.role);
        for warning in &check.warnings {
            eprintln!("warning: `{}`: {warning}", path.display());
        }
        problems.extend(check.errors.iter().map(|error| format!("`{}`: {error}", path.display())));
    }
    problems.extend(password_conflicts(files).iter().map(ToString::to_string));
    if problems.is_empty() {
        let what = if files.len() > 1 { "agree on every role's password, " } else { "" };
        println!("valid: the roles are kept apart, {what}nothing to fix");
        return ExitCode::SUCCESS;
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    ExitCode::from(2)
}
