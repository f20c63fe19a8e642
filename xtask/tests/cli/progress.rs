//! Progress shaped for a log (the tests' stderr is not a terminal): a start
//! line, a line every few seconds at most, a summary; and a missing local
//! server is named at once, not after PG_TIMEOUT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use pgcluster::TestCluster;

use crate::common::{text, Project, CONTRACT, XTASK};

#[test]
fn a_missing_local_server_is_named_at_once_and_the_wait_is_not_a_line_a_second() {
    let project = Project::new();
    let text_env =
        std::fs::read_to_string(project.path(".env.local.example")).unwrap().replace("PG_TIMEOUT=120", "PG_TIMEOUT=7");
    std::fs::write(project.path(".env.local"), text_env).unwrap();
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    let mut child = command
        .args(["db-provision", "--env-file", &project.env_local()])
        .current_dir(project.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Said while the tool still waits out PG_TIMEOUT, not after it.
    assert!(child.try_wait().unwrap().is_none(), "the first line came only at the end: {first}");
    assert!(
        first.starts_with(&format!(
            "no PostgreSQL server is running on localhost:{} (nothing listens there)",
            project.port
        )),
        "{first}"
    );
    assert!(first.contains("cargo xtask db-up"), "{first}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{first}\n{}", rest.join("\n"));
    let waits = rest.iter().filter(|l| l.contains("still waiting")).count();
    // 7 s of waiting: the start line and one line per 5 s, not one a second.
    assert!(waits <= 2, "{}", rest.join("\n"));
    assert!(rest[0].starts_with("waiting for PostgreSQL on localhost:"), "{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("did not accept connections within 7 s (PG_TIMEOUT)")),
        "{}",
        rest.join("\n")
    );
}

#[test]
fn many_migrations_print_a_start_line_and_a_summary_not_a_line_each() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, "progress_db");
    assert!(project.run(&["db-provision"]).status.success());
    let folder = project.path("many");
    std::fs::create_dir_all(folder.join("meta")).unwrap();
    let count = 120;
    let entries: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let tag = format!("{i:04}_table_{i}");
            std::fs::write(folder.join(format!("{tag}.sql")), format!("CREATE TABLE t_{i} (id int PRIMARY KEY);\n")).unwrap();
            serde_json::json!({"idx": i, "version": "7", "when": 1_700_000_000_000u64 + i as u64, "tag": tag, "breakpoints": true})
        })
        .collect();
    let journal = serde_json::json!({"version": "7", "dialect": "postgresql", "entries": entries});
    std::fs::write(folder.join("meta/_journal.json"), journal.to_string()).unwrap();

    let output = project.run(&["db-migrate", "--migrations-dir", &folder.display().to_string()]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("applying migrations: {count} to do")), "{stderr}");
    assert!(!stderr.contains("0007_table_7"), "no line per migration: {stderr}");
    assert!(stderr.lines().count() < 10, "{stderr}");
    assert!(log.contains(&format!("applied {count} migrations")), "{log}");
}

#[test]
fn on_a_terminal_the_wait_is_one_live_line() {
    if !crate::common::have_tool("script", &["--version"]) {
        return;
    }
    let project = Project::new();
    let env =
        std::fs::read_to_string(project.path(".env.local.example")).unwrap().replace("PG_TIMEOUT=120", "PG_TIMEOUT=7");
    std::fs::write(project.path(".env.local"), env).unwrap();
    // `script` runs the command on a pseudo-terminal and copies what it drew.
    let mut command = Command::new("script");
    for key in CONTRACT {
        command.env_remove(key);
    }
    let line = format!("{XTASK} db-provision --env-file {}", project.env_local());
    let output = command.args(["-qec", &line, "/dev/null"]).current_dir(project.dir.path()).output().unwrap();
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{drawn}");
    assert!(drawn.contains("no PostgreSQL server is running on localhost:"), "{drawn}");
    // A live line redrawn in place (escape sequences), not log lines (which
    // would print "still waiting" at 5 s of the 7).
    assert!(drawn.contains("waiting for PostgreSQL on localhost:"), "{drawn}");
    assert!(drawn.contains("\u{1b}["), "no terminal drawing: {drawn:?}");
    assert!(!drawn.contains("still waiting"), "log lines on a terminal: {drawn}");
}

/// The libraries' query and stage times reach stderr only when asked for:
/// `XTASK_TRACE_QUERIES=1` for all of them, `RUST_LOG` to choose.
#[test]
fn catalog_query_times_are_printed_only_when_asked_for() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, "trace_db");
    let provision = |env: &[(&str, &str)]| {
        let mut command = Command::new(XTASK);
        for key in CONTRACT.iter().chain(&["RUST_LOG", "XTASK_TRACE_QUERIES"]) {
            command.env_remove(key);
        }
        let output = command
            .envs(env.iter().copied())
            .args(["db-provision", "--env-file", &project.env_local()])
            .current_dir(project.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let query_line = |stderr: &str| stderr.lines().any(|l| l.contains(" rows  SELECT"));
    let stage_line = |stderr: &str| stderr.lines().any(|l| l.contains("until plan done"));
    let quiet = provision(&[]);
    assert!(!query_line(&quiet) && !stage_line(&quiet), "{quiet}");
    let everything = provision(&[("XTASK_TRACE_QUERIES", "1")]);
    assert!(query_line(&everything) && stage_line(&everything), "{everything}");
    let stages = provision(&[("RUST_LOG", "roles::stage=debug")]);
    assert!(!query_line(&stages) && stage_line(&stages), "{stages}");
}
