//! The fleet row: provisioning and checking 100 new databases on two
//! clusters, once as 100 pairs of invocations in a loop (the shell loop a
//! team writes today), once as one `--targets` run of each command at the
//! default parallelism. Each run drops its databases again, so both sides
//! meet clusters of the same size.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pgcluster::{ClusterOptions, TestCluster};
use postgres::{Client, NoTls};

use super::cpu::Cpu;
use super::{median, timed, Lab, Row};

const DATABASES: usize = 100;

/// The env file of `db` on `cluster`, as the bench writes the first
/// cluster's, in `dir`.
fn env_file(bench: &Lab, cluster: &TestCluster, dir: &Path, db: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(bench.env_file(db)?)?
        .replace(&bench.cluster.port().to_string(), &cluster.port().to_string())
        .replace(bench.cluster.password(), cluster.password());
    let path = dir.join(format!("{db}.env"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The env files of `prefix_0` to `prefix_99`, half on each cluster.
fn env_files(bench: &Lab, clusters: [&TestCluster; 2], dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    (0..DATABASES).map(|i| env_file(bench, clusters[i % 2], dir, &format!("{prefix}_{i}"))).collect()
}

fn drop_databases(clusters: [&TestCluster; 2], prefix: &str) -> Result<()> {
    for cluster in clusters {
        let mut admin = Client::connect(&cluster.admin_url("postgres"), NoTls)?;
        let names: Vec<String> = admin
            .query("SELECT datname::text FROM pg_database WHERE datname LIKE $1", &[&format!("{prefix}\\_%")])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for name in names {
            admin.batch_execute(&format!("DROP DATABASE \"{name}\""))?;
        }
    }
    Ok(())
}

/// This checkout's binary with `args`, seeing only the files it is given.
fn ours(bench: &Lab, args: &[&std::ffi::OsStr]) -> Result<Duration> {
    let mut command = std::process::Command::new(&bench.binaries[0]);
    command.args(args).current_dir(&bench.root);
    for key in super::CONTRACT {
        command.env_remove(key);
    }
    let (elapsed, output) = timed(&mut command)?;
    if !output.status.success() {
        bail!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

fn run_ok(bench: &Lab, command: &str, env: &Path) -> Result<Duration> {
    ours(bench, &[command.as_ref(), "--env-file".as_ref(), env.as_os_str()])
}

/// The CPU time used so far by both clusters' servers and our children.
fn cpu(clusters: [&TestCluster; 2]) -> Result<Cpu> {
    Cpu::now(&[&clusters[0].datadir(), &clusters[1].datadir()])
}

/// 100 databases: provision then check each, one pair of invocations at a time.
fn the_loop(bench: &Lab, clusters: [&TestCluster; 2], dir: &Path, run: usize) -> Result<(Duration, Cpu)> {
    let prefix = format!("loop{run}");
    let files = env_files(bench, clusters, dir, &prefix)?;
    let (started, before) = (Instant::now(), cpu(clusters)?);
    for file in &files {
        run_ok(bench, "db-provision", file)?;
        run_ok(bench, "db-check", file)?;
    }
    let took = (started.elapsed(), cpu(clusters)?.since(before));
    drop_databases(clusters, &prefix)?;
    Ok(took)
}

/// The same 100 databases as one targets file: `db-provision --targets`,
/// then `db-check --targets`.
fn the_fleet(bench: &Lab, clusters: [&TestCluster; 2], dir: &Path, run: usize) -> Result<(Duration, Cpu)> {
    let prefix = format!("fleet{run}");
    let files = env_files(bench, clusters, dir, &prefix)?;
    let mut targets = String::new();
    for (i, file) in files.iter().enumerate() {
        let _ = write!(targets, "[[target]]\nname = \"{prefix}-{i}\"\nenv_file = \"{}\"\n\n", file.display());
    }
    let targets_file = dir.join(format!("{prefix}.toml"));
    std::fs::write(&targets_file, targets)?;
    let (started, before) = (Instant::now(), cpu(clusters)?);
    for command in ["db-provision", "db-check"] {
        ours(bench, &[command.as_ref(), "--targets".as_ref(), targets_file.as_os_str()])?;
    }
    let took = (started.elapsed(), cpu(clusters)?.since(before));
    drop_databases(clusters, &prefix)?;
    Ok(took)
}

pub fn fleet_row(bench: &Lab, runs: usize) -> Result<Row> {
    println!("==> 100 databases on two clusters: a loop of invocations against one --targets run");
    let options = ClusterOptions { durable: true, local: Some(bench.ctx.local.clone()), ..Default::default() };
    let second = TestCluster::start_with(options)?;
    let clusters = [bench.cluster, &second];
    let dir = tempfile::tempdir()?;
    // The roles exist on both clusters before either side runs.
    run_ok(bench, "db-provision", &env_file(bench, &second, dir.path(), "bench")?)?;
    let (mut looped, mut fleet) = (Vec::new(), Vec::new());
    for run in 0..runs.clamp(1, 3) {
        looped.push(the_loop(bench, clusters, dir.path(), run)?);
        fleet.push(the_fleet(bench, clusters, dir.path(), run)?);
    }
    let (loop_cpu, fleet_cpu) = (median_cpu(&looped), median_cpu(&fleet));
    let (looped, fleet) =
        (median(looped.into_iter().map(|r| r.0).collect()), median(fleet.into_iter().map(|r| r.0).collect()));
    let ratio = fleet.as_secs_f64() / looped.as_secs_f64();
    Ok(Row::new(
        "db-provision + db-check, 100 new databases on two clusters, --targets (default parallelism)",
        "the same as 100 pairs of invocations in a loop",
        Some(looped),
        (fleet, None),
    )
    .target(format!("≤ 0.4× the loop: {ratio:.2}×"), ratio <= 0.4)
    .note(cpu_note(loop_cpu, fleet_cpu, looped)))
}

/// The median CPU time of the runs (by their total).
fn median_cpu(runs: &[(Duration, Cpu)]) -> Cpu {
    let mut cpus: Vec<Cpu> = runs.iter().map(|r| r.1).collect();
    cpus.sort_by_key(|c| c.total());
    cpus[cpus.len() / 2]
}

/// Where the time went, per database, and the least time the fleet's CPU
/// work allows on this machine's cores.
fn cpu_note(looped: Cpu, fleet: Cpu, loop_time: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let per_db = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0 / DATABASES as f64);
    let floor = fleet.total().as_secs_f64() / cores as f64;
    format!(
        "CPU per database (medians): the loop {} (server {}, our processes {}), the fleet {} (server {}, ours {}); \
         on {cores} cores the fleet's CPU work alone takes at least {floor:.2} s, {:.2}× the loop",
        per_db(looped.total()),
        per_db(looped.server),
        per_db(looped.client),
        per_db(fleet.total()),
        per_db(fleet.server),
        per_db(fleet.client),
        floor / loop_time.as_secs_f64()
    )
}
