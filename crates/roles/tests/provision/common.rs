//! Helpers shared by the provisioning tests: a throwaway cluster, settings
//! pointing at it, and connections as each role.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dbenv::{Dsn, EnvVars, Secret, Settings};
use pgcluster::{ClusterOptions, TestCluster};
use postgres::{Client, NoTls};
use roles::{Phase, Reporter, Step};

pub const DB: &str = "cogni_template_test";

pub struct Fixture {
    pub cluster: TestCluster,
    pub passwords: [String; 3],
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_settings(&[])
    }

    /// A cluster with extra server settings (`autovacuum=off` always: the
    /// tests count transaction ids, and autovacuum's ANALYZE takes some).
    pub fn with_settings(settings: &[(&str, &str)]) -> Fixture {
        let mut all = vec![("autovacuum".to_string(), "off".to_string())];
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cluster = TestCluster::start_with(ClusterOptions { settings: all, ..Default::default() }).unwrap();
        Fixture { cluster, passwords: ["migrator_password".into(), "password".into(), "service_password".into()] }
    }

    pub fn vars(&self) -> Vec<(String, String)> {
        let port = self.cluster.port().to_string();
        let [migrator, runtime, service] = &self.passwords;
        vec![
            ("DB_HOST".into(), "127.0.0.1".into()),
            ("DB_PORT".into(), port),
            ("POSTGRES_ROOT_USER".into(), self.cluster.superuser().into()),
            ("POSTGRES_ROOT_PASSWORD".into(), self.cluster.password().into()),
            ("APP_DB_NAME".into(), DB.into()),
            ("APP_DB_USER".into(), "app_user".into()),
            ("APP_DB_PASSWORD".into(), runtime.clone()),
            ("APP_DB_SERVICE_USER".into(), "app_service".into()),
            ("APP_DB_SERVICE_PASSWORD".into(), service.clone()),
            ("APP_DB_MIGRATOR_USER".into(), "app_migrator".into()),
            ("APP_DB_MIGRATOR_PASSWORD".into(), migrator.clone()),
            ("PG_TIMEOUT".into(), "10".into()),
        ]
    }

    pub fn settings(&self) -> Settings {
        let vars = self.vars();
        Settings::from_env(&EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))).unwrap()
    }

    pub fn admin(&self, db: &str) -> Client {
        Client::connect(&self.cluster.admin_url(db), NoTls).unwrap()
    }

    pub fn dsn(&self, role: &str, password: &str, db: &str) -> Dsn {
        Dsn::new(role, &Secret::new(password), "127.0.0.1", self.cluster.port(), db)
    }

    pub fn connect_as(&self, role: &str, password: &str) -> Client {
        let mut client = dbenv::connect(&self.dsn(role, password, DB), role).unwrap();
        // A session as the app or a migration has it, not the tool's pinned one.
        client.batch_execute("RESET search_path").unwrap();
        client
    }

    pub fn runtime(&self) -> Client {
        self.connect_as("app_user", &self.passwords[1])
    }

    pub fn service(&self) -> Client {
        self.connect_as("app_service", &self.passwords[2])
    }

    pub fn migrator(&self) -> Client {
        self.connect_as("app_migrator", &self.passwords[0])
    }

    pub fn provision(&self) -> roles::Outcome {
        roles::provision(&self.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap()
    }

    /// The next transaction id the server will hand out: if it does not
    /// move, no session was assigned one.
    pub fn next_xid(&self) -> i64 {
        self.admin("postgres").query_one("SELECT txid_snapshot_xmax(txid_current_snapshot())", &[]).unwrap().get(0)
    }
}

/// Runs `sql` and returns its SQLSTATE, or `None` when it succeeded.
pub fn sqlstate(client: &mut Client, sql: &str) -> Option<String> {
    client.batch_execute("BEGIN").unwrap();
    let result = client.batch_execute(sql);
    client.batch_execute("ROLLBACK").unwrap();
    result.err().map(|e| e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string()))
}

/// A reporter that keeps every line it is told, to search for secrets.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<String>>>);

impl Recorder {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

impl Reporter for Recorder {
    fn warning(&mut self, message: &str) {
        self.0.lock().unwrap().push(format!("warning: {message}"));
    }
    fn phase(&mut self, phase: Phase, steps: usize, transactions: usize) {
        self.0.lock().unwrap().push(format!("phase {phase:?}: {steps} steps in {transactions} transactions"));
    }
    fn applied(&mut self, step: &Step) {
        let mut lines = self.0.lock().unwrap();
        lines.push(step.summary.clone());
        for sql in &step.statements {
            lines.push(format!("  {sql}"));
        }
    }
    fn retry(&mut self, phase: Phase, attempt: u32, reason: &str) {
        self.0.lock().unwrap().push(format!("retry {phase:?} {attempt}: {reason}"));
    }
}
