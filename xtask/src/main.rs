//! `cargo xtask`: one `main`, one `Shell`, one `match`. Each command lives in
//! its own module; the logic lives in `crates/*`.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

mod bench;
mod check;
mod containers;
mod db_check;
mod db_migrate;
mod db_provision;
mod db_reset;
mod db_setup;
mod db_up;
mod env;
mod flags;
mod host;
mod pg_matrix;
mod progress;
mod report;
mod standins;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use xshell::Shell;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    tracing_setup();
    let result = run(flags);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// The one tracing subscriber: the libraries' events (catalog queries and
/// their times, stages, phases) go to stderr, filtered by `RUST_LOG`
/// (`RUST_LOG=roles::query=debug`). `XTASK_TRACE_QUERIES=1` is a shorthand
/// for every query and stage. Nothing is printed otherwise.
fn tracing_setup() {
    use tracing_subscriber::EnvFilter;
    let filter = match (std::env::var("RUST_LOG"), std::env::var_os("XTASK_TRACE_QUERIES")) {
        (Ok(spec), _) => EnvFilter::new(spec),
        (Err(_), Some(_)) => EnvFilter::new("roles=debug,audit=debug,drizzle=debug"),
        (Err(_), None) => return,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_level(false)
        .with_target(false)
        .init();
}

fn run(flags: flags::Xtask) -> anyhow::Result<ExitCode> {
    let sh = Shell::new()?;
    // Paths on the command line are relative to where the user stands;
    // defaults are relative to the project root.
    let invoked_from = std::env::current_dir()?;
    let root = project_root();
    sh.change_dir(&root);
    let path_or = |given: &Option<PathBuf>, default: &str| -> PathBuf {
        match given {
            Some(path) => invoked_from.join(path),
            None => root.join(default),
        }
    };
    let env_file = |flag: &flags::EnvFile| path_or(&flag.path, dbenv::DEFAULT_ENV_FILE);
    let migrations = |flag: &flags::MigrationsDir| path_or(&flag.path, "platform/db/migrations");
    match flags.command {
        flags::Command::Env(cmd) => {
            let files: Vec<PathBuf> = cmd.files.iter().map(|path| invoked_from.join(path)).collect();
            env::run(&root, &files, &cmd)
        }
        flags::Command::DbUp(cmd) => db_up::up(&env_file(&cmd.env)),
        flags::Command::DbDown(cmd) => db_up::down(&env_file(&cmd.env), cmd.purge),
        flags::Command::DbProvision(cmd) => {
            let policy = cmd.policy.as_ref().map(|p| invoked_from.join(p));
            db_provision::run(&env_file(&cmd.env), policy.as_deref(), &cmd)
        }
        flags::Command::DbMigrate(cmd) => db_migrate::run(&env_file(&cmd.env), &migrations(&cmd.migrations), &cmd),
        flags::Command::DbStatus(cmd) => {
            db_migrate::status(&env_file(&cmd.env), &migrations(&cmd.migrations), cmd.json)
        }
        flags::Command::DbReset(cmd) => db_reset::run(&env_file(&cmd.env), &migrations(&cmd.migrations), &cmd),
        flags::Command::DbCheck(cmd) => {
            let policy = cmd.policy.as_ref().map(|p| invoked_from.join(p));
            db_check::run(&env_file(&cmd.env), &migrations(&cmd.migrations), policy.as_deref(), &cmd)
        }
        flags::Command::DbSetup(cmd) => db_setup::run(&env_file(&cmd.env)),
        flags::Command::Bench(cmd) => bench::run(cmd, &sh),
        flags::Command::Check(cmd) => check::run(cmd, &sh),
    }
}

/// The workspace root: where this crate was built from, or the current
/// directory for a binary copied elsewhere (the container image).
pub fn project_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    match built_in {
        Some(root) if root.join("Cargo.toml").exists() => root,
        _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}
