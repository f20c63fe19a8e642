//! Faults: processes killed at random points, the server stopped mid-run,
//! concurrent runs, connections that fail every way they can.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgcluster::TestCluster;
use postgres::{Client, NoTls};

use crate::common::{children_of, have_tool, text, Project, CONTRACT, XTASK};

const DB: &str = "cogni_template_test";

/// A small deterministic generator, seeded from the clock and printed, so a
/// failing trial can be replayed.
struct Random(u64);

impl Random {
    fn from_clock() -> Random {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        eprintln!("random seed {seed}");
        Random(seed | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn spawn(project: &Project, args: &[&str]) -> Child {
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    let env_file = project.env_local();
    command.args(args).args(["--env-file", &env_file]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn admin(cluster: &TestCluster) -> Client {
    Client::connect(&cluster.admin_url(DB), NoTls).unwrap()
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for its reaper is dead.
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

/// Appends `count` migrations to `dir` (creating it): each logs its tag in
/// `applied_log` and takes a little while, so kills land inside them.
fn append_migrations(dir: &std::path::Path, first: usize, count: usize) {
    std::fs::create_dir_all(dir.join("meta")).unwrap();
    let journal_path = dir.join("meta/_journal.json");
    let mut entries: Vec<String> = match std::fs::read_to_string(&journal_path) {
        Ok(text) => {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            value["entries"].as_array().unwrap().iter().map(|e| e.to_string()).collect()
        }
        Err(_) => Vec::new(),
    };
    for n in first..first + count {
        let tag = format!("{n:04}_step");
        let sql = if n == 0 {
            "CREATE TABLE applied_log (tag text PRIMARY KEY);\n--> statement-breakpoint\nINSERT INTO applied_log VALUES ('0000_step');".to_string()
        } else {
            format!("INSERT INTO applied_log VALUES ('{tag}');\n--> statement-breakpoint\nSELECT pg_sleep(0.05);")
        };
        std::fs::write(dir.join(format!("{tag}.sql")), sql).unwrap();
        entries.push(format!(
            "{{\"idx\":{n},\"version\":\"7\",\"when\":{},\"tag\":\"{tag}\",\"breakpoints\":true}}",
            1000 + n
        ));
    }
    std::fs::write(
        journal_path,
        format!("{{\"version\":\"7\",\"dialect\":\"postgresql\",\"entries\":[{}]}}", entries.join(",")),
    )
    .unwrap();
}

/// Bookkeeping rows and logged migrations agree: never a partial migration.
fn consistent(cluster: &TestCluster) -> (i64, i64) {
    let row = admin(cluster)
        .query_one(
            "SELECT (SELECT count(*) FROM drizzle.__drizzle_migrations), \
                    (SELECT count(*) FROM applied_log WHERE to_regclass('applied_log') IS NOT NULL)",
            &[],
        )
        .or_else(|_| {
            admin(cluster)
                .query_one("SELECT coalesce((SELECT count(*) FROM drizzle.__drizzle_migrations), 0), 0::int8", &[])
        })
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn db_migrate_killed_at_random_points_with_both_engines() {
    let node = have_tool("node", &["--version"]);
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    assert!(project.run(&["db-provision"]).status.success());
    let dir = project.path("steps");
    append_migrations(&dir, 0, 1);
    let dir_arg = dir.display().to_string();
    assert!(project.run(&["db-migrate", "--migrations-dir", &dir_arg]).status.success());
    let mut random = Random::from_clock();
    let mut next = 1;
    for trial in 0..12 {
        let engine = if node && trial % 2 == 1 { "drizzle-kit" } else { "builtin" };
        append_migrations(&dir, next, 4);
        next += 4;
        let before = consistent(&cluster);
        let mut tool =
            spawn(&project, &["db-migrate", "--engine", engine, "--migrations-dir", &dir_arg, "--lock-wait", "30"]);
        std::thread::sleep(Duration::from_millis(random.below(900)));
        let children = children_of(tool.id());
        tool.kill().unwrap();
        tool.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &children {
            while !gone(*child) {
                assert!(Instant::now() < deadline, "trial {trial} ({engine}): child {child} outlived the tool");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let (rows, logged) = consistent(&cluster);
        assert_eq!(rows, logged, "trial {trial} ({engine}): bookkeeping and applied SQL disagree");
        assert!(
            rows == before.0 || rows == before.0 + 4,
            "trial {trial} ({engine}): a partial batch ({} → {rows})",
            before.0
        );
        // A re-run converges.
        let rerun = project.run(&["db-migrate", "--migrations-dir", &dir_arg, "--lock-wait", "30"]);
        assert!(rerun.status.success(), "trial {trial}: {}", text(&rerun));
        let (rows, logged) = consistent(&cluster);
        assert_eq!((rows, logged), (next as i64, next as i64), "trial {trial}");
    }
}

#[test]
fn the_server_stopped_mid_migration() {
    let mut cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    assert!(project.run(&["db-provision"]).status.success());
    let dir = project.path("slow");
    append_migrations(&dir, 0, 1);
    std::fs::write(dir.join("0001_step.sql"), "INSERT INTO applied_log VALUES ('0001_step');\nSELECT pg_sleep(5);")
        .unwrap();
    let journal = std::fs::read_to_string(dir.join("meta/_journal.json"))
        .unwrap()
        .replace("}]}", "},{\"idx\":1,\"version\":\"7\",\"when\":1001,\"tag\":\"0001_step\",\"breakpoints\":true}]}");
    std::fs::write(dir.join("meta/_journal.json"), journal).unwrap();
    let dir_arg = dir.display().to_string();
    let tool = spawn(&project, &["db-migrate", "--migrations-dir", &dir_arg]);
    // Wait until the slow statement runs, then stop the server under it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running: bool = admin(&cluster)
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid())", &[])
            .unwrap()
            .get(0);
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "the migration never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.crash();
    let output = tool.wait_with_output().unwrap();
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("migration `0001_step`"), "the error names the migration: {log}");
    assert!(log.contains("the whole batch was rolled back"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    cluster.restart().unwrap();
    assert_eq!(consistent(&cluster), (0, 0), "nothing half-done");
    std::fs::write(dir.join("0001_step.sql"), "INSERT INTO applied_log VALUES ('0001_step');").unwrap();
    let rerun = project.run(&["db-migrate", "--migrations-dir", &dir_arg]);
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(consistent(&cluster), (2, 2));
}

#[test]
fn four_provisioning_runs_at_once_all_succeed() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    let runs: Vec<Child> = (0..4).map(|_| spawn(&project, &["db-provision"])).collect();
    let outputs: Vec<Output> = runs.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", text(output));
    }
    let worked = outputs.iter().filter(|o| text(o).contains("provisioned `cogni_template_test`")).count();
    assert_eq!(worked, 1, "one run did the work, the others found nothing to change");
    let check = project.run(&["db-check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
}

#[test]
fn a_conversion_killed_at_random_points_keeps_the_app_working() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    let mut root = Client::connect(&cluster.admin_url("postgres"), NoTls).unwrap();
    root.batch_execute(
        "CREATE ROLE app_user LOGIN PASSWORD 'password'; CREATE ROLE app_service LOGIN BYPASSRLS PASSWORD 'service_password';",
    )
    .unwrap();
    root.batch_execute(&format!("CREATE DATABASE {DB} OWNER app_user")).unwrap();
    admin(&cluster).batch_execute("ALTER SCHEMA public OWNER TO app_user").unwrap();
    let mut app =
        Client::connect(&format!("postgresql://app_user:password@127.0.0.1:{}/{DB}", cluster.port()), NoTls).unwrap();
    let mut ddl = String::new();
    for i in 0..300 {
        ddl.push_str(&format!(
            "CREATE TABLE t{i} (id serial PRIMARY KEY, note text); INSERT INTO t{i} (note) VALUES ('x');"
        ));
    }
    app.batch_execute(&ddl).unwrap();
    drop(app);
    let app_works = |when: &str| {
        let mut app =
            Client::connect(&format!("postgresql://app_user:password@127.0.0.1:{}/{DB}", cluster.port()), NoTls)
                .unwrap();
        for table in ["t0", "t150", "t299"] {
            app.batch_execute(&format!(
                "BEGIN; INSERT INTO {table} (note) VALUES ('y'); SELECT count(*) FROM {table}; ROLLBACK;"
            ))
            .unwrap_or_else(|e| panic!("{when}: the app cannot use {table}: {e}"));
        }
    };
    let mut random = Random::from_clock();
    for trial in 0..6 {
        // app_service exists and has nothing on the legacy tables: the
        // conversion widens its access, accepted here.
        let tool = spawn(&project, &["db-provision", "--lock-budget", "20", "--allow-widening"]);
        std::thread::sleep(Duration::from_millis(100 + random.below(700)));
        let mut tool = tool;
        tool.kill().unwrap();
        tool.wait().unwrap();
        app_works(&format!("after kill {trial}"));
    }
    let finish = project.run(&["db-provision", "--lock-budget", "20", "--allow-widening"]);
    assert!(finish.status.success(), "{}", text(&finish));
    app_works("after the conversion");
    let owned: i64 = admin(&cluster)
        .query_one("SELECT count(*) FROM pg_class WHERE relowner = 'app_user'::regrole", &[])
        .unwrap()
        .get(0);
    assert_eq!(owned, 0);
    let again = project.run(&["db-provision"]);
    assert!(text(&again).contains("nothing to change"), "{}", text(&again));
}

#[test]
fn connection_failures_are_clear_and_bounded() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    assert!(project.run(&["db-provision"]).status.success());
    let run = |args: &[&str], env: &[(&str, String)]| {
        let mut command = Command::new(XTASK);
        for key in CONTRACT {
            command.env_remove(key);
        }
        let env_file = project.env_local();
        command.args(args).args(["--env-file", &env_file]);
        for (key, value) in env {
            command.env(key, value);
        }
        let started = Instant::now();
        let output = command.output().unwrap();
        (output, started.elapsed())
    };
    let free = pgcluster::free_port().unwrap().to_string();
    // A server that accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _keep: std::thread::JoinHandle<()> = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let migrator = |port: &str, db: &str, tail: &str| {
        format!("postgresql://app_migrator:migrator_password@127.0.0.1:{port}/{db}{tail}")
    };
    let port = cluster.port().to_string();
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "connection refused",
            vec!["db-provision"],
            vec![
                ("DB_PORT", free.clone()),
                ("PG_TIMEOUT", "2".into()),
                ("DATABASE_URL", format!("postgresql://app_user:password@127.0.0.1:{free}/{DB}")),
                ("DATABASE_SERVICE_URL", format!("postgresql://app_service:service_password@127.0.0.1:{free}/{DB}")),
                ("DATABASE_MIGRATOR_URL", migrator(&free, DB, "")),
            ],
            "did not accept connections within 2 s",
        ),
        (
            "wrong password",
            vec!["db-provision"],
            vec![("POSTGRES_ROOT_PASSWORD", "wrong".into())],
            "the password for `postgres` is wrong",
        ),
        (
            "unknown database",
            vec!["db-migrate"],
            vec![("APP_DB_NAME", "nope".into()), ("DATABASE_MIGRATOR_URL", migrator(&port, "nope", ""))],
            "database `nope` does not exist",
        ),
        (
            "a server that never answers",
            vec!["db-migrate"],
            vec![
                ("DB_PORT", silent_port.to_string()),
                ("DATABASE_URL", format!("postgresql://app_user:password@127.0.0.1:{silent_port}/{DB}")),
                (
                    "DATABASE_SERVICE_URL",
                    format!("postgresql://app_service:service_password@127.0.0.1:{silent_port}/{DB}"),
                ),
                ("DATABASE_MIGRATOR_URL", migrator(&silent_port.to_string(), DB, "?connect_timeout=2")),
            ],
            "no answer within 2 s",
        ),
    ];
    for (case, args, env, expected) in cases {
        let (output, elapsed) = run(&args, &env);
        let log = text(&output);
        assert_eq!(output.status.code(), Some(1), "{case}: {log}");
        assert!(log.contains(expected), "{case}: {log}");
        assert!(!log.contains("migrator_password"), "{case}: {log}");
        // Not a speed target: the command must not hang past its timeout.
        assert!(elapsed < Duration::from_secs(30), "{case} took {elapsed:?}");
    }
}
