//! Helpers for running the `xtask` binary the way a user does, in a project
//! directory of its own.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

pub use testkit::repo_root;

/// Every variable of the env contract, removed from the children's
/// environment so that the runner's own settings cannot leak in.
pub const CONTRACT: &[&str] = dbenv::CONTRACT_KEYS;

/// A project directory with the examples, its own port and data directory.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub started_server: bool,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::Builder::new().prefix("xtask-cli-").tempdir().unwrap();
        // The server's OS user must reach the data directory inside.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = pgcluster::free_port().unwrap();
        for example in [".env.local.example", ".env.test.example"] {
            let text = std::fs::read_to_string(repo_root().join(example)).unwrap();
            std::fs::write(dir.path().join(example), text.replace("55432", &port.to_string())).unwrap();
        }
        Project { dir, port, started_server: false }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn env_local(&self) -> String {
        self.path(".env.local").display().to_string()
    }

    pub fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_with(args, &[])
    }

    /// [`Project::xtask`] with these process variables set.
    pub fn xtask_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut command = Command::new(XTASK);
        command.args(args).current_dir(self.dir.path());
        for key in CONTRACT {
            command.env_remove(key);
        }
        command.env("APP_DB_DATA_DIR", self.path("pgdata"));
        command.envs(vars.iter().copied());
        command.output().unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if self.started_server {
            let env_file = self.env_local();
            let _ = self.xtask(&["db-down", "--purge", "--env-file", &env_file]);
        }
    }
}

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A tool the test needs from the machine. CI (`XTASK_REQUIRE_TOOLS=1`,
/// set by `.ci/run`) fails without it; elsewhere the check is skipped loudly.
pub fn have_tool(program: &str, args: &[&str]) -> bool {
    let found = Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("XTASK_REQUIRE_TOOLS").is_none(),
            "`{program}` is required here (XTASK_REQUIRE_TOOLS is set); `.ci/run` installs it"
        );
        eprintln!("SKIPPED part of this test: `{program}` is not installed");
    }
    found
}

impl Project {
    /// A project whose `.env.local` points at a throwaway cluster (admin,
    /// port) with the dev defaults for everything else.
    pub fn for_cluster(cluster: &pgcluster::TestCluster, db: &str) -> Project {
        let project = Project::new();
        let port = cluster.port();
        let dsn = |user: &str, password: &str| format!("postgresql://{user}:{password}@127.0.0.1:{port}/{db}");
        let text = format!(
            "DB_HOST=127.0.0.1\nDB_PORT={port}\nPOSTGRES_ROOT_USER=postgres\nPOSTGRES_ROOT_PASSWORD='{}'\nPG_TIMEOUT=10\n\
             APP_DB_NAME={db}\nAPP_DB_USER=app_user\nAPP_DB_PASSWORD=password\nAPP_DB_SERVICE_USER=app_service\n\
             APP_DB_SERVICE_PASSWORD=service_password\nAPP_DB_MIGRATOR_USER=app_migrator\n\
             APP_DB_MIGRATOR_PASSWORD=migrator_password\nDATABASE_URL='{}'\nDATABASE_SERVICE_URL='{}'\n\
             DATABASE_MIGRATOR_URL='{}'\n",
            cluster.password(),
            dsn("app_user", "password"),
            dsn("app_service", "service_password"),
            dsn("app_migrator", "migrator_password"),
        );
        std::fs::write(project.path(".env.local"), text).unwrap();
        project
    }

    /// Runs `xtask` with `--env-file` pointing at this project's `.env.local`.
    pub fn run(&self, args: &[&str]) -> Output {
        let env_file = self.env_local();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--env-file", env_file.as_str()]);
        self.xtask(&all)
    }

    /// A copy of the app's migrations folder inside the project.
    pub fn copy_migrations(&self, count: Option<usize>) -> PathBuf {
        let source = repo_root().join("platform/db/migrations");
        let target = self.path("migrations");
        std::fs::create_dir_all(target.join("meta")).unwrap();
        let journal: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(source.join("meta/_journal.json")).unwrap()).unwrap();
        let mut entries = journal["entries"].as_array().unwrap().clone();
        entries.truncate(count.unwrap_or(usize::MAX));
        for entry in &entries {
            let tag = entry["tag"].as_str().unwrap();
            std::fs::copy(source.join(format!("{tag}.sql")), target.join(format!("{tag}.sql"))).unwrap();
        }
        let mut copy = journal.clone();
        copy["entries"] = serde_json::Value::Array(entries);
        std::fs::write(target.join("meta/_journal.json"), copy.to_string()).unwrap();
        target
    }
}

/// Children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // The parent pid is the second field after the command name's ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push(child);
        }
    }
    found
}
