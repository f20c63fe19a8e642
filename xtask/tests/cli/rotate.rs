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
    assert!(said.contains("`app_user_alt` logs in and acts as `app_user` (proved; "), "{said}");
    assert!(said.contains("db-check probes hold in its session, app_user_alt as app_user)"), "{said}");
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

    // The runner grants to the roles, never to a login (its env names `app_user_alt`); the
    // check holds with the env on the new login.
    let output = project.run(&["db-migrate", "--migrations-dir", migrations.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let output = project.run(&["db-check", "--migrations-dir", migrations.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let overlap =
        "logins of `app_user`: `app_user` (LOGIN), `app_user_alt` (LOGIN, used here); in a rotation's overlap";
    assert!(text(&output).contains(overlap), "{}", text(&output));
    // The app's own file (its DSNs alone) names the role through its alternate login.
    let output = project.xtask(&["db-check", "--env-file", &runtime_arg, "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let session: Vec<&serde_json::Value> =
        json["probes"].as_array().unwrap().iter().filter(|p| p["id"] == "session").collect();
    assert_eq!(session[0]["observed"], "app_user_alt as app_user", "{session:?}");
    assert_eq!(json["logins"][1]["rotation"], "overlap", "{}", json["logins"]);

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
fn an_unknown_role_and_a_login_that_fails_the_probes_change_nothing() {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, DB);
    assert!(project.run(&["db-provision"]).status.success());
    let migrations = project.copy_migrations(None);
    assert!(project.run(&["db-migrate", "--migrations-dir", migrations.to_str().unwrap()]).status.success());
    // The role holds more than the model allows: the new login, which acts
    // as it, fails db-check's probes and is not published.
    let mut admin = Client::connect(&cluster.admin_url(DB), NoTls).unwrap();
    admin.batch_execute("GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO app_user").unwrap();
    let before = std::fs::read(project.path(".env.local")).unwrap();
    let output = project.run(&["db-rotate", "app_user"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("as `app_user_alt`, db-check's probes did not hold: truncate"), "{}", text(&output));
    assert!(text(&output).contains("is retired again; the env files were not changed"), "{}", text(&output));
    assert_eq!(std::fs::read(project.path(".env.local")).unwrap(), before);
    let can_log_in: bool =
        admin.query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app_user_alt'", &[]).unwrap().get(0);
    assert!(!can_log_in, "the unpublished login cannot log in");

    // Every file is staged before any is replaced: a second file that would
    // not read back as written leaves the first as it was too.
    admin.batch_execute("REVOKE TRUNCATE ON ALL TABLES IN SCHEMA public FROM app_user").unwrap();
    let dsn = value(&project.path(".env.local"), "DATABASE_URL");
    let odd = project.path("odd.env");
    std::fs::write(&odd, format!("DATABASE_URL='{dsn}'\nNOTE=\"copied from the old file:\nDATABASE_URL=old\"\n"))
        .unwrap();
    let (local, odd_arg) = (project.env_local(), odd.display().to_string());
    let output = project.xtask(&["db-rotate", "app_user", "--env-file", &local, "--env-file", &odd_arg]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("would not read back as written"), "{}", text(&output));
    assert!(text(&output).contains("is retired again; the env files were not changed"), "{}", text(&output));
    assert_eq!(std::fs::read(project.path(".env.local")).unwrap(), before, "the first file was not changed either");
    let temps = std::fs::read_dir(project.path("."))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-"));
    assert_eq!(temps.count(), 0, "no staged file is left behind");
    // A symbolic link is refused before any change.
    let link = project.path("link.env");
    std::os::unix::fs::symlink(&odd, &link).unwrap();
    let output = project.run(&["db-rotate", "app_user", "--env-file", link.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("is a symbolic link"), "{}", text(&output));
    let exists: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'app_user_alt' AND rolcanlogin", &[])
        .unwrap()
        .get(0);
    assert_eq!(exists, 0);
    // Another run holds the rotation lock: refused, nothing changed.
    let mut other = Client::connect(&cluster.admin_url(DB), NoTls).unwrap();
    other.execute("SELECT pg_advisory_lock($1)", &[&0x6462_726f_7461_7465_i64]).unwrap();
    let output = project.run(&["db-rotate", "app_user"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("another `cargo xtask db-rotate` is running"), "{}", text(&output));
    drop(other);
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

    // The files alone say which login is in use: a process variable that
    // names the other login (an old file `source`d) changes nothing.
    let stale = format!("postgresql://app_service_alt:stale@127.0.0.1:{}/{DB}", cluster.port());
    let vars = [("DATABASE_SERVICE_URL", stale.as_str()), ("APP_DB_SERVICE_PASSWORD", "stale")];
    let output = project.xtask_with(&["db-rotate", "app_service", "--json", "--env-file", &local], &vars);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("standard output is JSON alone");
    assert_eq!(json[0]["role"], "app_service");
    assert_eq!(json[0]["active"], "app_service_alt");
    assert_eq!(json[0]["logins"], serde_json::json!(["app_service", "app_service_alt"]));
    assert!(json[0].get("password").is_none(), "no password unless asked for");
}
