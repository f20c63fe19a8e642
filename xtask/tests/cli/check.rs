//! `db-check` through the binary: exit codes, JSON, Markdown and the job summary.

use pgcluster::TestCluster;
use postgres::{Client, NoTls};

use crate::common::{text, Project};

const DB: &str = "cogni_template_test";

#[test]
fn exit_codes_and_renderings() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    // Before provisioning, the check cannot run: exit 1.
    let early = project.run(&["db-check"]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(text(&early).contains("cannot connect"), "{}", text(&early));

    assert!(project.run(&["db-provision"]).status.success());
    assert!(project.run(&["db-migrate"]).status.success());
    let holds = project.run(&["db:check"]);
    assert_eq!(holds.status.code(), Some(0), "{}", text(&holds));
    assert!(text(&holds).contains("the model holds"));
    assert!(text(&holds).contains("EXEMPTIONS ("), "{}", text(&holds));
    assert!(text(&holds).contains("platform/db/rls-policy.toml)"), "the report names the file it read");
    // A policy file named on the command line must exist (exit 1), for both commands.
    for command in ["db-check", "db-provision"] {
        let missing = project.run(&[command, "--policy", "no-such-policy.toml"]);
        assert_eq!(missing.status.code(), Some(1), "{command}: {}", text(&missing));
        assert!(text(&missing).contains("no-such-policy.toml` does not exist"), "{command}: {}", text(&missing));
        let legacy_flag = project.run(&[command, "--exemptions", "no-such-policy.toml"]);
        assert_eq!(legacy_flag.status.code(), Some(1), "{command}: {}", text(&legacy_flag));
    }

    Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .batch_execute("GRANT CREATE ON SCHEMA public TO app_user")
        .unwrap();
    let violated = project.run(&["db-check", "--json"]);
    assert_eq!(violated.status.code(), Some(2), "{}", text(&violated));
    let json: serde_json::Value = serde_json::from_slice(&violated.stdout).unwrap();
    assert_eq!(json["holds"], false);
    assert!(json["failures"].as_array().unwrap().iter().any(|f| f["where"] == "catalog schema-acl"), "{json}");

    let summary = project.path("summary.md");
    let env_file = project.env_local();
    let output = std::process::Command::new(crate::common::XTASK)
        .args(["db-check", "--markdown", "--env-file", &env_file])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.contains("❌") && written.contains("| capability | expected | app_user | app_service |"),
        "{written}"
    );
    assert_eq!(written, String::from_utf8(output.stdout).unwrap());
}
