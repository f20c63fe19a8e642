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

    // JUnit and TAP beside the text: one case per check and per probe and role.
    let (junit, tap) = (project.path("reports/db-check.xml"), project.path("reports/db-check.tap"));
    std::fs::create_dir_all(project.path("reports")).unwrap();
    let both = project.run(&["db-check", "--junit", &junit.display().to_string(), "--tap", &tap.display().to_string()]);
    assert_eq!(both.status.code(), Some(0), "{}", text(&both));
    assert!(text(&both).contains("the model holds"), "the text is still printed: {}", text(&both));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let suites = document.root_element();
    assert_eq!(suites.attribute("failures"), Some("0"), "{xml}");
    let cases = suites.descendants().filter(|n| n.has_tag_name("testcase")).count();
    assert!(cases > 40, "{cases} test cases: {xml}");
    assert_eq!(suites.attribute("tests"), Some(cases.to_string().as_str()));
    let tap_text = std::fs::read_to_string(&tap).unwrap();
    assert!(tap_text.starts_with(&format!("TAP version 13\n1..{cases}\n")), "{tap_text}");
    assert!(!tap_text.contains("not ok"), "{tap_text}");

    Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .batch_execute("GRANT CREATE ON SCHEMA public TO app_user")
        .unwrap();
    let violated = project.run(&["db-check", "--json"]);
    assert_eq!(violated.status.code(), Some(2), "{}", text(&violated));
    let json: serde_json::Value = serde_json::from_slice(&violated.stdout).unwrap();
    assert_eq!(json["holds"], false);
    assert!(json["failures"].as_array().unwrap().iter().any(|f| f["where"] == "catalog schema-acl"), "{json}");

    let violated = project.run(&["db-check", "--junit", &junit.display().to_string(), "--tap"]);
    assert_eq!(violated.status.code(), Some(2), "{}", text(&violated));
    let stdout = String::from_utf8(violated.stdout).unwrap();
    assert!(stdout.starts_with("TAP version 13\n"), "--tap alone prints TAP: {stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("not ok ") && l.contains("schema-acl")), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let failing: Vec<&str> = document
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && n.children().any(|c| c.has_tag_name("failure")))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert!(failing.iter().any(|name| name.starts_with("schema-acl")), "{failing:?}");

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
