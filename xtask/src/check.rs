//! `cargo xtask check`: everything CI runs. Every step runs (a failure does
//! not hide the next one), each is timed, and one summary ends the run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use xshell::{cmd, Shell};

use crate::flags::Check;

pub fn run(_flags: Check, sh: &Shell) -> Result<ExitCode> {
    // The interop tests read platform/db's npm packages; install them once.
    if !sh.path_exists("platform/db/node_modules") && cmd!(sh, "npm --version").quiet().ignore_stdout().run().is_ok() {
        println!("==> npm ci (platform/db)");
        cmd!(sh, "npm ci --prefix platform/db --no-audit --no-fund").run()?;
    }
    let nextest = cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let mut steps: Vec<(&str, xshell::Cmd)> = vec![
        ("format", cmd!(sh, "cargo fmt --all -- --check")),
        ("clippy", cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings")),
    ];
    if nextest {
        steps.push(("tests", cmd!(sh, "cargo nextest run --workspace --locked --no-fail-fast")));
        // nextest does not run doctests.
        steps.push(("doctests", cmd!(sh, "cargo test --workspace --locked --doc")));
    } else {
        steps.push(("tests", cmd!(sh, "cargo test --workspace --locked --no-fail-fast")));
    }

    let mut results: Vec<(&str, bool, Duration)> = Vec::new();
    for (name, command) in steps {
        println!("==> {name}");
        let started = Instant::now();
        let ok = command.run().is_ok();
        results.push((name, ok, started.elapsed()));
    }

    println!("\n==> summary");
    for (name, ok, elapsed) in &results {
        println!("  {} {name:<10} {:>7.1} s", if *ok { "ok  " } else { "FAIL" }, elapsed.as_secs_f64());
    }
    let failed: Vec<&str> = results.iter().filter(|(_, ok, _)| !ok).map(|(name, _, _)| *name).collect();
    if failed.is_empty() {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}
