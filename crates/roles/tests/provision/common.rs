//! Helpers shared by the provisioning tests: a throwaway cluster, settings
//! pointing at it, and connections as each role.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dbenv::{keys, Dsn, Settings};
use postgres::Client;
use roles::{Phase, Reporter, Step};
use testkit::Cluster;
pub use testkit::{sqlstate, DB};

pub struct Fixture {
    pub kit: Cluster,
    pub passwords: [String; 3],
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_settings(&[])
    }

    /// A cluster with extra server settings (`autovacuum=off` always).
    pub fn with_settings(settings: &[(&str, &str)]) -> Fixture {
        let kit = Cluster::start_with(settings);
        Fixture { kit, passwords: ["migrator_password".into(), "password".into(), "service_password".into()] }
    }

    /// The env contract without DSNs: the pieces, with this fixture's passwords.
    pub fn vars(&self) -> Vec<(String, String)> {
        let [migrator, runtime, service] = &self.passwords;
        let mut vars = self.kit.server_vars(DB);
        vars.extend(Cluster::role_vars([migrator, runtime, service]));
        vars.push((keys::PG_TIMEOUT.into(), "10".into()));
        vars
    }

    pub fn settings(&self) -> Settings {
        testkit::env_of(&self.vars()).provisioning().unwrap()
    }

    pub fn admin(&self, db: &str) -> Client {
        self.kit.admin(db)
    }

    pub fn dsn(&self, role: &str, password: &str, db: &str) -> Dsn {
        self.kit.dsn(role, password, db)
    }

    pub fn connect_as(&self, role: &str, password: &str) -> Client {
        self.kit.connect_with(role, password, DB)
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
