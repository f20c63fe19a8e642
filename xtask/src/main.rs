//! `cargo xtask`: one `main`, one `Shell`, one `match`. Each command lives in
//! its own module; the logic lives in `crates/*`.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

mod bench;
mod check;
mod containers;
mod context;
mod db_check;
mod db_migrate;
mod db_provision;
mod db_reset;
mod db_rotate;
mod db_setup;
mod db_up;
mod env;
mod flags;
mod fleet;
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
    let ctx = context::Context::new()?;
    let given = |path: &Option<PathBuf>| path.as_ref().map(|p| ctx.invoked_from.join(p));
    match flags.command {
        flags::Command::Env(cmd) => {
            let files: Vec<PathBuf> = cmd.files.iter().map(|path| ctx.invoked_from.join(path)).collect();
            env::run(&ctx, &files, &cmd)
        }
        flags::Command::DbUp(cmd) => db_up::up(&ctx, &ctx.env_file(&cmd.env)),
        flags::Command::DbDown(cmd) => db_up::down(&ctx, &ctx.env_file(&cmd.env), cmd.purge),
        flags::Command::DbProvision(cmd) if cmd.fleet.targets.is_some() => {
            fleet::commands::provision(&ctx, given(&cmd.policy).as_deref(), &cmd)
        }
        flags::Command::DbMigrate(cmd) if cmd.fleet.targets.is_some() => {
            fleet::commands::migrate(&ctx, &ctx.migrations(&cmd.migrations), &cmd)
        }
        flags::Command::DbStatus(cmd) if cmd.fleet.targets.is_some() => {
            fleet::commands::status(&ctx, &ctx.migrations(&cmd.migrations), &cmd)
        }
        flags::Command::DbCheck(cmd) if cmd.fleet.targets.is_some() => {
            fleet::commands::check(&ctx, &ctx.migrations(&cmd.migrations), given(&cmd.policy).as_deref(), &cmd)
        }
        flags::Command::DbProvision(cmd) => {
            let env = ctx.load_env(&ctx.env_file(&cmd.env))?;
            db_provision::run(&ctx, &env, given(&cmd.policy).as_deref(), &cmd)
        }
        flags::Command::DbMigrate(cmd) => {
            db_migrate::run(&ctx, &ctx.env_file(&cmd.env), &ctx.migrations(&cmd.migrations), &cmd)
        }
        flags::Command::DbStatus(cmd) => {
            let env = ctx.load_env(&ctx.env_file(&cmd.env))?;
            db_migrate::status(&ctx, &env, &ctx.migrations(&cmd.migrations), cmd.json)
        }
        flags::Command::DbReset(cmd) => {
            let env = ctx.load_env(&ctx.env_file(&cmd.env))?;
            db_reset::run(&ctx, &env, &ctx.migrations(&cmd.migrations), &cmd)
        }
        flags::Command::DbCheck(cmd) => {
            let env = ctx.load_env(&ctx.env_file(&cmd.env))?;
            db_check::run(&ctx, &env, &ctx.migrations(&cmd.migrations), given(&cmd.policy).as_deref(), &cmd)
        }
        flags::Command::DbRotate(cmd) => db_rotate::run(&ctx, &cmd),
        flags::Command::DbSetup(cmd) => db_setup::run(&ctx, &ctx.env_file(&cmd.env)),
        flags::Command::Bench(cmd) => bench::run(cmd, &ctx),
        flags::Command::Check(cmd) => check::run(cmd, &ctx),
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
