//! `cargo xtask check`: everything CI runs. Every step runs (a failure does
//! not hide the next one), each is timed, and one summary ends the run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pgcluster::{ClusterOptions, PgBin, TestCluster};
use xshell::{cmd, Shell};

use crate::context::Context as Ctx;
use crate::flags::Check;
use crate::{containers, db_check, db_migrate, db_provision, pg_matrix};

/// One step of the check: runs, and says whether it passed.
type Step<'a> = Box<dyn FnOnce() -> bool + 'a>;

pub fn run(flags: Check, ctx: &Ctx) -> Result<ExitCode> {
    let sh = &ctx.sh;
    if flags.containers_only {
        println!("==> containers");
        let started = Instant::now();
        let ok = report(containers::run(ctx));
        println!("  {} containers {:>7.1} s", if ok { "ok  " } else { "FAIL" }, started.elapsed().as_secs_f64());
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    // The interop tests read platform/db's npm packages; install them once.
    if !sh.path_exists("platform/db/node_modules") && cmd!(sh, "npm --version").quiet().ignore_stdout().run().is_ok() {
        println!("==> npm ci (platform/db)");
        cmd!(sh, "npm ci --prefix platform/db --no-audit --no-fund").run()?;
    }
    let nextest = cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let mut steps: Vec<(&str, Step)> = vec![
        ("format", Box::new(|| cmd!(sh, "cargo fmt --all -- --check").run().is_ok())),
        (
            "clippy",
            Box::new(|| cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run().is_ok()),
        ),
    ];
    if nextest {
        steps.push((
            "tests",
            Box::new(|| cmd!(sh, "cargo nextest run --workspace --locked --no-fail-fast").run().is_ok()),
        ));
        // nextest does not run doctests.
        steps.push(("doctests", Box::new(|| cmd!(sh, "cargo test --workspace --locked --doc").run().is_ok())));
    } else {
        steps.push(("tests", Box::new(|| cmd!(sh, "cargo test --workspace --locked --no-fail-fast").run().is_ok())));
    }
    // The app's own start-up check (TypeScript) against the cases the Rust rules are tested with.
    steps.push((
        "app env check",
        Box::new(|| {
            let _dir = sh.push_dir("platform/db");
            cmd!(sh, "node --import tsx --test --test-reporter=dot env/invariants.test.ts").run().is_ok()
        }),
    ));
    steps.push(("end-to-end", Box::new(|| report(end_to_end(ctx, None)))));

    let mut results: Vec<(String, bool, Duration)> = Vec::new();
    for (name, step) in steps {
        println!("==> {name}");
        let started = Instant::now();
        let ok = step();
        results.push((name.to_string(), ok, started.elapsed()));
    }
    if flags.pg_matrix {
        matrix(ctx, nextest, &mut results);
    }
    if flags.containers {
        println!("==> containers");
        let started = Instant::now();
        let ok = report(containers::run(ctx));
        results.push(("containers".into(), ok, started.elapsed()));
    }

    println!("\n==> summary");
    for (name, ok, elapsed) in &results {
        println!("  {} {name:<16} {:>7.1} s", if *ok { "ok  " } else { "FAIL" }, elapsed.as_secs_f64());
    }
    let failed: Vec<&str> = results.iter().filter(|(_, ok, _)| !ok).map(|(name, _, _)| name.as_str()).collect();
    if failed.is_empty() {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

fn report(result: Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            eprintln!("error: {error:#}");
            false
        }
    }
}

/// The database tests and the end-to-end path on every other major.
fn matrix(ctx: &Ctx, nextest: bool, results: &mut Vec<(String, bool, Duration)>) {
    let sh = &ctx.sh;
    println!("==> PostgreSQL binaries for the matrix");
    let started = Instant::now();
    let binaries = match pg_matrix::binaries(sh, &ctx.local) {
        Ok(binaries) => binaries,
        Err(error) => {
            eprintln!("error: {error:#}");
            results.push(("pg binaries".into(), false, started.elapsed()));
            return;
        }
    };
    results.push(("pg binaries".into(), true, started.elapsed()));
    let default = PgBin::find(&ctx.local).map(|b| b.major).ok();
    for bin in binaries {
        let major = bin.major;
        if Some(major) != default {
            println!("==> tests on PostgreSQL {major} ({})", bin.version);
            let started = Instant::now();
            let dir = bin.dir.display().to_string();
            let packages = matrix_packages(major);
            let tests = if nextest {
                cmd!(sh, "cargo nextest run {packages...} --locked --no-fail-fast")
            } else {
                cmd!(sh, "cargo test {packages...} --locked --no-fail-fast")
            };
            let ok = tests.env("PG_BIN", &dir).run().is_ok();
            results.push((format!("tests pg{major}"), ok, started.elapsed()));
        }
        println!("==> end-to-end on PostgreSQL {major}");
        let started = Instant::now();
        let ok = report(end_to_end(ctx, Some(bin)));
        results.push((format!("end-to-end pg{major}"), ok, started.elapsed()));
    }
}

/// The crates whose tests run on another major: every crate with database
/// tests. Provisioning and the proof read catalogs that change from major
/// to major (memberships in 16, MAINTAIN in 17, …), the guard reads
/// `pg_proc` and `pg_operator`, the environment's tests speak TLS. The
/// default major, 15, runs everything. The throwaway clusters live in
/// memory (`pgcluster`), which keeps this within CI's time.
fn matrix_packages(_major: u32) -> Vec<&'static str> {
    vec!["-p", "roles", "-p", "audit", "-p", "dbenv", "-p", "drizzle"]
}

/// The whole path on a throwaway cluster, as a user runs it: an env derived
/// from `.env.test.example` for the cluster's port, `db-provision`,
/// `db-migrate`, `db-check`, then the task's own `psql` denial check.
fn end_to_end(ctx: &Ctx, bin: Option<PgBin>) -> Result<()> {
    let sh = &ctx.sh;
    let cluster = TestCluster::start_with(ClusterOptions { bin, local: Some(ctx.local.clone()), ..Default::default() })
        .context("start a throwaway cluster")?;
    let dir = tempfile::tempdir()?;
    let example = std::fs::read_to_string(sh.current_dir().join(".env.test.example"))?;
    let port = cluster.port().to_string();
    let env = example
        .replace("55432", &port)
        .replace("POSTGRES_ROOT_PASSWORD=postgres", &format!("POSTGRES_ROOT_PASSWORD='{}'", cluster.password()));
    let env_file = dir.path().join(".env.test");
    std::fs::write(&env_file, env)?;
    let migrations = ctx.project_migrations();

    println!("  cluster on port {port}; env {}", env_file.display());
    let env = ctx.load_env(&env_file)?;
    let settings = env.settings(ctx)?;
    db_provision::provision(&settings, &db_provision::default_options(ctx)?)?;
    db_migrate::run_builtin(&db_migrate::config(ctx, &env)?, &drizzle::folder::read(&migrations)?, false)?;
    let report = db_check::check(ctx, &env, &migrations, None)?;
    print!("{}", report.to_text());
    if !report.holds() {
        bail!("db-check: the model does not hold on a freshly provisioned and migrated database");
    }
    psql_denial(sh, &port, &settings.db_name, settings.role(dbenv::RoleKind::Runtime))?;
    // A second provisioning run finds nothing to do.
    db_provision::provision(&settings, &db_provision::default_options(ctx)?)?;
    Ok(())
}

/// The task's acceptance check, with `psql` (skipped only if it is missing
/// and CI does not insist).
fn psql_denial(sh: &Shell, port: &str, db: &str, runtime: &dbenv::RoleCreds) -> Result<()> {
    if cmd!(sh, "psql --version").quiet().ignore_stdout().run().is_err() {
        if std::env::var_os("XTASK_REQUIRE_TOOLS").is_some() {
            bail!("psql is not installed");
        }
        println!("  SKIPPED the psql check: psql is not installed");
        return Ok(());
    }
    let user = &runtime.name;
    let output = cmd!(sh, "psql -h localhost -p {port} -U {user} -d {db} -c 'CREATE TABLE _test_ddl_check (id int);'")
        .env("PGPASSWORD", runtime.password.expose())
        .ignore_status()
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("ERROR:  permission denied for schema public") {
        bail!("psql as {user}: expected `ERROR:  permission denied for schema public`, got: {stderr}");
    }
    println!("  psql as {user}: {}", stderr.lines().next().unwrap_or_default());
    Ok(())
}
