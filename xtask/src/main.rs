//! `cargo xtask`: one `main`, one `Shell`, one `match`. Each command lives in
//! its own module; the logic lives in `crates/*`.

mod check;
mod db_provision;
mod db_setup;
mod db_up;
mod env;
mod flags;
mod report;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use xshell::Shell;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    let result = run(flags);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(flags: flags::Xtask) -> anyhow::Result<ExitCode> {
    let sh = Shell::new()?;
    // Paths on the command line are relative to where the user stands;
    // everything else is relative to the project root.
    let invoked_from = std::env::current_dir()?;
    sh.change_dir(project_root());
    let absolute = |path: &Path| -> PathBuf { invoked_from.join(path) };
    match flags.command {
        flags::Command::Env(cmd) => env::run(&absolute(&cmd.env.path), &cmd),
        flags::Command::DbUp(cmd) => db_up::up(&absolute(&cmd.env.path)),
        flags::Command::DbDown(cmd) => db_up::down(&absolute(&cmd.env.path), cmd.purge),
        flags::Command::DbProvision(cmd) => db_provision::run(&absolute(&cmd.env.path), &cmd),
        flags::Command::DbSetup(cmd) => db_setup::run(&absolute(&cmd.env.path)),
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
