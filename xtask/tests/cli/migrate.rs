//! `db-migrate` (both engines), `db-status` and `db-reset` through the binary.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{children_of, have_tool, text, Project};
use pgcluster::TestCluster;
use postgres::{Client, NoTls};

const DB: &str = "cogni_template_test";

fn provisioned() -> (TestCluster, Project) {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    let output = project.run(&["db-provision"]);
    assert!(output.status.success(), "{}", text(&output));
    (cluster, project)
}

fn rows(cluster: &TestCluster) -> Vec<(i32, String, i64)> {
    Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .query("SELECT id, hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id", &[])
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        .unwrap_or_default()
}

fn drizzle_kit_available() -> bool {
    have_tool("node", &["--version"])
}

/// A folder whose migrations take a while and write data once.
fn slow_folder(project: &Project, sleep: f64) -> String {
    let dir = project.path("slow");
    std::fs::create_dir_all(dir.join("meta")).unwrap();
    std::fs::write(dir.join("0000_counter.sql"), "CREATE TABLE counter (n int);").unwrap();
    std::fs::write(dir.join("0001_data.sql"), format!("INSERT INTO counter VALUES (1);\nSELECT pg_sleep({sleep});"))
        .unwrap();
    std::fs::write(
        dir.join("meta/_journal.json"),
        r#"{"version":"7","dialect":"postgresql","entries":[
            {"idx":0,"version":"7","when":1000,"tag":"0000_counter","breakpoints":true},
            {"idx":1,"version":"7","when":2000,"tag":"0001_data","breakpoints":true}]}"#,
    )
    .unwrap();
    dir.display().to_string()
}

#[test]
fn migrate_then_status_with_the_app_migrations() {
    let (cluster, project) = provisioned();
    let before = project.run(&["db:status"]);
    assert_eq!(before.status.code(), Some(0), "{}", text(&before));
    assert!(text(&before).contains("0 applied, 9 pending"), "{}", text(&before));

    let dry = project.run(&["db-migrate", "--dry-run"]);
    assert!(text(&dry).contains("dry run: 9 pending, nothing applied"), "{}", text(&dry));
    assert!(rows(&cluster).is_empty());

    let migrate = project.run(&["db-migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    assert!(
        text(&migrate).contains(
            "applied 9 migrations (0000_init to 0008_seed_system_tenant) as `app_migrator` in one transaction"
        ),
        "{}",
        text(&migrate)
    );
    assert_eq!(rows(&cluster).len(), 9);

    let json = project.run(&["db-status", "--json"]);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["summary"]["applied"], 9);
    assert_eq!(value["ok"], true);
    assert_eq!(value["migrations"][8]["tag"], "0008_seed_system_tenant");

    // A folder where an applied file was edited: exit 2, and the run refuses.
    let copy = project.copy_migrations(None);
    let file = copy.join("0001_scheduling.sql");
    let edited = std::fs::read_to_string(&file).unwrap().replace('\n', "\r\n");
    std::fs::write(&file, edited).unwrap();
    let dir = copy.display().to_string();
    let status = project.run(&["db-status", "--migrations-dir", &dir]);
    assert_eq!(status.status.code(), Some(2), "{}", text(&status));
    assert!(text(&status).contains("changed (line endings only)"), "{}", text(&status));
    let refused = project.run(&["db-migrate", "--migrations-dir", &dir]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("`0001_scheduling` was changed in its line endings only"), "{}", text(&refused));
}

#[test]
fn db_reset_recreates_a_test_database_and_refuses_others() {
    let (cluster, project) = provisioned();
    assert!(project.run(&["db-migrate"]).status.success());
    Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .batch_execute("CREATE TABLE public.stray (id int)")
        .unwrap();
    let reset = project.run(&["db-reset"]);
    assert!(reset.status.success(), "{}", text(&reset));
    let stray: bool = Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .query_one("SELECT to_regclass('stray') IS NULL", &[])
        .unwrap()
        .get(0);
    assert!(stray, "the database was recreated");
    assert_eq!(rows(&cluster).len(), 9);

    let other = Project::for_cluster(&cluster, "cogni_template_dev");
    let refused = other.run(&["db-reset"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("resets only databases whose name ends in `_test`"), "{}", text(&refused));
}

#[test]
fn the_drizzle_kit_engine_runs_after_the_same_refusals_and_under_the_lock() {
    if !drizzle_kit_available() {
        return;
    }
    let (cluster, project) = provisioned();
    // Half with drizzle-kit, through this tool.
    let half = project.copy_migrations(Some(5)).display().to_string();
    let first = project.run(&["db-migrate", "--engine", "drizzle-kit", "--migrations-dir", &half]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("drizzle-kit applied 0000_init … 0004_rls_policies (5 migrations)"),
        "{}",
        text(&first)
    );
    assert_eq!(rows(&cluster).len(), 5);
    // The rest with the built-in runner; then drizzle-kit has nothing to do.
    assert!(project.run(&["db-migrate"]).status.success());
    let again = project.run(&["db-migrate", "--engine", "drizzle-kit"]);
    assert!(text(&again).contains("drizzle-kit was not started"), "{}", text(&again));

    // A late-merged entry: drizzle-kit would skip it; this tool refuses first.
    let copy = project.copy_migrations(None);
    std::fs::write(copy.join("0009_late.sql"), "CREATE TABLE late (id int);").unwrap();
    let journal = copy.join("meta/_journal.json");
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    value["entries"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"idx": 9, "version": "7", "when": 1000, "tag": "0009_late", "breakpoints": true}));
    std::fs::write(&journal, value.to_string()).unwrap();
    let dir = copy.display().to_string();
    let refused = project.run(&["db-migrate", "--engine", "drizzle-kit", "--migrations-dir", &dir]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("`0009_late` (when 1000) is not applied but is older"), "{}", text(&refused));
}

#[test]
fn concurrent_runs_of_both_engines_apply_each_migration_once() {
    if !drizzle_kit_available() {
        return;
    }
    let (cluster, project) = provisioned();
    let dir = slow_folder(&project, 0.3);
    let env_file = project.env_local();
    // Eight at once, half with each engine.
    let children: Vec<_> = (0..8)
        .map(|i| {
            let engine = if i % 2 == 0 { "drizzle-kit" } else { "builtin" };
            let mut command = Command::new(crate::common::XTASK);
            for key in crate::common::CONTRACT {
                command.env_remove(key);
            }
            command
                .args(["db-migrate", "--engine", engine, "--migrations-dir", &dir, "--env-file", &env_file])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    assert_eq!(rows(&cluster).len(), 2);
    let counter: i64 = Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .query_one("SELECT count(*) FROM counter", &[])
        .unwrap()
        .get(0);
    assert_eq!(counter, 1, "the data migration ran exactly once");
}

#[test]
fn lock_timeout_reaches_drizzle_kit_and_its_silent_failure_is_explained() {
    if !drizzle_kit_available() {
        return;
    }
    let (cluster, project) = provisioned();
    let dir = project.path("locked");
    std::fs::create_dir_all(dir.join("meta")).unwrap();
    std::fs::write(dir.join("0000_alter.sql"), "ALTER TABLE busy ADD COLUMN extra int;").unwrap();
    std::fs::write(
        dir.join("meta/_journal.json"),
        r#"{"version":"7","dialect":"postgresql","entries":[{"idx":0,"version":"7","when":1000,"tag":"0000_alter","breakpoints":true}]}"#,
    )
    .unwrap();
    let mut app = Client::connect(&cluster.admin_url(DB), NoTls).unwrap();
    app.batch_execute("CREATE TABLE busy (id int); ALTER TABLE busy OWNER TO app_migrator").unwrap();
    // The app holds a lock the migration needs, for longer than lock_timeout.
    let mut tx = app.transaction().unwrap();
    tx.batch_execute("LOCK TABLE busy IN ACCESS SHARE MODE").unwrap();
    let started = Instant::now();
    let dir = dir.display().to_string();
    let output =
        project.run(&["db-migrate", "--engine", "drizzle-kit", "--lock-timeout", "1", "--migrations-dir", &dir]);
    assert!(started.elapsed() < Duration::from_secs(30), "it gave up on the lock instead of queueing");
    assert_eq!(output.status.code(), Some(1));
    let log = text(&output);
    assert!(log.contains("drizzle-kit migrate failed"), "{log}");
    assert!(log.contains("0000_alter was pending; still pending now: 0000_alter"), "{log}");
    assert!(log.contains("run `cargo xtask db-migrate` (the built-in engine) to see the failing statement"), "{log}");
    // The built-in engine says what happened, with the SQLSTATE.
    let builtin = project.run(&["db-migrate", "--lock-timeout", "1", "--migrations-dir", &dir]);
    assert!(text(&builtin).contains("(SQLSTATE 55P03)"), "{}", text(&builtin));
    tx.rollback().unwrap();
    assert!(project.run(&["db-migrate", "--migrations-dir", &dir]).status.success());
}

#[test]
fn killing_the_tool_kills_drizzle_kit_and_a_rerun_converges() {
    if !drizzle_kit_available() {
        return;
    }
    let (cluster, project) = provisioned();
    let dir = slow_folder(&project, 20.0);
    let env_file = project.env_local();
    let mut command = Command::new(crate::common::XTASK);
    for key in crate::common::CONTRACT {
        command.env_remove(key);
    }
    let mut tool = command
        .args(["db-migrate", "--engine", "drizzle-kit", "--migrations-dir", &dir, "--env-file", &env_file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for drizzle-kit to be running the slow migration.
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        let running: bool = Client::connect(&cluster.admin_url(DB), NoTls)
            .unwrap()
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20%' AND pid <> pg_backend_pid())", &[])
            .unwrap()
            .get(0);
        if running {
            break children_of(tool.id());
        }
        assert!(Instant::now() < deadline, "drizzle-kit never started the migration");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(node.len(), 1, "one drizzle-kit child");
    tool.kill().unwrap();
    tool.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{}", node[0])).exists() {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", node[0])).unwrap_or_default();
        if state.contains(") Z ") {
            break; // a zombie waiting for its reaper: dead
        }
        assert!(Instant::now() < deadline, "drizzle-kit outlived the tool");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing half-applied; a re-run (with a quick folder of the same tags) converges.
    assert!(rows(&cluster).is_empty());
    let quick = slow_folder(&project, 0.0);
    let rerun = project.run(&["db-migrate", "--migrations-dir", &quick, "--lock-wait", "30"]);
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(rows(&cluster).len(), 2);
}

/// A `.sql` file the journal does not list never runs, under either tool:
/// `db-status` names it and exits 2, `db-migrate` warns and applies the rest.
#[test]
fn files_the_journal_does_not_list_are_named() {
    let (cluster, project) = provisioned();
    let copy = project.copy_migrations(None);
    std::fs::write(copy.join("0009_forgotten.sql"), "ALTER TABLE users ADD COLUMN nickname text;").unwrap();
    let dir = copy.display().to_string();
    let status = project.run(&["db-status", "--migrations-dir", &dir]);
    assert_eq!(status.status.code(), Some(2), "{}", text(&status));
    assert!(text(&status).contains("`0009_forgotten.sql` is in"), "{}", text(&status));
    assert!(text(&status).contains("not in meta/_journal.json, so it never runs"), "{}", text(&status));
    let json = project.run(&["db-status", "--json", "--migrations-dir", &dir]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["unlisted_files"].as_array().map(Vec::len), Some(1));

    let migrate = project.run(&["db-migrate", "--migrations-dir", &dir]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert!(stderr.contains("warning: `0009_forgotten.sql` is in"), "{stderr}");
    assert_eq!(rows(&cluster).len(), 9);
}

/// The migration guard, as `db-status` shows it and both engines apply it:
/// a pending migration that hands a table to the runtime role is named with
/// its line and fix, and nothing runs.
#[test]
fn the_guard_refuses_in_status_and_in_both_engines() {
    let (cluster, project) = provisioned();
    let copy = project.copy_migrations(None);
    std::fs::write(copy.join("0009_owner.sql"), "-- hand the table over\nALTER TABLE users OWNER TO app_user;\n")
        .unwrap();
    let journal_path = copy.join("meta/_journal.json");
    let mut journal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal_path).unwrap()).unwrap();
    let entries = journal["entries"].as_array_mut().unwrap();
    let when = entries.last().unwrap()["when"].as_i64().unwrap() + 1000;
    entries.push(serde_json::json!({"idx": 9, "version": "7", "when": when, "tag": "0009_owner", "breakpoints": true}));
    std::fs::write(&journal_path, journal.to_string()).unwrap();
    let dir = copy.display().to_string();
    let said = "`0009_owner` line 2: `ALTER TABLE users OWNER TO app_user`: OWNER TO `app_user`";

    let status = project.run(&["db-status", "--migrations-dir", &dir]);
    assert_eq!(status.status.code(), Some(2), "{}", text(&status));
    assert!(text(&status).contains(said), "{}", text(&status));
    let json = project.run(&["db-status", "--json", "--migrations-dir", &dir]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["guard"]["refused"][0]["line"], 2);

    let mut engines = vec![vec!["db-migrate", "--migrations-dir", &dir]];
    if drizzle_kit_available() {
        engines.push(vec!["db-migrate", "--engine", "drizzle-kit", "--migrations-dir", &dir]);
    }
    for args in engines {
        let migrate = project.run(&args);
        assert_eq!(migrate.status.code(), Some(1), "{args:?}: {}", text(&migrate));
        assert!(text(&migrate).contains(said), "{}", text(&migrate));
        assert!(rows(&cluster).is_empty(), "{args:?}: nothing ran");
    }
}

/// `db-reset` takes the runner's flags: with `--transaction-per-migration`
/// the migrations before a failing one stay applied.
#[test]
fn db_reset_takes_the_runners_flags() {
    let (cluster, project) = provisioned();
    let copy = project.copy_migrations(None);
    std::fs::write(copy.join("0008_seed_system_tenant.sql"), "SELECT 1/0;").unwrap();
    let dir = copy.display().to_string();
    let batch = project.run(&["db-reset", "--migrations-dir", &dir]);
    assert_eq!(batch.status.code(), Some(1), "{}", text(&batch));
    assert!(rows(&cluster).is_empty(), "{}", text(&batch));
    let each = project.run(&["db-reset", "--transaction-per-migration", "--migrations-dir", &dir]);
    assert_eq!(each.status.code(), Some(1), "{}", text(&each));
    assert!(text(&each).contains("SQLSTATE 22012"), "{}", text(&each));
    assert_eq!(rows(&cluster).len(), 8);
}

/// The summary never claims one transaction for a batch that committed:
/// it says how many transactions and which migrations ran outside one.
#[test]
fn the_summary_says_what_committed() {
    let (_cluster, project) = provisioned();
    let dir = crate::common::repo_root().join("crates/drizzle/tests/fixtures/realworld/enum-after-commit/migrations");
    let migrate = project.run(&["db-migrate", "--migrations-dir", &dir.display().to_string()]);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let said = text(&migrate);
    assert!(
        said.contains(
            "applied 5 migrations (0000_init to 0004_invoice) as `app_migrator` in one transaction and outside any \
             transaction for 4 migrations (0001_email_index, 0002_team_tier, 0003_seat_tier, 0004_invoice)"
        ),
        "{said}"
    );
}

#[test]
fn transaction_per_migration_is_the_builtin_runners_only() {
    let project = crate::common::Project::new();
    let refused = project.xtask(&["db-migrate", "--engine", "drizzle-kit", "--transaction-per-migration"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("--transaction-per-migration is the built-in runner's"), "{}", text(&refused));
}
