//! No secret in any error: every kind of malformed env-file line, placed
//! before and after a file full of distinct secrets, run through the
//! commands that read env files. Errors name the file, the line and the
//! variable, never a value.

use std::process::Command;

use crate::common::{text, CONTRACT, XTASK};

/// Every secret-bearing variable, each with a secret of its own.
const SECRETS: &[(&str, &str)] = &[
    ("POSTGRES_ROOT_PASSWORD", "root-Secret-1a"),
    ("APP_DB_PASSWORD", "runtime-Secret-2b"),
    ("APP_DB_SERVICE_PASSWORD", "service-Secret-3c"),
    ("APP_DB_MIGRATOR_PASSWORD", "migrator-Secret-4d"),
];

/// A valid env file whose every secret is distinct (passwords in the DSNs too).
fn secret_lines() -> Vec<String> {
    let mut lines = vec![
        "DB_HOST=localhost".to_string(),
        "DB_PORT=55999".to_string(),
        "POSTGRES_ROOT_USER=postgres".to_string(),
        "APP_DB_NAME=cogni_template_dev".to_string(),
        "APP_DB_USER=app_user".to_string(),
        "APP_DB_SERVICE_USER=app_service".to_string(),
        "APP_DB_MIGRATOR_USER=app_migrator".to_string(),
    ];
    for (key, value) in SECRETS {
        lines.push(format!("{key}='{value}'"));
    }
    let dsn = |user: &str, password: &str| format!("postgresql://{user}:{password}@localhost:55999/cogni_template_dev");
    lines.push(format!("DATABASE_URL=\"{}\"", dsn("app_user", SECRETS[1].1)));
    lines.push(format!("DATABASE_SERVICE_URL=\"{}\"", dsn("app_service", SECRETS[2].1)));
    lines.push(format!("DATABASE_MIGRATOR_URL=\"{}\"", dsn("app_migrator", SECRETS[3].1)));
    lines
}

/// Malformed lines, each as a user could write it by mistake, with the
/// variable the error must name (when the line names one).
const MALFORMED: &[(&str, &str, Option<&str>)] = &[
    ("a quote inside an unquoted value", "APP_DB_PASSWORD=pa\"ss-x9", Some("APP_DB_PASSWORD")),
    ("an unclosed double quote", "APP_DB_SCHEMAS=\"public", Some("APP_DB_SCHEMAS")),
    ("an unclosed single quote", "APP_DB_SCHEMAS='public", Some("APP_DB_SCHEMAS")),
    ("text after a closing quote", "APP_DB_SCHEMAS=\"public\" extra", Some("APP_DB_SCHEMAS")),
    ("a line that is not an assignment", "this line is not a variable", None),
    ("a key with a dash", "APP-DB-NAME=x", None),
    ("a lone export", "export", None),
    ("a key with a space", "APP DB=1", None),
    ("a bad escape in double quotes", "PG_TIMEOUT=\"12\\q\"", Some("PG_TIMEOUT")),
];

fn run(args: &[&str], env_file: &std::path::Path) -> std::process::Output {
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    command.args(args).arg("--env-file").arg(env_file).output().unwrap()
}

#[test]
fn malformed_env_files_never_print_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &["env", "--check"],
        &["db-provision", "--dry-run"],
        &["db-check"],
        &["db-status"],
        &["db-migrate", "--dry-run"],
    ];
    let mut parse_errors = 0;
    for (case, bad, variable) in MALFORMED {
        for at_start in [true, false] {
            let mut lines = secret_lines();
            if at_start {
                lines.insert(0, bad.to_string());
            } else {
                lines.insert(lines.len() / 2, bad.to_string());
            }
            let line_number = lines.iter().position(|l| l == bad).unwrap() + 1;
            let path = dir.path().join("production.env");
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            for args in commands {
                let output = run(args, &path);
                let log = text(&output);
                assert_ne!(output.status.code(), Some(0), "{case} ({args:?}) should fail: {log}");
                for (key, secret) in SECRETS {
                    assert!(!log.contains(secret), "{case} ({args:?}): the value of {key} leaked:\n{log}");
                }
                assert!(!log.contains("x9"), "{case} ({args:?}): part of a value leaked:\n{log}");
                if log.contains("cannot parse") {
                    parse_errors += 1;
                    assert!(log.contains("production.env"), "{case}: the file is named: {log}");
                    assert!(log.contains(&format!("line {line_number}")), "{case}: line {line_number}: {log}");
                    if let Some(variable) = variable {
                        assert!(log.contains(variable), "{case}: names {variable}: {log}");
                    }
                }
            }
        }
    }
    assert!(parse_errors >= 5 * commands.len(), "most malformed lines are parse errors ({parse_errors})");
}

#[test]
fn dollar_expansion_and_comment_stripping_are_named_as_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    for (line, cause) in [
        ("APP_DB_PASSWORD=pa$zq9x", "`$` in an unquoted value"),
        ("APP_DB_PASSWORD=\"pa$zq9x-end\"", "`$` in a double-quoted value"),
        ("APP_DB_PASSWORD=pass #zq9x", "` #` in an unquoted value starts a comment"),
    ] {
        let mut lines: Vec<String> =
            secret_lines().into_iter().filter(|l| !l.starts_with("APP_DB_PASSWORD=")).collect();
        lines.retain(|l| !l.starts_with("DATABASE_URL="));
        lines.push(line.to_string());
        let encoded = match line {
            _ if line.contains('#') => "pass%20%23zq9x",
            _ if line.contains("-end") => "pa%24zq9x-end",
            _ => "pa%24zq9x",
        };
        lines.push(format!("DATABASE_URL='postgresql://app_user:{encoded}@localhost:55999/cogni_template_dev'"));
        let path = dir.path().join(".env.production");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let output = run(&["db-provision", "--dry-run"], &path);
        let log = text(&output);
        assert_eq!(output.status.code(), Some(1), "{line}: {log}");
        assert!(log.contains("give different passwords"), "{line}: {log}");
        assert!(log.contains(cause), "{line}: the cause is named: {log}");
        assert!(log.contains("APP_DB_PASSWORD='…'"), "{line}: the fix is named: {log}");
        assert!(!log.contains("zq9x"), "{line}: no part of the password: {log}");
    }
}
