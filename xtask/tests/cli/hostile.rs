//! Hostile input, table-driven: bad env values, DSNs, names and broken
//! migration folders, each with its exact expected error, and never a
//! password in the output.

use std::process::{Command, Output};

use pgcluster::TestCluster;

use crate::common::{text, Project, CONTRACT, XTASK};

const SECRET: &str = "hunter2-s3cret";

/// Runs `args` with the project's `.env.local` plus `overrides` in the
/// process environment (which wins over the file).
fn run_with(project: &Project, args: &[&str], overrides: &[(&str, &str)]) -> Output {
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    let env_file = project.env_local();
    command.args(args).args(["--env-file", &env_file]);
    for (key, value) in overrides {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn assert_error(output: &Output, case: &str, expected: &str) {
    let log = text(output);
    assert_eq!(output.status.code(), Some(1), "{case}: {log}");
    assert!(log.contains(expected), "{case}: expected `{expected}` in: {log}");
    assert!(!log.contains(SECRET), "{case}: a password leaked: {log}");
    assert!(!log.contains("panicked"), "{case}: {log}");
}

#[test]
fn bad_env_values_dsns_and_names() {
    let project = Project::new();
    let env_file = project.env_local();
    assert!(project.xtask(&["env", "--env-file", &env_file]).status.success());
    let port = project.port.to_string();
    let long_name = "a".repeat(64);
    let dsn =
        |user: &str, tail: &str| format!("postgresql://{user}:{SECRET}@localhost:{port}/cogni_template_dev{tail}");
    let runtime_with = |tail: &str| dsn("app_user", tail);
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "space in a role name",
            vec![("APP_DB_USER", "app user".into())],
            "APP_DB_USER: role name `app user` contains ' '",
        ),
        (
            "quote in a database name",
            vec![("APP_DB_NAME", "db\"x".into())],
            "APP_DB_NAME: database name `db\\\"x` contains '\"'",
        ),
        (
            "semicolon in a schema",
            vec![("APP_DB_SCHEMAS", "public;drop".into())],
            "APP_DB_SCHEMAS: schema name `public;drop` contains ';'",
        ),
        ("empty schema in the list", vec![("APP_DB_SCHEMAS", "public,,x".into())], "APP_DB_SCHEMAS is empty"),
        ("a 64-byte name", vec![("APP_DB_SERVICE_USER", long_name)], "is 64 bytes long"),
        ("a reserved prefix", vec![("APP_DB_MIGRATOR_USER", "pg_migrator".into())], "starts with `pg_`"),
        ("a reserved role name", vec![("APP_DB_USER", "public".into())], "`public` is reserved"),
        ("a port out of range", vec![("DB_PORT", "70000".into())], "DB_PORT `70000` is not a port number"),
        ("a port that is not a number", vec![("DB_PORT", "fifty".into())], "DB_PORT `fifty` is not a port number"),
        (
            "a timeout that is not a number",
            vec![("PG_TIMEOUT", "soon".into())],
            "PG_TIMEOUT `soon` is not a whole number",
        ),
        (
            "a MySQL DSN",
            vec![("DATABASE_URL", format!("mysql://app_user:{SECRET}@localhost/db"))],
            "DATABASE_URL does not start with",
        ),
        (
            "a bad percent escape",
            vec![("DATABASE_URL", dsn("app_user", "").replace(SECRET, "50%off"))],
            "the password has a `%`",
        ),
        (
            "an unknown DSN parameter",
            vec![("DATABASE_URL", runtime_with("?schema=public"))],
            "a query parameter is not supported",
        ),
        ("an unknown sslmode", vec![("DATABASE_URL", runtime_with("?sslmode=always"))], "sslmode is not one of"),
        (
            "several hosts",
            vec![("DATABASE_URL", format!("postgresql://app_user:{SECRET}@h1:1,h2:2/db"))],
            "names several hosts",
        ),
        ("a fragment", vec![("DATABASE_URL", runtime_with("#frag"))], "contains `#`"),
        (
            "DSN user disagreeing",
            vec![("DATABASE_SERVICE_URL", dsn("someone", ""))],
            "DATABASE_SERVICE_URL logs in as `someone` but APP_DB_SERVICE_USER is `app_service`",
        ),
        (
            "DSN password disagreeing",
            vec![("DATABASE_URL", runtime_with(""))],
            "DATABASE_URL and APP_DB_PASSWORD give different passwords",
        ),
        (
            "DSN database disagreeing",
            vec![(
                "DATABASE_MIGRATOR_URL",
                format!("postgresql://app_migrator:migrator_password@localhost:{port}/other"),
            )],
            "DATABASE_MIGRATOR_URL names database `other` but APP_DB_NAME is `cogni_template_dev`",
        ),
        (
            "the admin as a role",
            vec![("APP_DB_USER", "postgres".into()), ("DATABASE_URL", dsn("postgres", "").replace(SECRET, "password"))],
            "the admin role",
        ),
        ("a missing password", vec![("POSTGRES_ROOT_PASSWORD", String::new())], "POSTGRES_ROOT_PASSWORD is not set"),
        (
            "a template database",
            vec![
                ("APP_DB_NAME", "template1".into()),
                (
                    "DATABASE_URL",
                    dsn("app_user", "").replace(SECRET, "password").replace("cogni_template_dev", "template1"),
                ),
            ],
            "APP_DB_NAME: `template1` is a template database",
        ),
        (
            "the SQL-standard catalog schema",
            vec![("APP_DB_SCHEMAS", "public,information_schema".into())],
            "APP_DB_SCHEMAS: `information_schema` is PostgreSQL's own catalog schema",
        ),
        (
            "the bookkeeping schema among the app schemas",
            vec![("APP_DB_SCHEMAS", "public,drizzle".into())],
            "DRIZZLE_MIGRATIONS_SCHEMA `drizzle` is also listed in APP_DB_SCHEMAS",
        ),
    ];
    for (case, overrides, expected) in &cases {
        let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_error(&run_with(&project, &["db-provision"], &overrides), case, expected);
    }
    // The migrator DSN alone is refused when it is the runtime role's.
    let output = run_with(
        &project,
        &["db-migrate"],
        &[("DATABASE_MIGRATOR_URL", &format!("postgresql://app_user:password@localhost:{port}/cogni_template_dev"))],
    );
    assert_error(
        &output,
        "migrator DSN naming the runtime role",
        "DATABASE_MIGRATOR_URL logs in as `app_user` but APP_DB_MIGRATOR_USER is `app_migrator`",
    );
}

/// A journal entry as drizzle-kit writes it.
fn entry(idx: usize, tag: &str, when: i64) -> String {
    format!("{{\"idx\":{idx},\"version\":\"7\",\"when\":{when},\"tag\":\"{tag}\",\"breakpoints\":true}}")
}

fn journal(entries: &[String]) -> String {
    format!("{{\"version\":\"7\",\"dialect\":\"postgresql\",\"entries\":[{}]}}", entries.join(","))
}

#[test]
fn broken_migration_folders() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, "cogni_template_test");
    assert!(project.run(&["db-provision"]).status.success());
    type Files = Vec<(&'static str, Vec<u8>)>;
    let cases: Vec<(&str, Files, &str)> = vec![
        ("no folder", vec![], "does not exist; pass the right one with --migrations-dir"),
        ("no journal", vec![("0000_a.sql", b"SELECT 1;".to_vec())], "has no meta/_journal.json"),
        ("malformed journal", vec![("meta/_journal.json", b"{\"entries\": [".to_vec())], "is not valid JSON"),
        (
            "journal without entries",
            vec![("meta/_journal.json", b"{\"version\":\"7\"}".to_vec())],
            "has no `entries` array",
        ),
        (
            "entry without a tag",
            vec![("meta/_journal.json", b"{\"entries\":[{\"when\":1}]}".to_vec())],
            "entry 0 has no `tag`",
        ),
        (
            "a tag leaving the folder",
            vec![("meta/_journal.json", journal(&[entry(0, "../../etc/passwd", 1)]).into_bytes())],
            "has a `tag` that is not a file name",
        ),
        (
            "a `when` that is not a number",
            vec![("meta/_journal.json", b"{\"entries\":[{\"tag\":\"0000_a\",\"when\":\"soon\"}]}".to_vec())],
            "entry `0000_a` has a `when` that is not a whole number",
        ),
        (
            "a missing file",
            vec![("meta/_journal.json", journal(&[entry(0, "0000_a", 1)]).into_bytes())],
            "0000_a.sql` is listed in the journal but cannot be read",
        ),
        (
            "duplicate tags",
            vec![
                ("meta/_journal.json", journal(&[entry(0, "0000_a", 1), entry(1, "0000_a", 2)]).into_bytes()),
                ("0000_a.sql", b"SELECT 1;".to_vec()),
            ],
            "the journal lists tag `0000_a` twice",
        ),
        (
            "non-UTF-8 SQL",
            vec![
                ("meta/_journal.json", journal(&[entry(0, "0000_a", 1)]).into_bytes()),
                ("0000_a.sql", b"SELECT '\xff';".to_vec()),
            ],
            "`0000_a.sql` is not valid UTF-8",
        ),
        (
            "an explicit ROLLBACK",
            vec![
                ("meta/_journal.json", journal(&[entry(0, "0000_a", 1)]).into_bytes()),
                ("0000_a.sql", b"CREATE TABLE t (id int);\nROLLBACK;".to_vec()),
            ],
            "`0000_a.sql` line 2: `ROLLBACK` is refused",
        ),
        (
            "drizzle-kit 1.0's layout",
            vec![("20260101000000_init/migration.sql", b"SELECT 1;".to_vec())],
            "drizzle-kit 1.0's layout",
        ),
    ];
    for (index, (case, files, expected)) in cases.iter().enumerate() {
        let dir = project.path(&format!("broken-{index}"));
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let dir = dir.display().to_string();
        assert_error(&project.run(&["db-migrate", "--migrations-dir", &dir]), case, expected);
        if *case != "duplicate tags" && *case != "non-UTF-8 SQL" && *case != "an explicit ROLLBACK" {
            assert_error(&project.run(&["db-status", "--migrations-dir", &dir]), case, expected);
        }
    }
}

/// A contract variable the process gives as bytes that are not UTF-8 is an
/// error naming it, never skipped in favour of the file's value; other such
/// variables are left alone.
#[test]
fn a_contract_variable_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let project = Project::new();
    let env_file = project.env_local();
    assert!(project.xtask(&["env", "--env-file", &env_file]).status.success());
    let bytes = std::ffi::OsStr::from_bytes(b"postgresql://app_user:pa\xffss@localhost/db");
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    let output = command
        .args(["env", "--check", "--env-file", &env_file])
        .env("DATABASE_URL", bytes)
        .env("SOME_OTHER_VARIABLE", bytes)
        .output()
        .unwrap();
    assert_error(&output, "non-UTF-8 DATABASE_URL", "DATABASE_URL in the process environment is not valid UTF-8");
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    let output =
        command.args(["env", "--check", "--env-file", &env_file]).env("SOME_OTHER_VARIABLE", bytes).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
}
