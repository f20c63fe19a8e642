//! The shared fixtures of the workspace's tests, and nothing else: a
//! throwaway cluster ([`Cluster`]) with the env contract for one of its
//! databases, admin and role connections, SQLSTATE capture, the legacy
//! (upstream-shaped) database ([`legacy`]) and hand-built catalog snapshots
//! for the pure planner ([`snapshots`]). A dev-dependency only: no crate of
//! the product depends on it (a tidy test says so).

pub mod legacy;
pub mod snapshots;

use std::path::{Path, PathBuf};

use dbenv::{keys, Dsn, EnvVars, Secret, Settings};
use pgcluster::{ClusterOptions, TestCluster};
use postgres::{Client, NoTls};

/// The database the tests provision.
pub const DB: &str = "cogni_template_test";

/// The three roles and the passwords the fixtures give them.
pub const PASSWORDS: [(&str, &str); 3] =
    [("app_migrator", "migrator_password"), ("app_user", "password"), ("app_service", "service_password")];

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

/// The app's migrations folder.
pub fn app_migrations() -> PathBuf {
    repo_root().join("platform/db/migrations")
}

/// A throwaway cluster, stopped and deleted when dropped.
pub struct Cluster {
    pub server: TestCluster,
}

impl Cluster {
    /// A cluster with `autovacuum=off` (tests count transaction ids, and
    /// autovacuum's ANALYZE takes some).
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A cluster with extra server settings.
    pub fn start_with(settings: &[(&str, &str)]) -> Cluster {
        let mut all = vec![("autovacuum".to_string(), "off".to_string())];
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let server = TestCluster::start_with(ClusterOptions { settings: all, ..Default::default() }).unwrap();
        Cluster { server }
    }

    /// A cluster copied from a snapshot made once by `prepare` (see
    /// [`TestCluster::start_prepared`]), keyed by this test binary (its
    /// path, size and modification time: a rebuild makes a new snapshot)
    /// and the contents of the files under `inputs`.
    pub fn start_prepared(name: &str, inputs: &[&Path], prepare: impl FnOnce(&Cluster)) -> Cluster {
        let mut key = Vec::new();
        let exe = std::env::current_exe().unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        let modified = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
        key.extend(format!("{}|{}|{}", exe.display(), meta.len(), modified.as_nanos()).bytes());
        for input in inputs {
            let mut files: Vec<PathBuf> = walk(input).into_iter().filter(|p| p.is_file()).collect();
            files.sort();
            for file in files {
                key.extend(file.display().to_string().bytes());
                key.extend(std::fs::read(&file).unwrap());
            }
        }
        let key =
            key.iter().fold(0xcbf29ce484222325u64, |hash, byte| (hash ^ *byte as u64).wrapping_mul(0x100000001b3));
        let options = ClusterOptions { settings: vec![("autovacuum".into(), "off".into())], ..Default::default() };
        let server = TestCluster::start_prepared(options, name, key, |server| {
            let kit = Cluster { server };
            prepare(&kit);
            Ok(kit.server)
        })
        .unwrap();
        Cluster { server }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The server and admin part of the env contract.
    pub fn server_vars(&self, db: &str) -> Vec<(String, String)> {
        vec![
            (keys::DB_HOST.into(), "127.0.0.1".into()),
            (keys::DB_PORT.into(), self.port().to_string()),
            (keys::POSTGRES_ROOT_USER.into(), self.server.superuser().into()),
            (keys::POSTGRES_ROOT_PASSWORD.into(), self.server.password().into()),
            (keys::APP_DB_NAME.into(), db.into()),
        ]
    }

    /// The roles' part: names and passwords (`passwords` for the migrator,
    /// the runtime and the service role), without DSNs.
    pub fn role_vars(passwords: [&str; 3]) -> Vec<(String, String)> {
        let [migrator, runtime, service] = passwords;
        vec![
            (keys::APP_DB_USER.into(), "app_user".into()),
            (keys::APP_DB_PASSWORD.into(), runtime.into()),
            (keys::APP_DB_SERVICE_USER.into(), "app_service".into()),
            (keys::APP_DB_SERVICE_PASSWORD.into(), service.into()),
            (keys::APP_DB_MIGRATOR_USER.into(), "app_migrator".into()),
            (keys::APP_DB_MIGRATOR_PASSWORD.into(), migrator.into()),
        ]
    }

    /// The three DSNs for `db` with the fixtures' passwords.
    pub fn dsn_vars(&self, db: &str) -> Vec<(String, String)> {
        let dsn = |role: &str| self.dsn(role, password_of(role), db).expose_url();
        vec![
            (keys::DATABASE_URL.into(), dsn("app_user")),
            (keys::DATABASE_SERVICE_URL.into(), dsn("app_service")),
            (keys::DATABASE_MIGRATOR_URL.into(), dsn("app_migrator")),
        ]
    }

    /// The whole env contract for `db`: server, admin, roles and DSNs.
    pub fn vars(&self, db: &str) -> Vec<(String, String)> {
        let mut vars = self.server_vars(db);
        vars.extend(Cluster::role_vars(PASSWORDS.map(|(_, p)| p)));
        vars.extend(self.dsn_vars(db));
        vars
    }

    /// [`Cluster::vars`] as an environment value.
    pub fn env(&self, db: &str) -> EnvVars {
        self.env_with(db, &[])
    }

    /// [`Cluster::vars`] with `extra` replacing or adding variables.
    pub fn env_with(&self, db: &str, extra: &[(&str, &str)]) -> EnvVars {
        let mut vars = self.vars(db);
        vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env_of(&vars)
    }

    /// The provisioning view of [`Cluster::env`].
    pub fn settings(&self, db: &str) -> Settings {
        self.env(db).provisioning().unwrap()
    }

    /// An env file for `db` in `dir` (mode 0600), as `cargo xtask env` writes one.
    pub fn write_env_file(&self, dir: &Path, db: &str) -> PathBuf {
        let path = dir.join(".env.test");
        let text: String = self.vars(db).iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        path
    }

    pub fn dsn(&self, role: &str, password: &str, db: &str) -> Dsn {
        Dsn::new(role, &Secret::new(password), "127.0.0.1", self.port(), db)
    }

    /// A session of the cluster's superuser in `db`.
    pub fn admin(&self, db: &str) -> Client {
        Client::connect(&self.server.admin_url(db), NoTls).unwrap()
    }

    /// A session as `role` in `db` with the fixtures' password for it, as
    /// the app or a migration has it (not the tool's pinned search path).
    pub fn connect_as(&self, role: &str, db: &str) -> Client {
        self.connect_with(role, password_of(role), db)
    }

    /// A login attempt as `role` with `password`: the server's answer.
    pub fn connect_with_result(&self, role: &str, password: &str, db: &str) -> Result<Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port())
            .user(role)
            .password(password)
            .dbname(db)
            .connect(postgres::NoTls)
    }

    /// A session as `role` with `password`.
    pub fn connect_with(&self, role: &str, password: &str, db: &str) -> Client {
        let mut client = dbenv::connect(&self.dsn(role, password, db), role).unwrap();
        client.batch_execute("RESET search_path").unwrap();
        client
    }
}

/// The fixtures' password of `role` (`password` for any other role).
pub fn password_of(role: &str) -> &'static str {
    PASSWORDS.iter().find(|(r, _)| *r == role).map(|(_, p)| *p).unwrap_or("password")
}

/// Pairs as an environment value.
pub fn env_of(vars: &[(String, String)]) -> EnvVars {
    EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Runs `sql` in a transaction that is rolled back; its SQLSTATE, or
/// `None` when it succeeded.
pub fn sqlstate(client: &mut Client, sql: &str) -> Option<String> {
    client.batch_execute("BEGIN").unwrap();
    let result = client.batch_execute(sql);
    client.batch_execute("ROLLBACK").unwrap();
    result.err().map(|e| e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string()))
}

/// The refusals `db-provision` stopped with (it changed nothing); panics,
/// showing the error, when it stopped for another reason.
pub fn refusals(error: &anyhow::Error) -> Vec<roles::Refusal> {
    match error.downcast_ref::<roles::Refused>() {
        Some(refused) => refused.refusals.clone(),
        None => panic!("db-provision failed, but not with refusals: {error:#}"),
    }
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.extend(walk(&entry.path()));
        }
    }
    found
}
