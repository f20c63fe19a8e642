//! `db-rotate` through the binary: the other login readied, proved and
//! published into every env file that uses the role; `--finish` waits for
//! the old login's sessions, names them, ends them only when asked, and
//! retires it; no password reaches the output or the server log.

use std::os::unix::fs::PermissionsExt;

use crate::common::{text, Project};
use pgcluster::{ClusterOptions, TestCluster};
use postgres::{Client, NoTls};

const DB: &str = "cogni_template_test";

fn connect(cluster: &TestCluster, user: &str, password: &str) -> Result<Client, postgres::Error> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.port())
        .user(user)
        .password(password)
        .dbname(DB)
        .connect(NoTls)
}

fn value(path: &std::path::Path, key: &str) -> String {
    dbenv::read_env_file(path).unwrap().remove(key).unwrap_or_default()
}

#[test]
fn a_rotation_publishes_a_proved_login_and_finish_retires_the_old_one() {
    let settings = vec![("log_statement".to_string(), "all".to_string())];
    let cluster = TestCluster::start_with(ClusterOptions { settings, ..Default::default() }).unwrap();
    let project = Project::for_cluster(&cluster, DB);
    let migrations = project.copy_migrations(None);
    for args in [vec!["db-provision"], vec!["db-migrate", "--migrations-dir", migrations.to_str().unwrap()]] {
        let output = project.run(&args);
        assert!(output.status.success(), "{}", text(&output));
    }
    // The app's own runtime file: its DSNs and a comment, nothing else.
    let runtime = project.path("runtime.env");
    let dsn = value(&project.path(".env.local"), "DATABASE_URL");
    let service = value(&project.path(".env.local"), "DATABASE_SERVICE_URL");
    std::fs::write(&runtime, format!("# production\nDATABASE_URL=\"{dsn}\"\nDATABASE_SERVICE_URL='{service}'\n"))
        .unwrap();

    let (local, runtime_arg) = (project.env_local(), runtime.display().to_string());
    let rotate = ["db-rotate", "app_user", "--env-file", &local, "--env-file", &runtime_arg];
    let output = project.xtask(&rotate);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("`app_user_alt` logs in and acts as `app_user` (proved)"), "{said}");
    let password = value(&project.path(".env.local"), "APP_DB_PASSWORD");
    assert_eq!(password.len(), 32);
    assert!(!said.contains(&password), "the password is never printed unasked");
    assert!(!cluster.log().contains(&password), "the password never reaches the server log");
    for file in [project.path(".env.local"), runtime.clone()] {
        let url = value(&file, "DATABASE_URL");
        assert!(url.starts_with("postgresql://app_user_alt:"), "{}: {url}", file.display());
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let after = std::fs::read_to_string(&runtime).unwrap();
    assert!(after.starts_with("# production\nDATABASE_URL='postgresql://app_user_alt:"), "{after}");
    assert!(after.ends_with(&format!("\nDATABASE_SERVICE_URL='{service}'\n")), "the other lines as they were");

    // A second start before finish would re-password the login deployed instances still use: refused.
    let output = project.xtask(&rotate);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("`app_user` can still log in: the rotation before is not finished"),
        "{}",
        text(&output)
    );
    assert_eq!(value(&project.path(".env.local"), "APP_DB_PASSWORD"), password, "nothing was changed");

    // Both logins work during the overlap; the new one is the role.
    let mut new = connect(&cluster, "app_user_alt", &password).unwrap();
    let who: (String, String) =
        new.query_one("SELECT current_user::text, session_user::text", &[]).map(|r| (r.get(0), r.get(1))).unwrap();
    assert_eq!(who, ("app_user".into(), "app_user_alt".into()));
    let mut old = connect(&cluster, "app_user", "password").unwrap();

    // The check holds with the env on the new login, and provisioning has nothing to do.
    let output = project.run(&["db-check", "--migrations-dir", migrations.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("logins of `app_user`: `app_user` (LOGIN), `app_user_alt` (LOGIN)"));

    // An old session remains: named, nothing retired, exit 2.
    let output = project.run(&["db-rotate", "app_user", "--finish"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let pid: i32 = old.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    assert!(text(&output).contains(&format!("pid {pid} in `{DB}`")), "{}", text(&output));
    assert!(connect(&cluster, "app_user", "password").is_ok(), "nothing was retired");
    // --terminate ends that session (and only the old login's), then retires the login.
    let output = project.run(&["db-rotate", "app_user", "--finish", "--terminate"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(old.simple_query("SELECT 1").is_err(), "the old session was ended");
    assert!(new.simple_query("SELECT 1").is_ok(), "the new login's session was not");
    let refused = connect(&cluster, "app_user", "password").err().expect("the old secret is refused");
    assert_eq!(refused.code().map(|c| c.code()), Some("28P01"));
    let output = project.run(&["db-check", "--migrations-dir", migrations.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    // An env file older than the rotation does not bring the retired login back.
    let stale = project.path("stale.env");
    let current = std::fs::read_to_string(project.path(".env.local")).unwrap();
    let old_dsn = dsn.clone();
    let stale_text: String = current
        .lines()
        .map(|line| match line.split('=').next() {
            Some("DATABASE_URL") => format!("DATABASE_URL='{old_dsn}'\n"),
            Some("APP_DB_PASSWORD") => "APP_DB_PASSWORD='password'\n".to_string(),
            _ => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&stale, stale_text).unwrap();
    let output = project.xtask(&["db-provision", "--env-file", stale.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("whose login db-rotate retired; `app_user_alt` is in use"), "{}", text(&output));
    assert!(connect(&cluster, "app_user", "password").is_err(), "still retired");
}

#[test]
fn an_unknown_role_is_refused_before_any_change() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    assert!(project.run(&["db-provision"]).status.success());
    let output = project.run(&["db-rotate", "app_usr"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("`app_usr` is not a role of this environment; rotate one of `app_migrator`, `app_user`, `app_service` or `all`"),
        "{}",
        text(&output)
    );
}

#[test]
fn json_output_is_json_alone_and_a_file_that_cannot_name_the_login_changes_nothing() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    assert!(project.run(&["db-provision"]).status.success());
    // A file with the service role's password but no DSN: the login could not be named there.
    let pieces = project.path("pieces.env");
    std::fs::write(&pieces, "APP_DB_SERVICE_PASSWORD='service_password'\n").unwrap();
    let (local, pieces_arg) = (project.env_local(), pieces.display().to_string());
    let output = project.xtask(&["db-rotate", "app_service", "--env-file", &local, "--env-file", &pieces_arg]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("holds APP_DB_SERVICE_PASSWORD but not DATABASE_SERVICE_URL"), "{}", text(&output));
    let exists: bool = Client::connect(&cluster.admin_url(DB), NoTls)
        .unwrap()
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_service_alt')", &[])
        .unwrap()
        .get(0);
    assert!(!exists, "nothing was changed");

    let output = project.run(&["db-rotate", "app_service", "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("standard output is JSON alone");
    assert_eq!(json[0]["role"], "app_service");
    assert_eq!(json[0]["active"], "app_service_alt");
    assert_eq!(json[0]["logins"], serde_json::json!(["app_service", "app_service_alt"]));
    assert!(json[0].get("password").is_none(), "no password unless asked for");
}
