//! What a run needs, from the environment and the flags: the migrator's
//! DSN, the bookkeeping table, the app schemas and the roles to grant to,
//! and what a run reports as it goes.

use std::time::Duration;

use dbenv::{Dsn, MigrationEnv};

use crate::bookkeeping::Table;
use crate::folder::Migration;

/// Everything a run needs, from the environment and the flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub dsn: Dsn,
    /// The migrator role's name (the DSN may log in as its alternate login):
    /// the one role the migration guard lets objects be handed to.
    pub migrator: String,
    pub table: Table,
    pub app_schemas: Vec<String>,
    /// The runtime and service users when the environment names them: the
    /// migrator DSN must be neither.
    pub runtime_users: Vec<(&'static str, String)>,
    /// `lock_timeout` of the migrating session: a migration never queues
    /// behind a long lock (and blocks the app behind it) for longer.
    pub lock_timeout: Duration,
    /// How long to wait for another run's advisory lock.
    pub lock_wait: Duration,
    /// Accept applied migrations whose file changed.
    pub allow_changed: bool,
    /// One transaction per migration instead of drizzle's one for the batch.
    pub per_migration: bool,
    /// The app's policy file: the relations `[[private]]` keeps from a
    /// runtime role get no grant from the runner.
    pub policy: roles::Exemptions,
    /// The migrator's DSN pointed at `DB_HOST`/`DB_PORT` when its own names
    /// another address (a pooler): the run checks both reach one database.
    pub direct: Option<Dsn>,
}

impl Config {
    /// A run's configuration from the environment's migration view, with
    /// the default lock timeouts, no policy file and no flags.
    pub fn new(env: MigrationEnv) -> Config {
        let (schema, table) = env.bookkeeping;
        Config {
            direct: env.migrator.direct_dsn(),
            migrator: env.migrator.name,
            dsn: env.migrator.dsn,
            table: Table::new(&schema, &table),
            app_schemas: env.app_schemas,
            runtime_users: env.runtime_users,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lock_wait: DEFAULT_LOCK_WAIT,
            allow_changed: false,
            per_migration: false,
            policy: roles::Exemptions::default(),
        }
    }

    pub(crate) fn db_name(&self) -> &str {
        self.dsn.dbname.as_deref().unwrap_or("?")
    }
}

/// `lock_timeout` of the migrating session unless the caller says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a run waits for another run's lock unless the caller says otherwise.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(120);

/// What a run hears about, for progress on a terminal.
pub trait Progress {
    fn waiting_for_lock(&mut self, _holder: Option<i32>, _waited: Duration) {}
    fn applying(&mut self, _migration: &Migration, _index: usize, _total: usize) {}
    fn applied(&mut self, _migration: &Migration, _elapsed: Duration) {}
    /// The run goes back to the `done`-th pending migration (0-based), to
    /// apply it and what follows again.
    fn retrying(&mut self, _done: usize) {}
    /// Something worth saying that stops nothing (an unused review entry).
    fn note(&mut self, _text: &str) {}
}

/// Progress nobody listens to.
pub struct Silent;
impl Progress for Silent {}
