//! The one-shot containers' environments, reproduced on the host: no env
//! file, only the variables docker-compose.dev.yml gives each service, and
//! passwords a URL would need percent-encoded. (`cargo xtask check
//! --containers` runs the real images; this catches the same mistakes in
//! seconds.)

use std::process::{Command, Output};

use pgcluster::TestCluster;

use crate::common::{repo_root, text, CONTRACT, XTASK};

const USER_PASSWORD: &str = "user p@ss:w/rd?#%&$1";
const SERVICE_PASSWORD: &str = "svc \"p@ss\" w%25rd#/?";
const MIGRATOR_PASSWORD: &str = "mig p@ss:w/rd?#%&=$x";

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    // A file that does not exist: the settings come from the environment.
    let env_file = dir.join(".env.local").display().to_string();
    command.args(args).args(["--env-file", &env_file]).current_dir(dir);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn db_provision_and_db_migrate_run_from_the_compose_services_environments() {
    let cluster = TestCluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, db) = (cluster.port().to_string(), "compose_env");
    let names = [
        ("APP_DB_SCHEMAS", "public".to_string()),
        ("APP_DB_USER", "app_user".to_string()),
        ("APP_DB_SERVICE_USER", "app_service".to_string()),
        ("DRIZZLE_MIGRATIONS_SCHEMA", "drizzle".to_string()),
        ("DRIZZLE_MIGRATIONS_TABLE", "__drizzle_migrations".to_string()),
    ];
    // db-provision's environment block: the pieces, no DSN.
    let mut provision: Vec<(&str, String)> = vec![
        ("DB_HOST", "127.0.0.1".into()),
        ("DB_PORT", port.clone()),
        ("PG_TIMEOUT", "10".into()),
        ("POSTGRES_ROOT_USER", "postgres".into()),
        ("POSTGRES_ROOT_PASSWORD", cluster.password().into()),
        ("APP_DB_NAME", db.into()),
        ("APP_DB_EXTENSIONS", String::new()),
        ("APP_DB_PASSWORD", USER_PASSWORD.into()),
        ("APP_DB_SERVICE_PASSWORD", SERVICE_PASSWORD.into()),
        ("APP_DB_MIGRATOR_USER", "app_migrator".into()),
        ("APP_DB_MIGRATOR_PASSWORD", MIGRATOR_PASSWORD.into()),
    ];
    provision.extend(names.iter().cloned());
    let output = run(dir.path(), &["db-provision"], &provision);
    let log = text(&output);
    assert!(output.status.success(), "{log}");

    // db-migrate's: the migrator's URL without its password, the password
    // in its own variable, the runtime roles' names only.
    let mut migrate: Vec<(&str, String)> = vec![
        ("DATABASE_MIGRATOR_URL", format!("postgresql://app_migrator@127.0.0.1:{port}/{db}?sslmode=disable")),
        ("APP_DB_MIGRATOR_PASSWORD", MIGRATOR_PASSWORD.into()),
    ];
    migrate.extend(names.iter().cloned());
    let migrations = repo_root().join("platform/db/migrations").display().to_string();
    let output = run(dir.path(), &["db-migrate", "--migrations-dir", &migrations], &migrate);
    let log = format!("{log}{}", text(&output));
    assert!(output.status.success(), "{log}");
    assert!(log.contains("applied"), "{log}");
    for password in [USER_PASSWORD, SERVICE_PASSWORD, MIGRATOR_PASSWORD, cluster.password()] {
        assert!(!log.contains(password), "a password leaked: {log}");
    }
}
