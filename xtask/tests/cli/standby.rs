//! `db-check` against a real hot standby (`pg_basebackup -R` of a throwaway
//! cluster): the catalog audit runs, a read-only refusal (25006) is never a
//! denial, and the live write probes are marked not provable there.

use std::time::{Duration, Instant};

use pgcluster::TestCluster;
use postgres::NoTls;

use crate::common::{text, Project};

/// Waits until the standby has replayed everything the primary wrote so far.
fn caught_up(primary: &TestCluster, standby: &TestCluster) {
    let mut p = postgres::Client::connect(&primary.admin_url("postgres"), NoTls).unwrap();
    let target: String = p.query_one("SELECT pg_current_wal_lsn()::text", &[]).unwrap().get(0);
    let mut s = postgres::Client::connect(&standby.admin_url("postgres"), NoTls).unwrap();
    let started = Instant::now();
    loop {
        let done: bool = s.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target]).unwrap().get(0);
        if done {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the standby never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A provisioned and migrated database `db` on a throwaway primary, a
/// standby of it caught up, and a project for each.
fn replicated(db: &str) -> (TestCluster, Project, TestCluster, Project) {
    let primary = TestCluster::start().unwrap();
    let project = Project::for_cluster(&primary, db);
    assert!(project.run(&["db-provision"]).status.success());
    assert!(project.run(&["db-migrate"]).status.success());
    let standby = primary.standby().unwrap();
    caught_up(&primary, &standby);
    let replica = Project::for_cluster(&standby, db);
    (primary, project, standby, replica)
}

#[test]
fn db_check_on_a_hot_standby_audits_the_catalogs_and_never_counts_read_only_as_denied() {
    let (primary, _project, standby, replica) = replicated("replicated");

    let output = replica.run(&["db-check", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["holds"], true);
    let notes = report["notes"].to_string();
    assert!(notes.contains("hot standby") && notes.contains("replayed"), "{notes}");
    let probes = report["probes"].as_array().unwrap();
    let read_only: Vec<&serde_json::Value> =
        probes.iter().filter(|p| p["observed"].as_str().unwrap_or("").contains("25006")).collect();
    assert!(!read_only.is_empty(), "no probe met the standby's read-only refusal: {probes:?}");
    for probe in read_only {
        assert_eq!(probe["verdict"], "unproven", "a read-only refusal counted: {probe}");
    }
    let create = probes.iter().find(|p| p["id"] == "create-table").expect("the create-table probe");
    assert_eq!(create["verdict"], "unproven", "{create}");

    // A violation made on the primary is found on the standby once replayed.
    let mut admin = postgres::Client::connect(&primary.admin_url("replicated"), NoTls).unwrap();
    admin.batch_execute("GRANT CREATE ON SCHEMA public TO app_user").unwrap();
    caught_up(&primary, &standby);
    let output = replica.run(&["db-check"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("hot standby"), "{}", text(&output));
}

/// The `primary-catalogs` check of a report, as JSON.
fn primary_catalogs(output: &std::process::Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    check_of(&report).unwrap_or_else(|| panic!("no primary-catalogs check: {}", text(output)))
}

/// The `primary-catalogs` check of a report's JSON, when it has one.
fn check_of(report: &serde_json::Value) -> Option<serde_json::Value> {
    report["catalog"].as_array()?.iter().find(|c| c["id"] == "primary-catalogs").cloned()
}

#[test]
fn primary_env_fails_a_standby_whose_audited_catalogs_are_not_the_primarys() {
    let (primary, project, standby, replica) = replicated("compared");
    let primary_env = project.env_local();

    // Replaying: the catalogs are the primary's, and the report says so.
    let output = replica.run(&["db-check", "--json", "--primary-env", &primary_env]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let check = primary_catalogs(&output);
    assert_eq!(check["verdict"], "pass", "{check}");
    assert!(check["checked"].as_u64().unwrap() >= 39, "{check}");
    assert!(text(&output).contains("are the primary's now"), "{}", text(&output));

    // Replay paused, a violation on the primary: the standby alone still
    // says it holds (what it has replayed does); compared, it fails.
    let mut on_standby = postgres::Client::connect(&standby.admin_url("postgres"), NoTls).unwrap();
    on_standby.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
    let mut admin = postgres::Client::connect(&primary.admin_url("compared"), NoTls).unwrap();
    admin.batch_execute("GRANT CREATE ON SCHEMA public TO app_user").unwrap();
    let alone = replica.run(&["db-check"]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone));
    let output = replica.run(&["db-check", "--json", "--primary-env", &primary_env]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let check = primary_catalogs(&output);
    assert_eq!(check["verdict"], "FAIL", "{check}");
    let findings = check["findings"].to_string();
    assert!(findings.contains("pg_namespace") && findings.contains("beyond the replay lag"), "{findings}");
    assert!(findings.contains("had not replayed"), "{findings}");

    // Misuse stops (exit 1): against the primary, and a primary env that
    // reaches the standby.
    let output = project.run(&["db-check", "--primary-env", &primary_env]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("reaches a primary"), "{}", text(&output));
    let output = replica.run(&["db-check", "--primary-env", &replica.env_local()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("reaches a standby too"), "{}", text(&output));

    // Replay resumed: the catalogs agree again, and the audit finds the violation.
    on_standby.batch_execute("SELECT pg_wal_replay_resume()").unwrap();
    let output = replica.run(&["db-check", "--json", "--primary-env", &primary_env]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(primary_catalogs(&output)["verdict"], "pass", "{}", text(&output));

    // A change undone on the primary is still a difference: the rows it
    // rewrote are new row versions, whatever their columns say.
    on_standby.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
    admin
        .batch_execute("REVOKE CREATE ON SCHEMA public FROM app_user; GRANT CREATE ON SCHEMA public TO app_user")
        .unwrap();
    let output = replica.run(&["db-check", "--json", "--primary-env", &primary_env]);
    let check = primary_catalogs(&output);
    assert_eq!(check["verdict"], "FAIL", "{check}");
    assert!(check["findings"].to_string().contains("pg_namespace"), "{check}");
    on_standby.batch_execute("SELECT pg_wal_replay_resume()").unwrap();
}

/// The `primary-catalogs` verdict of target `name` in a fleet's `--json` lines.
fn fleet_primary_catalogs(output: &std::process::Output, name: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let object: serde_json::Value = stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|o| o["target"] == name)
        .unwrap_or_else(|| panic!("no object for `{name}`: {}", text(output)));
    assert!(object["report"]["catalog"].is_array(), "{object}");
    check_of(&object["report"]).map(|c| c["verdict"].clone()).unwrap_or_default()
}

#[test]
fn a_targets_file_gives_a_standby_its_primary() {
    let (primary, project, standby, replica) = replicated("fleet_compared");
    let targets = project.path("targets.toml");
    let write = |primary_env: &str| {
        let text = format!(
            "[[target]]\nname = \"primary\"\nenv_file = \"{}\"\n\n[[target]]\nname = \"replica\"\nenv_file = \"{}\"\n\
             primary_env = \"{primary_env}\"\n",
            project.env_local(),
            replica.env_local()
        );
        std::fs::write(&targets, text).unwrap();
    };
    let check = || project.xtask(&["db-check", "--targets", targets.to_str().unwrap(), "--json"]);
    write(&project.env_local());
    let output = check();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(fleet_primary_catalogs(&output, "replica"), "pass");
    assert_eq!(fleet_primary_catalogs(&output, "primary"), serde_json::Value::Null, "compared only where asked");

    // Replay paused, a change the audit does not judge (a comment) on the
    // primary: the primary holds, its replica differs from it.
    let mut on_standby = postgres::Client::connect(&standby.admin_url("postgres"), NoTls).unwrap();
    on_standby.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
    let mut admin = postgres::Client::connect(&primary.admin_url("fleet_compared"), NoTls).unwrap();
    admin.batch_execute("COMMENT ON SCHEMA public IS 'changed on the primary'").unwrap();
    let output = check();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(fleet_primary_catalogs(&output, "replica"), "FAIL", "{}", text(&output));
    on_standby.batch_execute("SELECT pg_wal_replay_resume()").unwrap();

    // A primary env file that is not there: refused with the file and the
    // line, before any target runs.
    write("missing.env");
    let output = check();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("line 8") && said.contains("primary env file") && said.contains("missing.env"), "{said}");
    assert!(!said.contains("holds"), "a target ran: {said}");
    // One that is there but no env file a check could read: refused too,
    // before any target runs.
    std::fs::write(project.path("broken.env"), "DATABASE_URL=\"not a url\"\n").unwrap();
    write("broken.env");
    let output = check();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("target `replica` (line 6)") && said.contains("broken.env"), "{said}");
    assert!(!said.contains("holds"), "a target ran: {said}");
}
