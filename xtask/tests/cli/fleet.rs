//! `--targets`: one command over many databases on two real clusters, each
//! target failing alone, bad input refused before any target runs.

use std::path::{Path, PathBuf};
use std::process::Output;

use pgcluster::TestCluster;
use postgres::NoTls;

use crate::common::{text, Project};

/// An env file for database `db` on `cluster`, with the dev roles and
/// passwords (`runtime_password` for app_user).
fn env_text(cluster: &TestCluster, db: &str, runtime_password: &str) -> String {
    let port = cluster.port();
    let dsn = |user: &str, password: &str| format!("postgresql://{user}:{password}@127.0.0.1:{port}/{db}");
    format!(
        "DB_HOST=127.0.0.1\nDB_PORT={port}\nPOSTGRES_ROOT_USER=postgres\nPOSTGRES_ROOT_PASSWORD='{}'\nPG_TIMEOUT=10\n\
         APP_DB_NAME={db}\nAPP_DB_USER=app_user\nAPP_DB_PASSWORD={runtime_password}\nAPP_DB_SERVICE_USER=app_service\n\
         APP_DB_SERVICE_PASSWORD=service_password\nAPP_DB_MIGRATOR_USER=app_migrator\n\
         APP_DB_MIGRATOR_PASSWORD=migrator_password\nDATABASE_URL='{}'\nDATABASE_SERVICE_URL='{}'\n\
         DATABASE_MIGRATOR_URL='{}'\n",
        cluster.password(),
        dsn("app_user", runtime_password),
        dsn("app_service", "service_password"),
        dsn("app_migrator", "migrator_password"),
    )
}

/// Writes `envs/<name>.env` for each `(name, text)` and a targets file
/// naming them in order; returns the targets file.
fn write_fleet(project: &Project, envs: &[(&str, String)]) -> PathBuf {
    std::fs::create_dir_all(project.path("envs")).unwrap();
    let mut targets = String::from("# the fleet\n");
    for (name, text) in envs {
        std::fs::write(project.path(&format!("envs/{name}.env")), text).unwrap();
        targets.push_str(&format!("\n[[target]]\nname = \"{name}\"\nenv_file = \"envs/{name}.env\"\n"));
    }
    let path = project.path("targets.toml");
    std::fs::write(&path, targets).unwrap();
    path
}

fn fleet(project: &Project, command: &str, targets: &Path, extra: &[&str]) -> Output {
    let mut args = vec![command, "--targets", targets.to_str().unwrap()];
    args.extend(extra);
    project.xtask(&args)
}

/// The JSON objects of `--json`, by target name.
fn objects(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn result_of<'a>(objects: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    objects.iter().find(|o| o["target"] == name).unwrap_or_else(|| panic!("no object for `{name}`"))
}

fn databases(cluster: &TestCluster) -> Vec<String> {
    let mut admin = postgres::Client::connect(&cluster.admin_url("postgres"), NoTls).unwrap();
    let rows = admin.query("SELECT datname::text FROM pg_database ORDER BY 1", &[]).unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[test]
fn a_fleet_on_two_clusters_runs_every_target_and_a_broken_one_fails_alone() {
    let (one, two) = (TestCluster::start().unwrap(), TestCluster::start().unwrap());
    let project = Project::new();
    let envs = [
        ("tenant-a", env_text(&one, "tenant_a", "password")),
        ("tenant-b", env_text(&one, "tenant_b", "password")),
        ("tenant-c", env_text(&two, "tenant_c", "password")),
        ("tenant-d", env_text(&two, "tenant_d", "password")),
        // Exists, but names no server: it fails, the others run.
        ("broken", "APP_DB_NAME=broken\n".to_string()),
    ];
    let targets = write_fleet(&project, &envs);
    let provisioned = fleet(&project, "db-provision", &targets, &["--json"]);
    assert_eq!(provisioned.status.code(), Some(1), "{}", text(&provisioned));
    let found = objects(&provisioned);
    assert_eq!(found.len(), 5, "{}", text(&provisioned));
    for name in ["tenant-a", "tenant-b", "tenant-c", "tenant-d"] {
        assert_eq!(result_of(&found, name)["result"], "ok", "{}", text(&provisioned));
    }
    assert_eq!(result_of(&found, "broken")["result"], "error");
    assert!(result_of(&found, "broken")["summary"].as_str().unwrap().contains("DB_HOST"), "{found:?}");
    assert!(text(&provisioned).contains("1 could not run"), "{}", text(&provisioned));
    // The roles (cluster-wide) changed once per server, never raced.
    for pair in [["tenant-a", "tenant-b"], ["tenant-c", "tenant-d"]] {
        let changed: Vec<&str> = pair
            .into_iter()
            .filter(|name| result_of(&found, name)["report"]["phases"]["roles"].as_u64().unwrap_or(0) > 0)
            .collect();
        assert_eq!(changed.len(), 1, "roles changed by {changed:?}: {found:?}");
    }
    assert!(databases(&one).contains(&"tenant_a".to_string()) && databases(&two).contains(&"tenant_d".to_string()));

    // Migrate and check the fleet without the broken target: every one holds.
    let good = write_fleet(&project, &envs[..4]);
    let migrated = fleet(&project, "db-migrate", &good, &["--parallel", "2"]);
    assert_eq!(migrated.status.code(), Some(0), "{}", text(&migrated));
    assert_eq!(text(&migrated).matches("applied 0000_init").count(), 8, "lines and table: {}", text(&migrated));
    let junit = project.path("fleet-junit.xml");
    let checked = fleet(&project, "db-check", &good, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    assert!(text(&checked).contains("4 ok, 0 found a problem, 0 could not run"), "{}", text(&checked));
    let xml = std::fs::read_to_string(&junit).unwrap();
    for secret in ["migrator_password", "service_password", ":password@", one.password(), two.password()] {
        assert!(!xml.contains(secret) && !text(&checked).contains(secret), "a password was printed");
        assert!(!text(&provisioned).contains(secret) && !text(&migrated).contains(secret), "a password was printed");
    }
    let document = roxmltree::Document::parse(&xml).unwrap();
    let suites: Vec<&str> =
        document.descendants().filter(|n| n.has_tag_name("testsuite")).filter_map(|n| n.attribute("name")).collect();
    assert_eq!(suites, ["tenant-a", "tenant-b", "tenant-c", "tenant-d"]);
    assert!(document.descendants().filter(|n| n.has_tag_name("testcase")).count() > 4 * 20);

    // A violated model in one database: that target finds a problem, exit 2.
    let mut admin = postgres::Client::connect(&two.admin_url("tenant_c"), NoTls).unwrap();
    admin.batch_execute("GRANT CREATE ON SCHEMA public TO app_user").unwrap();
    let checked = fleet(&project, "db-check", &good, &["--json"]);
    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked));
    let found = objects(&checked);
    assert_eq!(result_of(&found, "tenant-c")["result"], "problem");
    assert_eq!(result_of(&found, "tenant-c")["report"]["holds"], false, "{found:?}");
    for name in ["tenant-a", "tenant-b", "tenant-d"] {
        assert_eq!(result_of(&found, name)["result"], "ok");
    }
    let status = fleet(&project, "db-status", &good, &[]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert_eq!(text(&status).matches("9 applied, 0 pending").count(), 8, "{}", text(&status));
}

#[test]
fn bad_input_stops_the_fleet_before_any_target_runs() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::new();
    let before = databases(&cluster);
    let refused = |targets: &Path, vars: &[(&str, &str)], says: &[&str]| {
        let mut args = vec!["db-provision", "--targets", targets.to_str().unwrap()];
        args.push("--parallel");
        args.push("2");
        let output = project.xtask_with(&args, vars);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        for said in says {
            assert!(text(&output).contains(said), "should say `{said}`: {}", text(&output));
        }
        assert_eq!(databases(&cluster), before, "a target ran: {}", text(&output));
    };
    // Two targets naming one database (one through its DSNs only).
    let dsn_only: String = env_text(&cluster, "one", "password")
        .lines()
        .filter(|l| l.starts_with("DATABASE_") || l.starts_with("APP_DB_MIGRATOR"))
        .map(|l| format!("{l}\n"))
        .collect();
    let same = write_fleet(&project, &[("first", env_text(&cluster, "one", "password")), ("second", dsn_only)]);
    refused(&same, &[], &["targets.toml` line 8", "`first` (line 4)", "both name database"]);
    // Two targets on one server giving app_user two passwords.
    let passwords = write_fleet(
        &project,
        &[("first", env_text(&cluster, "one", "password")), ("second", env_text(&cluster, "two", "other"))],
    );
    refused(&passwords, &[], &["role `app_user`", "target `second` (line 8)"]);
    let good = write_fleet(&project, &[("first", env_text(&cluster, "one", "password"))]);
    // A missing env file, a name used twice, TOML that does not parse, an unknown canary.
    let file = project.path("bad.toml");
    std::fs::write(&file, "[[target]]\nname = \"a\"\nenv_file = \"envs/none.env\"\n").unwrap();
    refused(&file, &[], &["bad.toml` line 3", "does not exist"]);
    std::fs::write(
        &file,
        "[[target]]\nname = \"first\"\nenv_file = \"envs/first.env\"\n[[target]]\nname = \"first\"\n\
                           env_file = \"envs/first.env\"\n",
    )
    .unwrap();
    refused(&file, &[], &["bad.toml` line 5", "used twice"]);
    std::fs::write(&file, "[[target]\nname = \"a\"\n").unwrap();
    refused(&file, &[], &["bad.toml` line 1"]);
    let output = project.xtask(&["db-check", "--targets", good.to_str().unwrap(), "--canary", "nobody"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("--canary `nobody`: no target of that name"), "{}", text(&output));
    // A contract variable in the process environment would give every
    // target one value: it is not read, and said so.
    let output = project.xtask_with(&["db-status", "--targets", good.to_str().unwrap()], &[("APP_DB_NAME", "other")]);
    assert!(text(&output).contains("APP_DB_NAME is set in the process environment and not used"), "{}", text(&output));
    assert!(text(&output).contains("0 ok, 0 found a problem, 1 could not run"), "{}", text(&output));
}

#[test]
fn a_failing_canary_stops_the_rest_before_they_start() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::new();
    let targets = write_fleet(
        &project,
        &[
            ("first", env_text(&cluster, "first_db", "password")),
            // The canary: its admin password is wrong.
            ("canary", env_text(&cluster, "canary_db", "password").replace(cluster.password(), "wrong")),
            ("last", env_text(&cluster, "last_db", "password")),
        ],
    );
    let output = fleet(&project, "db-provision", &targets, &["--canary", "canary"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("canary `canary` did not pass"), "{}", text(&output));
    assert!(text(&output).contains("0 ok, 0 found a problem, 1 could not run, 2 not run"), "{}", text(&output));
    let databases = databases(&cluster);
    assert!(!databases.iter().any(|d| d == "first_db" || d == "last_db"), "{databases:?}");
    // A passing canary lets the rest run.
    let output = fleet(&project, "db-provision", &targets, &["--canary", "first"]);
    assert!(text(&output).contains("2 ok, 0 found a problem, 1 could not run, 0 not run"), "{}", text(&output));
}

#[test]
fn ctrl_c_starts_no_new_target_and_reports_what_was_done() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::new();
    let names = ["first", "second", "third"];
    let envs: Vec<(&str, String)> =
        names.iter().map(|n| (*n, env_text(&cluster, &format!("{n}_db"), "password"))).collect();
    let targets = write_fleet(&project, &envs);
    // Another run holds the first database's provisioning lock: the first
    // target waits for it.
    let mut holder = postgres::Client::connect(&cluster.admin_url("postgres"), NoTls).unwrap();
    holder.query_one("SELECT pg_advisory_lock($1)", &[&roles::apply::database_lock_key("first_db")]).unwrap();
    let child = std::process::Command::new(crate::common::XTASK)
        .args(["db-provision", "--parallel", "1", "--targets", targets.to_str().unwrap()])
        .current_dir(project.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let waiting: bool = holder
            .query_one("SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)", &[])
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the first target never waited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    holder.batch_execute("SELECT pg_advisory_unlock_all()").unwrap();
    let output = child.wait_with_output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("interrupted: no new target starts"), "{said}");
    // The running target stopped before its first transaction; the others never started.
    assert!(said.contains("interrupted before phase"), "{said}");
    assert!(said.contains("0 ok, 0 found a problem, 1 could not run, 2 not run (interrupted)"), "{said}");
    let databases = databases(&cluster);
    assert!(!databases.iter().any(|d| d.ends_with("_db")), "{databases:?}");
    // Nothing is left half-done: the next run provisions them all.
    let again = fleet(&project, "db-provision", &targets, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}
