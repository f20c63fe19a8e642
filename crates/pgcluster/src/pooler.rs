//! A throwaway PgBouncer in front of a [`TestCluster`], for tests: Debian's
//! `pgbouncer` binary, as the cluster's OS user (PgBouncer refuses root), on
//! a free port, in session or transaction pool mode, gone when the value
//! drops. Clients log in with SCRAM; PgBouncer looks their verifiers up
//! with `auth_query` as `auth_user` (see [`AUTH_SETUP`]).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::osuser::prepare;
use crate::server::{free_port, port_answers};
use crate::TestCluster;

/// PgBouncer's `pool_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for its whole life.
    Session,
    /// A server connection per transaction: session state does not carry.
    Transaction,
}

impl PoolMode {
    fn word(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// The role PgBouncer logs in as to look verifiers up.
pub const AUTH_USER: &str = "pgbouncer_auth";

/// What database `db` needs for [`AUTH_USER`]'s `auth_query`, run as a
/// superuser in each database clients reach through the pooler (PgBouncer
/// 1.18 runs the query in the database the client asks for): `CONNECT` for
/// the auth user (the model revokes it from `PUBLIC`) and the lookup
/// function. The function reads `pg_shadow` with its owner's rights, so it
/// is what must stay narrow: its own schema, `search_path` pinned,
/// `EXECUTE` for the auth user alone (never `PUBLIC`, never a runtime role:
/// a verifier is an offline password-guessing target), and no superuser's
/// verifier.
pub fn auth_setup(db: &str) -> String {
    format!("GRANT CONNECT ON DATABASE \"{db}\" TO {AUTH_USER}; {AUTH_FUNCTION}")
}

const AUTH_FUNCTION: &str = "\
    CREATE SCHEMA IF NOT EXISTS pgbouncer; \
    REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC; \
    CREATE OR REPLACE FUNCTION pgbouncer.user_lookup(i_username text, OUT uname text, OUT phash text) \
      RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS \
      $$ SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow WHERE usename = i_username AND NOT usesuper $$; \
    REVOKE ALL ON FUNCTION pgbouncer.user_lookup(text) FROM PUBLIC; \
    GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth; \
    GRANT EXECUTE ON FUNCTION pgbouncer.user_lookup(text) TO pgbouncer_auth;";

/// The `auth_query` PgBouncer runs.
pub const AUTH_QUERY: &str = "SELECT uname, phash FROM pgbouncer.user_lookup($1)";

/// What a test's PgBouncer has besides the defaults.
#[derive(Clone, Debug, Default)]
pub struct PoolerOptions<'a> {
    /// More users in its `auth_file` (name, password): they log in without
    /// `auth_query` (a superuser, whom the lookup function never answers for).
    pub users: &'a [(&'a str, &'a str)],
    /// `[pgbouncer]` settings, after the defaults (the last wins).
    pub settings: &'a [(&'a str, &'a str)],
    /// `[databases]` lines before the catch-all `*` entry.
    pub databases: &'a [String],
}

/// A running PgBouncer.
pub struct TestPooler {
    child: Child,
    port: u16,
    dir: PathBuf,
    pub mode: PoolMode,
}

impl TestPooler {
    /// Starts PgBouncer in front of `cluster`, every database passed
    /// through. Creates [`AUTH_USER`] with `auth_password` on the cluster;
    /// each database still needs [`AUTH_SETUP`].
    pub fn start(cluster: &TestCluster, mode: PoolMode, auth_password: &str) -> Result<TestPooler> {
        TestPooler::start_with(cluster, mode, auth_password, &PoolerOptions::default())
    }

    /// [`TestPooler::start`] with [`PoolerOptions`].
    pub fn start_with(
        cluster: &TestCluster,
        mode: PoolMode,
        auth_password: &str,
        options: &PoolerOptions<'_>,
    ) -> Result<TestPooler> {
        let users = options.users;
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("pgbouncer is not installed (Debian: apt-get install pgbouncer)")?;
        let mut admin = postgres::Client::connect(&cluster.admin_url("postgres"), postgres::NoTls)?;
        let exists: bool =
            admin.query_one("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", &[&AUTH_USER])?.get(0);
        if !exists {
            admin.batch_execute(&format!("CREATE ROLE {AUTH_USER} LOGIN PASSWORD '{auth_password}'"))?;
        }
        let port = free_port()?;
        let dir = cluster.root().join(format!("pgbouncer-{port}"));
        fs::create_dir_all(&dir)?;
        let databases: String = options.databases.iter().map(|line| format!("{line}\n")).collect();
        let settings: String = options.settings.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let ini = format!(
            "[databases]\n{databases}* = host=127.0.0.1 port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {dir}/userlist.txt\nauth_user = {AUTH_USER}\n\
             auth_query = {AUTH_QUERY}\npool_mode = {}\nmax_client_conn = 200\ndefault_pool_size = 20\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\nignore_startup_parameters = options\n{settings}",
            cluster.port(),
            mode.word(),
            dir = dir.display(),
        );
        fs::write(dir.join("pgbouncer.ini"), ini)?;
        let mut userlist = format!("\"{AUTH_USER}\" \"{auth_password}\"\n");
        for (name, password) in users {
            userlist.push_str(&format!("\"{name}\" \"{password}\"\n"));
        }
        fs::write(dir.join("userlist.txt"), userlist)?;
        if let Some(user) = cluster.os_user() {
            user.chown_tree(&dir)?;
        }
        let mut command = Command::new(binary);
        command.arg(dir.join("pgbouncer.ini")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        prepare(&mut command, cluster.os_user(), true);
        let child = command.spawn().with_context(|| format!("start `{binary}`"))?;
        let mut pooler = TestPooler { child, port, dir, mode };
        let started = Instant::now();
        while !port_answers("127.0.0.1", port) {
            if started.elapsed() > Duration::from_secs(20) || !matches!(pooler.child.try_wait(), Ok(None)) {
                bail!("pgbouncer did not start; its log:\n{}", pooler.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(pooler)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything PgBouncer has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for TestPooler {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
