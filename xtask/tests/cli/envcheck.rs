//! `cargo xtask env` and `env --check` on the files an operator names: each
//! checked in the role it plays, created or completed alone.

use std::os::unix::fs::PermissionsExt;

use crate::common::{text, Project};

const RUNTIME: &str = "postgresql://app_user:pw-one@db.internal:5432/app?sslmode=verify-full";
const SERVICE: &str = "postgresql://app_service:pw-two@db.internal:5432/app?sslmode=verify-full";
const MIGRATOR: &str = "postgresql://app_migrator:pw-three@db.internal:5432/app?sslmode=verify-full";

#[test]
fn env_check_validates_exactly_the_production_file_named() {
    let project = Project::new();
    let etc = project.path("etc-app");
    std::fs::create_dir_all(&etc).unwrap();
    let production = etc.join("production.env");
    std::fs::write(&production, format!("DATABASE_URL='{RUNTIME}'\nDATABASE_SERVICE_URL='{SERVICE}'\n")).unwrap();
    let file = production.display().to_string();

    // No .env.local or .env.test anywhere near it, and none is asked for.
    let output = project.xtask(&["env", "--check", "--env-file", &file]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("runtime environment"), "{log}");
    assert!(!log.contains(".env.local"), "{log}");

    // The migrator's DSN in a runtime environment is a warning, not an error.
    std::fs::write(
        &production,
        format!("DATABASE_URL='{RUNTIME}'\nDATABASE_SERVICE_URL='{SERVICE}'\nDATABASE_MIGRATOR_URL='{MIGRATOR}'\n"),
    )
    .unwrap();
    let output = project.xtask(&["env", "--check", "--env-file", &file]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("warning:") && log.contains("migrator-absent-at-runtime"), "{log}");

    // One user for both roles, and no TLS to another host: exit 2, the file
    // and the rule named, no password shown.
    let plain = "postgresql://app_user:pw-one@db.internal:5432/app";
    std::fs::write(&production, format!("DATABASE_URL='{plain}'\nDATABASE_SERVICE_URL='{RUNTIME}'\n")).unwrap();
    let output = project.xtask(&["env", "--check", "--env-file", &file]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(log.contains(&format!("`{file}`: [distinct-users]")), "{log}");
    assert!(log.contains("[tls-off-host]"), "{log}");
    assert!(!log.contains("pw-one"), "a password leaked: {log}");

    // A file that is not there is named.
    let missing = etc.join("staging.env").display().to_string();
    let output = project.xtask(&["env", "--check", "--env-file", &missing]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(log.contains(&format!("`{missing}` does not exist")), "{log}");
}

#[test]
fn env_check_on_files_given_together_compares_their_passwords() {
    let project = Project::new();
    let runtime = project.path("runtime.env");
    let migrate = project.path("migrate.env");
    std::fs::write(&runtime, format!("DATABASE_URL='{RUNTIME}'\nDATABASE_SERVICE_URL='{SERVICE}'\n")).unwrap();
    std::fs::write(&migrate, format!("DATABASE_MIGRATOR_URL='{MIGRATOR}'\nAPP_DB_USER=app_user\n")).unwrap();
    let (a, b) = (runtime.display().to_string(), migrate.display().to_string());
    let output = project.xtask(&["env", "--check", "--env-file", &a, "--env-file", &b]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("migration environment"), "{log}");

    // The migration file also carries the runtime role, with another password.
    let other = "postgresql://app_user:pw-other@db.internal:5432/app?sslmode=verify-full";
    std::fs::write(
        &migrate,
        format!("DATABASE_MIGRATOR_URL='{MIGRATOR}'\nAPP_DB_PASSWORD=pw-other\nAPP_DB_USER=app_user\n"),
    )
    .unwrap();
    let output = project.xtask(&["env", "--check", "--env-file", &a, "--env-file", &b]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(log.contains("role `app_user`") && log.contains("different passwords"), "{log}");
    assert!(log.contains("APP_DB_PASSWORD is set in a migration environment"), "{log}");
    assert!(!log.contains("pw-other") && !log.contains("pw-one"), "a password leaked: {log}");
    let _ = other;
}

#[test]
fn env_with_a_named_file_creates_that_file_and_no_sibling() {
    let project = Project::new();
    let dir = project.path("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    let named = dir.join("dev.env");
    let output = project.xtask(&["env", "--env-file", &named.display().to_string()]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(named.exists(), "{log}");
    assert_eq!(std::fs::metadata(&named).unwrap().permissions().mode() & 0o777, 0o600);
    let siblings: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(siblings, ["dev.env"], "{log}");
    // A second run completes nothing and still touches nothing else.
    let output = project.xtask(&["env", "--env-file", &named.display().to_string()]);
    assert!(text(&output).contains("has every key"), "{}", text(&output));
    let output = project.xtask(&["env", "--check", "--env-file", &named.display().to_string()]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("development or provisioning file"), "{log}");
}

#[test]
fn env_never_completes_a_runtime_file_with_other_roles_credentials() {
    let project = Project::new();
    let production = project.path("production.env");
    let content = format!("DATABASE_URL='{RUNTIME}'\nDATABASE_SERVICE_URL='{SERVICE}'\n");
    std::fs::write(&production, &content).unwrap();
    let file = production.display().to_string();
    let output = project.xtask(&["env", "--env-file", &file]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("is a runtime environment") && log.contains("left as it is"), "{log}");
    assert_eq!(std::fs::read_to_string(&production).unwrap(), content, "the file was changed: {log}");
}
