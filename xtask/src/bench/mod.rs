//! `cargo xtask bench`: every performance target of the spec (§7), measured
//! side by side with its anchor in one run, on one throwaway cluster with
//! PostgreSQL's default settings. The release binary is timed directly
//! (`cargo` adds 70-100 ms to every `cargo xtask` call), as drizzle-kit is
//! timed through `node …/bin.cjs`, not `npx`. Medians of several runs.

mod cpu;
mod fixtures;
mod fleet;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dbenv::{EnvVars, ProcessEnv, RoleKind, Settings};
use pgcluster::{ClusterOptions, InitOptions, OsUser, PgBin, TestCluster};
use postgres::{Client, NoTls};
use xshell::cmd;

use crate::context::Context as Ctx;
use crate::flags::{self, Measure};

struct Row {
    measure: String,
    anchor: String,
    anchor_time: Option<Duration>,
    ours: Duration,
    /// The same measure with `--baseline`'s binary, in the same run.
    baseline: Option<Duration>,
    /// How the target reads and whether it is met.
    target: String,
    met: bool,
    note: String,
}

impl Row {
    /// A measure, its anchor, and our time (with the baseline's).
    fn new(measure: &str, anchor: &str, anchor_time: Option<Duration>, (ours, baseline): Times) -> Row {
        let (measure, anchor) = (measure.to_string(), anchor.to_string());
        Row { measure, anchor, anchor_time, ours, baseline, target: String::new(), met: false, note: String::new() }
    }

    /// How the target reads, and whether it is met.
    fn target(self, target: String, met: bool) -> Row {
        Row { target, met, ..self }
    }

    fn note(self, note: String) -> Row {
        Row { note, ..self }
    }
}

/// Our median, and the baseline's when there is one.
type Times = (Duration, Option<Duration>);

fn text(path: &Path) -> String {
    path.display().to_string()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn secs(d: Duration) -> String {
    if d < Duration::from_millis(100) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Runs a command and returns how long it took; it must succeed.
fn timed(command: &mut Command) -> Result<(Duration, Output)> {
    let started = Instant::now();
    let output = command.output().with_context(|| format!("run {command:?}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((elapsed, output))
}

/// The bench's view of one cluster: env files per database, the binaries
/// it times (this checkout's release build first, then `--baseline`), the
/// roles' names and passwords as `.env.test.example` gives them.
struct Lab<'a> {
    ctx: &'a Ctx,
    cluster: &'a TestCluster,
    binaries: Vec<PathBuf>,
    dir: tempfile::TempDir,
    root: PathBuf,
    example: String,
}

/// The bench's commands see only the env files it writes.
const CONTRACT: &[&str] = dbenv::CONTRACT_KEYS;

impl Lab<'_> {
    fn env_file(&self, db: &str) -> Result<PathBuf> {
        let text = self
            .example
            .replace("55432", &self.cluster.port().to_string())
            .replace("cogni_template_stack_test", db)
            .replace(
                "POSTGRES_ROOT_PASSWORD=postgres",
                &format!("POSTGRES_ROOT_PASSWORD='{}'", self.cluster.password()),
            );
        let path = self.dir.path().join(format!("{db}.env"));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The settings every command reads from the env file of `db`.
    fn settings(&self, db: &str) -> Result<Settings> {
        Settings::from_env(&EnvVars::load(&self.env_file(db)?, true, &ProcessEnv::none())?)
    }

    /// A role's name and password.
    fn role(&self, kind: RoleKind) -> (String, dbenv::Secret) {
        let settings = self.settings("bench").expect("BUG: the bench's env file is valid");
        let role = settings.role(kind);
        (role.name.clone(), role.password.clone())
    }

    fn xtask(&self, binary: &Path, db: &str, args: &[&str]) -> Result<Command> {
        let mut command = Command::new(binary);
        for key in CONTRACT {
            command.env_remove(key);
        }
        command.args(args).arg("--env-file").arg(self.env_file(db)?).current_dir(&self.root);
        Ok(command)
    }

    /// This checkout's binary.
    fn ours(&self, db: &str, args: &[&str]) -> Result<Command> {
        self.xtask(&self.binaries[0], db, args)
    }

    fn admin(&self, db: &str) -> Result<Client> {
        Ok(Client::connect(&self.cluster.admin_url(db), NoTls)?)
    }

    /// A session as the app or a migration has it (the role's own
    /// search_path), not the tool's pinned one: fixtures name tables bare.
    fn connect(&self, db: &str, kind: RoleKind) -> Result<Client> {
        let dsn = self.settings(db)?.role(kind).dsn.clone();
        let mut client = dbenv::connect(&dsn, kind.label())?;
        client.batch_execute("RESET search_path")?;
        Ok(client)
    }

    fn psql(&self, db: &str, kind: RoleKind) -> Command {
        let (user, password) = self.role(kind);
        let mut command = Command::new("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.cluster.port().to_string())
            .args(["-U", &user, "-d", db])
            .env("PGPASSWORD", password.expose());
        command
    }

    fn drizzle_kit(&self, db: &str, folder: &Path) -> Result<Command> {
        let config = drizzle::Config::new(EnvVars::load(&self.env_file(db)?, true, &ProcessEnv::none())?.migration()?);
        let package = self.root.join("platform/db");
        let node = drizzle::kit::Node { package: &package, search_path: self.ctx.search_path.clone() };
        drizzle::kit::command(&node, &config.dsn, folder, &config.table)
    }

    /// Medians per binary of `runs` timings of `measure(binary, run)`, the
    /// binaries taking turns within each run.
    fn per_binary(&self, runs: usize, mut measure: impl FnMut(&Path, usize) -> Result<Duration>) -> Result<Times> {
        let mut times = vec![Vec::new(); self.binaries.len()];
        for run in 0..runs {
            for (binary, times) in self.binaries.iter().zip(&mut times) {
                times.push(measure(binary, run)?);
            }
        }
        let mut medians = times.into_iter().map(median);
        let ours = medians.next().context("BUG: no binary")?;
        Ok((ours, medians.next()))
    }
}

pub fn run(flags: flags::Bench, ctx: &Ctx) -> Result<ExitCode> {
    let sh = &ctx.sh;
    let runs = flags.runs.max(1);
    if flags.only.contains(&Measure::RotateLarge) && !flags.only.contains(&Measure::CheckLarge) {
        bail!("--only rotate-large rotates the roles on check-large's database: add --only check-large");
    }
    println!("==> building the release binary");
    cmd!(sh, "cargo build --release --locked -q -p xtask").run()?;
    let root = ctx.root.clone();
    let mut binaries = vec![root.join("target/release/xtask")];
    if let Some(baseline) = &flags.baseline {
        let baseline = ctx.invoked_from.join(baseline);
        if !baseline.is_file() {
            bail!("--baseline `{}` is not a file: give the path of another build's `xtask` binary", baseline.display());
        }
        binaries.push(baseline);
    }
    let options = ClusterOptions { durable: true, local: Some(ctx.local.clone()), ..Default::default() };
    let cluster = TestCluster::start_with(options)?;
    let example = std::fs::read_to_string(root.join(".env.test.example"))?;
    let bench = Lab { ctx, cluster: &cluster, binaries, dir: tempfile::tempdir()?, root: root.clone(), example };
    let machine = machine();
    println!("==> PostgreSQL {} with default settings, {runs} runs per measure, on {machine}", cluster.bin.major);
    let mut rows = Vec::new();
    let wanted = |measure: Measure| flags.only.is_empty() || flags.only.contains(&measure);
    let large = |measure: Measure| wanted(measure) && (!flags.quick || flags.only.contains(&measure));

    if wanted(Measure::Setup) {
        rows.push(setup_from_nothing(&bench, &cluster.bin, runs)?);
    }
    let app = root.join("platform/db/migrations");
    bench.ours("bench", &["db-provision"])?.output()?;
    timed(&mut bench.ours("bench", &["db-migrate", "--migrations-dir", &text(&app)])?)?;
    if wanted(Measure::NoopMigrate) {
        rows.push(noop_migrate(&bench, &app, runs)?);
    }
    if wanted(Measure::ThreeHundred) {
        rows.push(three_hundred(&bench, runs)?);
    }
    if wanted(Measure::MixedBatch) {
        rows.push(mixed_batch(&bench, runs)?);
    }
    if wanted(Measure::Guard) {
        rows.push(guard_scan(&bench, runs)?);
        rows.push(guard_scan_app(&bench, runs)?);
    }
    if wanted(Measure::Fleet) {
        rows.push(fleet::fleet_row(&bench, runs)?);
    }
    if large(Measure::CheckLarge) {
        rows.push(check_ten_thousand(&bench, runs)?);
    }
    if large(Measure::ConvertLarge) {
        rows.extend(convert_ten_thousand(&bench, runs)?);
    }
    // Last: rotating the cluster's roles changes the passwords every other measure logs in with.
    if large(Measure::RotateLarge) {
        rows.extend(rotate_ten_thousand(&bench, runs)?);
    }
    print_rows(&rows, flags.baseline.is_some());
    let missed: Vec<&str> = rows.iter().filter(|r| !r.met).map(|r| r.measure.as_str()).collect();
    if missed.is_empty() {
        println!("\nevery target met ({machine}, {})", today());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\ntargets missed: {}", missed.join("; "));
        Ok(ExitCode::from(2))
    }
}

fn print_rows(rows: &[Row], baseline: bool) {
    println!();
    let (head, rule) = if baseline { (" baseline | ours ÷ baseline |", " --- | --- |") } else { ("", "") };
    println!("| measure | anchor | anchor time | ours |{head} target | |");
    println!("| --- | --- | --- | --- |{rule} --- | --- |");
    for row in rows {
        let compared = match row.baseline {
            Some(b) => format!(" {} | {:.2} |", secs(b), row.ours.as_secs_f64() / b.as_secs_f64()),
            None if baseline => " — | — |".to_string(),
            None => String::new(),
        };
        println!(
            "| {} | {} | {} | {} |{compared} {} | {} |",
            row.measure,
            row.anchor,
            row.anchor_time.map(secs).unwrap_or_else(|| "—".into()),
            secs(row.ours),
            row.target,
            if row.met { "✓" } else { "✗" }
        );
    }
    for row in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("- {}: {}", row.measure, row.note);
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores {model}")
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A project folder with the env examples for a fresh port: where
/// `db-setup` starts from nothing.
fn fresh_project(bench: &Lab) -> Result<tempfile::TempDir> {
    let project = tempfile::Builder::new().prefix("bench-setup-").tempdir()?;
    std::fs::set_permissions(project.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let port = pgcluster::free_port()?.to_string();
    for example in [".env.local.example", ".env.test.example"] {
        let text = std::fs::read_to_string(bench.root.join(example))?;
        std::fs::write(project.path().join(example), text.replace("55432", &port))?;
    }
    Ok(project)
}

/// `db-setup` (or `db-down --purge`) of `binary` in `project`.
fn setup_command(binary: &Path, project: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    for key in CONTRACT {
        command.env_remove(key);
    }
    command.args(args).arg("--env-file").arg(project.join(".env.local")).env("APP_DB_DATA_DIR", project.join("data"));
    command
}

/// `db-setup` from nothing: env files, initdb, start, provision, migrate, check.
fn setup_from_nothing(bench: &Lab, bin: &PgBin, runs: usize) -> Result<Row> {
    println!("==> db-setup from nothing");
    let (ours, baseline) = bench.per_binary(runs, |binary, _| {
        let project = fresh_project(bench)?;
        let result = timed(&mut setup_command(binary, project.path(), &["db-setup"]));
        let _ = setup_command(binary, project.path(), &["db-down", "--purge"]).output();
        Ok(result?.0)
    })?;
    // The anchor's first part: initdb alone, as db-up runs it.
    let mut initdb_times = Vec::new();
    for _ in 0..runs {
        let target = tempfile::Builder::new().prefix("bench-initdb-").tempdir()?;
        std::fs::set_permissions(target.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let user = OsUser::for_server(&bench.ctx.local)?;
        let started = Instant::now();
        let options = InitOptions { superuser: "postgres", password: "x", no_sync: false };
        pgcluster::initdb(bin, user.as_ref(), &target.path().join("data"), &options)?;
        initdb_times.push(started.elapsed());
    }
    let anchor = "initdb alone (upstream: compose up + two one-shot containers)";
    let row = Row::new("db-setup from nothing (incl. initdb)", anchor, Some(median(initdb_times)), (ours, baseline));
    Ok(row.target("under 5 s".into(), ours < Duration::from_secs(5)))
}

fn noop_migrate(bench: &Lab, app: &Path, runs: usize) -> Result<Row> {
    println!("==> db-migrate with nothing pending");
    let mut anchor = Vec::new();
    for _ in 0..runs {
        anchor.push(timed(&mut bench.drizzle_kit("bench", app)?)?.0);
    }
    let (ours, baseline) = bench.per_binary(runs, |binary, _| {
        Ok(timed(&mut bench.xtask(binary, "bench", &["db-migrate", "--migrations-dir", &text(app)])?)?.0)
    })?;
    let anchor = median(anchor);
    let ratio = anchor.as_secs_f64() / ours.as_secs_f64();
    Ok(Row::new("db-migrate, nothing pending", "drizzle-kit migrate (node …/bin.cjs)", Some(anchor), (ours, baseline))
        .target(format!("≥ 20× faster (here {ratio:.0}×)"), ratio >= 20.0))
}

fn three_hundred(bench: &Lab, runs: usize) -> Result<Row> {
    println!("==> applying 300 migrations");
    let folder = bench.dir.path().join("three-hundred");
    let all = fixtures::generated_folder(&folder, 300)?;
    let mut floor = Vec::new();
    for run in 0..runs {
        let db = format!("b300_psql_{run}");
        bench.ours(&db, &["db-provision"])?.output()?;
        floor.push(timed(bench.psql(&db, RoleKind::Migrator).args(["--single-transaction", "-f"]).arg(&all))?.0);
    }
    let (ours, baseline) = bench.per_binary(runs, |binary, run| {
        let db = format!("b300_{}_{run}", if binary == bench.binaries[0] { "ours" } else { "base" });
        bench.ours(&db, &["db-provision"])?.output()?;
        Ok(timed(&mut bench.xtask(binary, &db, &["db-migrate", "--migrations-dir", &text(&folder)])?)?.0)
    })?;
    // drizzle-kit once, for the record.
    bench.ours("b300_kit", &["db-provision"])?.output()?;
    let kit = timed(&mut bench.drizzle_kit("b300_kit", &folder)?)?.0;
    let floor = median(floor);
    let ratio = ours.as_secs_f64() / floor.as_secs_f64();
    Ok(Row::new(
        "apply 300 migrations (a table and an index each)",
        "psql --single-transaction -f (the server's floor)",
        Some(floor),
        (ours, baseline),
    )
    .target(format!("≤ 1.3× the floor (here {ratio:.2}×)"), ratio <= 1.3)
    .note(format!("drizzle-kit migrate on the same folder: {}", secs(kit))))
}

/// The fixture that mixes a `COMMIT` and enum values, runner against
/// drizzle-kit, each on a fresh provisioned database per run. Only this
/// checkout's binary: a baseline from before the runner followed
/// drizzle-kit outside the transaction fails on it (55P04).
fn mixed_batch(bench: &Lab, runs: usize) -> Result<Row> {
    println!("==> applying 300 migrations with a COMMIT and enum values");
    let folder = bench.dir.path().join("mixed");
    fixtures::mixed_folder(&folder, 300)?;
    let (mut kit, mut ours) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let db = format!("bmix_kit_{run}");
        bench.ours(&db, &["db-provision"])?.output()?;
        kit.push(timed(&mut bench.drizzle_kit(&db, &folder)?)?.0);
        let db = format!("bmix_ours_{run}");
        bench.ours(&db, &["db-provision"])?.output()?;
        let args = ["db-migrate", "--migrations-dir", &text(&folder)];
        ours.push(timed(&mut bench.xtask(&bench.binaries[0], &db, &args)?)?.0);
    }
    let (kit, ours) = (median(kit), median(ours));
    let ratio = kit.as_secs_f64() / ours.as_secs_f64();
    Ok(Row::new(
        "apply 300 migrations: a COMMIT, then enum values added and used",
        "drizzle-kit migrate on the same folder",
        Some(kit),
        (ours, None),
    )
    .target(format!("≥ 1.5× faster (here {ratio:.1}×)"), ratio >= 1.5))
}

/// The migration guard's cost: `db-status` on the 300-migration mixed
/// folder with every migration pending (it reads the catalog and scans them
/// all, as `db-migrate` does before anything runs) against `db-status` on
/// the same folder once applied (nothing to scan). Needs `mixed_batch`'s
/// applied database.
fn guard_scan(bench: &Lab, runs: usize) -> Result<Row> {
    println!("==> the migration guard on 300 pending migrations");
    let folder = bench.dir.path().join("mixed");
    bench.ours("bguard", &["db-provision"])?.output()?;
    let label = "db-status, 300 migrations pending (the guard scans them)";
    guard_row(bench, runs, label, &folder, 300, ("bguard", "bmix_ours_0"))
}

/// The same on the largest real-world set, the app's own migrations.
/// Needs the `bench` database, where they are applied.
fn guard_scan_app(bench: &Lab, runs: usize) -> Result<Row> {
    let folder = bench.root.join("platform/db/migrations");
    let count = drizzle::folder::read(&folder)?.migrations.len();
    println!("==> the migration guard on the app's {count} migrations");
    bench.ours("bguard_app", &["db-provision"])?.output()?;
    let label = format!("db-status, the app's {count} migrations pending (the largest real set)");
    guard_row(bench, runs, &label, &folder, count, ("bguard_app", "bench"))
}

fn guard_row(
    bench: &Lab,
    runs: usize,
    label: &str,
    folder: &Path,
    count: usize,
    (pending_db, applied_db): (&str, &str),
) -> Result<Row> {
    let folder = text(folder);
    let status = |db: &str| -> Result<Duration> {
        let (elapsed, output) =
            timed(&mut bench.xtask(&bench.binaries[0], db, &["db-status", "--migrations-dir", &folder])?)?;
        // Pending migrations are a finding (exit 2); a refusal would print ✗.
        if String::from_utf8_lossy(&output.stdout).contains('✗') {
            bail!("db-status found problems in {folder}: {}", String::from_utf8_lossy(&output.stdout));
        }
        Ok(elapsed)
    };
    let (mut pending, mut applied) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        pending.push(status(pending_db)?);
        applied.push(status(applied_db)?);
    }
    let (pending, applied) = (median(pending), median(applied));
    // The scan (with its catalog reads, a fixed cost) against a budget of
    // 50 ms per 100 migrations; a set of fewer than 100 gets the budget of 100.
    let scan = pending.saturating_sub(applied);
    let budget = Duration::from_millis(50) * u32::try_from(count.max(100))? / 100;
    Ok(Row::new(label, "db-status, the same applied (nothing to scan)", Some(applied), (pending, None))
        .target(format!("the scan under 50 ms per 100 migrations (here {} for {count})", secs(scan)), scan < budget))
}

/// `db-check --json` of `binary` on `db`.
fn check_json(bench: &Lab, binary: &Path, db: &str) -> Result<(Duration, serde_json::Value)> {
    let app = text(&bench.root.join("platform/db/migrations"));
    let (elapsed, output) = timed(&mut bench.xtask(binary, db, &["db-check", "--json", "--migrations-dir", &app])?)?;
    Ok((elapsed, serde_json::from_slice(&output.stdout)?))
}

fn check_ten_thousand(bench: &Lab, runs: usize) -> Result<Row> {
    println!("==> a database with 10,000 more tables (building it)");
    let app = bench.root.join("platform/db/migrations");
    bench.ours("b10k", &["db-provision"])?.output()?;
    timed(&mut bench.ours("b10k", &["db-migrate", "--migrations-dir", &text(&app)])?)?;
    fixtures::ten_thousand_rls_tables(bench, "b10k")?;
    let small = check_json(bench, &bench.binaries[0], "bench")?.1;
    let mut anchor = Vec::new();
    for _ in 0..runs {
        anchor.push(
            timed(bench.psql("b10k", RoleKind::Migrator).args([
                "-c",
                "SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a                  WHERE c.relnamespace = 'public'::regnamespace",
            ]))?
            .0,
        );
    }
    let mut large = serde_json::Value::Null;
    let (ours, baseline) = bench.per_binary(runs, |binary, _| {
        let (elapsed, report) = check_json(bench, binary, "b10k")?;
        if binary == bench.binaries[0] {
            large = report;
        }
        Ok(elapsed)
    })?;
    let same = small["catalog_queries"] == large["catalog_queries"] && small["queries"] == large["queries"];
    Ok(Row::new(
        "db-check on 10,000 more tables",
        "one set-based ACL query over every relation",
        Some(median(anchor)),
        (ours, baseline),
    )
    .target(
        format!(
            "under 1 s, same queries as the app database ({} catalog / {} in all, vs {} / {})",
            large["catalog_queries"], large["queries"], small["catalog_queries"], small["queries"]
        ),
        ours < Duration::from_secs(1) && same && large["holds"] == true,
    ))
}

/// `db-rotate` of the migrator, the owner of the 10,000 tables, and of the
/// runtime role, whose start also runs db-check's probes as the new login:
/// start (make or ready the other login, prove it, publish it) and finish
/// (retire the old one), each timed; nothing per object moves.
fn rotate_ten_thousand(bench: &Lab, runs: usize) -> Result<Vec<Row>> {
    println!("==> db-rotate on the 10,000-table database");
    // The conversion measures' legacy databases, where the runtime role owns
    // everything by design, go first: the new login's probes fail there (as
    // they should) and db-rotate would publish nothing.
    let mut admin = bench.admin("postgres")?;
    let legacy: Vec<String> = admin
        .query("SELECT datname::text FROM pg_database WHERE datname LIKE 'legacy\\_%'", &[])?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for db in legacy {
        let db = dbenv::quote_ident(&db);
        // Two statements: DROP DATABASE may not share a query string.
        admin.batch_execute(&format!("ALTER DATABASE {db} IS_TEMPLATE false"))?;
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))?;
    }
    let env = bench.dir.path().join("rotate.env");
    std::fs::copy(bench.env_file("b10k")?, &env)?;
    let rotate = |role: &str, args: &[&str]| -> Result<Duration> {
        let mut command = Command::new(&bench.binaries[0]);
        for key in CONTRACT {
            command.env_remove(key);
        }
        command.arg("db-rotate").arg(role).args(args).arg("--env-file").arg(&env);
        let (elapsed, output) = timed(command.current_dir(&bench.root))?;
        if !output.status.success() {
            bail!("db-rotate {role} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(elapsed)
    };
    let mut rows = Vec::new();
    for kind in [RoleKind::Migrator, RoleKind::Runtime] {
        let role = bench.role(kind).0;
        let (mut starts, mut finishes) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            starts.push(rotate(&role, &[])?);
            finishes.push(rotate(&role, &["--finish"])?);
        }
        let (start, finish) = (median(starts), median(finishes));
        for (step, took) in [("start", start), ("finish", finish)] {
            rows.push(
                Row::new(&format!("db-rotate {role} on 10,000 tables: {step}"), "—", None, (took, None))
                    .target("under 1 s".into(), took < Duration::from_secs(1)),
            );
        }
    }
    Ok(rows)
}

fn convert_ten_thousand(bench: &Lab, runs: usize) -> Result<Vec<Row>> {
    println!("==> a legacy database with 10,000 tables owned by the runtime role (building it)");
    fixtures::legacy_template(bench)?;
    let reassign_note = fixtures::reassign_owned_note(bench)?;
    // At most three conversions (each copies 10,000 tables); each converged
    // database is provisioned `runs` times.
    let conversions = runs.min(3);
    let mut anchor = Vec::new();
    for run in 0..conversions {
        anchor.push(fixtures::owner_loop(bench, &format!("legacy_loop_{run}"))?);
    }
    let mut converted = Vec::new();
    let (ours, baseline) = bench.per_binary(conversions, |binary, run| {
        let db = format!("legacy_{}_{run}", converted.len());
        fixtures::legacy_copy(bench, &db)?;
        converted.push((binary.to_path_buf(), db.clone()));
        Ok(timed(&mut bench.xtask(binary, &db, &["db-provision"])?)?.0)
    })?;
    let mut rewritten = 0usize;
    let (converged, converged_baseline) = bench.per_binary(conversions * runs, |binary, run| {
        let dbs: Vec<&String> = converted.iter().filter(|(b, _)| b == binary).map(|(_, db)| db).collect();
        let db = dbs[run % dbs.len()];
        let before = fixtures::catalog_fingerprint(bench, db)?;
        let (elapsed, output) = timed(&mut bench.xtask(binary, db, &["db-provision"])?)?;
        if !String::from_utf8_lossy(&output.stdout).contains("nothing to change") {
            bail!("the converged run changed something: {}", String::from_utf8_lossy(&output.stdout));
        }
        if fixtures::catalog_fingerprint(bench, db)? != before {
            rewritten += 1;
        }
        Ok(elapsed)
    })?;
    let anchor = median(anchor);
    let ratio = ours.as_secs_f64() / anchor.as_secs_f64();
    let writes = if rewritten == 0 {
        "every catalog row as it was".to_string()
    } else {
        format!("{rewritten} runs rewrote rows")
    };
    Ok(vec![
        Row::new(
            "db-provision converting 10,000 legacy tables",
            "server-side ALTER TABLE … OWNER loop, COMMIT every 1,000",
            Some(anchor),
            (ours, baseline),
        )
        .target(format!("within 1.5× of the loop (here {ratio:.2}×)"), ratio <= 1.5)
        .note(reassign_note),
        Row::new("db-provision on the converged 10,000-table database", "—", None, (converged, converged_baseline))
            .target(
                format!("under 0.3 s, zero writes ({writes})"),
                converged < Duration::from_millis(300) && rewritten == 0,
            ),
    ])
}
