//! `cargo xtask db-rotate`: a role's password rotated without downtime,
//! through its two logins ([`crate::logins`]). `start` readies the login
//! the environment does not use with a new password and proves it; the
//! caller publishes it; `finish` retires the other login once no session
//! of it is left.
//!
//! Every step decides from the catalog what is already done, so a re-run
//! converges, and no step leaves the role without a login that works.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dbenv::{RoleKind, Secret, ServerVersion, Settings};
use postgres::types::Type;
use postgres::Client;

use crate::logins::{LoginNames, RoleLogins};
use crate::sql::{Change, Statement};

/// A new password: 32 characters of `[A-Za-z0-9]` (190 bits) from the
/// OS's random source. Safe in a URL and in single quotes as it is.
pub fn new_password() -> Result<Secret> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut password = String::with_capacity(32);
    while password.len() < 32 {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::format_err!("the OS random source failed: {e}"))?;
        // 62 × 4 = 248: bytes above are dropped, so every character is equally likely.
        for byte in bytes.iter().filter(|b| **b < 248).take(32 - password.len()) {
            password.push(ALPHABET[usize::from(*byte % 62)] as char);
        }
    }
    Ok(Secret::new(password))
}

/// One role's rotation: its names, the login the environment uses and the
/// one it readies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub kind: RoleKind,
    pub names: LoginNames,
    /// The login the environment uses now.
    pub active: String,
    /// The other login: `start` readies it, `finish` (once the environment
    /// uses the new one) retires it.
    pub other: String,
}

impl Rotation {
    pub fn of(settings: &Settings, kind: RoleKind) -> Result<Rotation> {
        let creds = settings.role(kind);
        let names = LoginNames::of(&creds.name)?;
        let other = names.other(&creds.login).to_string();
        Ok(Rotation { kind, names, active: creds.login.clone(), other })
    }
}

/// A login or gate `db-rotate` would have to change but did not make, or
/// made and someone changed: nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongShape {
    pub role: String,
    pub problems: Vec<crate::logins::Shape>,
}

impl fmt::Display for WrongShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        write!(
            f,
            "nothing was changed: the logins of `{}` are not as db-rotate makes them: {}",
            self.role,
            what.join("; ")
        )
    }
}

impl std::error::Error for WrongShape {}

/// The admin's session for rotating: the statements' text stays out of the
/// server log where the admin may say so (a verifier is not a password, but
/// it is not printed either).
pub fn admin_session(settings: &Settings) -> Result<Client> {
    let admin_var = "the admin DSN (POSTGRES_ROOT_USER/POSTGRES_ROOT_PASSWORD or DATABASE_ROOT_URL)";
    // Its lock and its SETs need one server session: never a
    // transaction-mode pooler, found by behaviour before anything is set.
    let dsn = settings.admin_app_dsn();
    let mut client = dbenv::pooling::connect_own_backend(&dsn, admin_var, dbenv::pg_config(&dsn), "db-rotate")?;
    crate::snapshot::prepare_session(&mut client, crate::snapshot::Purpose::Provision { read_only: false })?;
    client.batch_execute("SET application_name = 'cargo xtask db-rotate'")?;
    Ok(client)
}

/// The session advisory lock a `db-rotate` run holds in its admin session,
/// from its first check to its last change ("dbrotate" in ASCII).
const ROTATION_LOCK: i64 = 0x6462_726f_7461_7465;

/// Takes the rotation lock for this admin session, or refuses: two runs at
/// once could each ready a password and publish the other's.
pub fn lock(admin: &mut Client) -> Result<()> {
    let held: bool = admin.query_one("SELECT pg_try_advisory_lock($1)", &[&ROTATION_LOCK])?.get(0);
    if !held {
        bail!(
            "another `cargo xtask db-rotate` is running against this database (it holds the rotation lock); wait for \
             it to end, then run again. Nothing was changed"
        );
    }
    Ok(())
}

/// The role's logins, refused unless they are as db-rotate makes them and
/// the role is a role (not itself a login or gate of another: an env file
/// that names a login without `APP_DB_USER` would make it look like one).
fn checked_logins(admin: &mut Client, settings: &Settings, rotation: &Rotation) -> Result<RoleLogins> {
    let logins = RoleLogins::read(admin, &rotation.names, &settings.db_name)?;
    let problems = logins.problems(&settings.admin.name);
    if !problems.is_empty() {
        return Err(WrongShape { role: rotation.names.role.clone(), problems }.into());
    }
    match &logins.role {
        None => bail!("role `{}` does not exist: run `cargo xtask db-provision` first", rotation.names.role),
        Some(row) if row.comment == crate::logins::LOGIN_MARKER || row.comment == crate::logins::GATE_MARKER => bail!(
            "`{}` is a login db-rotate made for another role, not a role: set {} to the role's name in the env file",
            rotation.names.role,
            rotation.kind.user_var()
        ),
        Some(_) => Ok(logins),
    }
}

/// Refuses, changing nothing, a start that would touch a login that may be
/// in use: the other login must be absent or retired (else the rotation
/// before is not finished, and deployed instances may still use it).
pub fn check_start(admin: &mut Client, settings: &Settings, rotation: &Rotation) -> Result<RoleLogins> {
    let logins = checked_logins(admin, settings, rotation)?;
    let other = if rotation.other == rotation.names.role { &logins.role } else { &logins.alt };
    if other.as_ref().is_some_and(|row| row.login) {
        bail!(
            "`{}` can still log in: the rotation before is not finished, and instances may still use it. Run \
             `cargo xtask db-rotate {} --finish` with the env files in use (they name `{}`), then start again. \
             Nothing was changed",
            rotation.other,
            rotation.names.role,
            rotation.active
        );
    }
    Ok(logins)
}

/// Readies the other login with `password`, in one transaction: the gate
/// and the alternate login when missing, else LOGIN and the password.
/// Refuses, changing nothing, what [`check_start`] refuses.
pub fn start(admin: &mut Client, settings: &Settings, rotation: &Rotation, password: &Secret) -> Result<()> {
    let logins = check_start(admin, settings, rotation)?;
    let version = ServerVersion::read(admin)?;
    let verifier = crate::scram::new_verifier(password);
    let changes = logins.prepare(&rotation.other, verifier, &settings.db_name, version);
    let mut tx = admin.transaction()?;
    for change in changes {
        tx.batch_execute(&Statement::new(change).text())
            .with_context(|| format!("ready the login `{}`", rotation.other))?;
    }
    tx.commit()?;
    Ok(())
}

/// Logs in as the standby login over the environment's own DSN (TLS
/// settings included) and proves it acts as its role: `current_user` is
/// the role, and what the role does, it does. For the migrator a table it
/// creates (rolled back) is the migrator's, with the runtime roles' grants;
/// the runtime role may not create one; the service role bypasses RLS.
/// Through a transaction-mode pooler the login is shown to log in there and
/// proven on a direct session at `DB_HOST`/`DB_PORT` (nothing is set in a
/// backend the app's sessions share): that address is returned then.
pub fn prove(settings: &Settings, rotation: &Rotation, password: &Secret) -> Result<Option<String>> {
    let creds = settings.role(rotation.kind);
    let dsn = creds.dsn.with_login(&rotation.other, password);
    let direct = creds.direct_dsn().map(|d| d.with_login(&rotation.other, password));
    let var = rotation.kind.dsn_var();
    let who = (rotation.other.as_str(), rotation.names.role.as_str());
    let reached = dbenv::pooling::session_for((&dsn, var, "db-rotate"), direct.as_ref(), who, dbenv::pg_config)
        .with_context(|| format!("log in as `{}`", rotation.other))?;
    let mut client = reached.client;
    client.batch_execute("SET application_name = 'cargo xtask db-rotate (proof)'")?;
    let row = client.query_one(
        "SELECT current_user::text, session_user::text, r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user",
        &[],
    )?;
    let (current, session, bypass): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
    if current != rotation.names.role || session != rotation.other {
        bail!("`{}` logs in as `{session}` acting as `{current}`, not as `{}`", rotation.other, rotation.names.role);
    }
    if bypass != crate::model::Attribute::BypassRls.wanted(rotation.kind) {
        bail!("`{}` acts as a role whose BYPASSRLS is {bypass}, not as the model says", rotation.other);
    }
    let schema = settings.schemas.first().context("no app schema")?;
    let table = format!("{}.{}", dbenv::quote_ident(schema), dbenv::quote_ident("_db_rotate_proof"));
    let mut tx = client.transaction()?;
    let created = tx.batch_execute(&format!("CREATE TABLE {table} (id int)"));
    match (rotation.kind, created) {
        (RoleKind::Migrator, Ok(())) => {
            let runtime = &settings.runtime.name;
            let row = tx.query_one(
                "SELECT c.relowner::regrole::text, has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE') \
                 FROM pg_class c WHERE c.oid = to_regclass($2)",
                &[runtime, &table],
            )?;
            let (owner, granted): (String, bool) = (row.get(0), row.get(1));
            if owner != rotation.names.role || !granted {
                bail!(
                    "a table `{}` creates is owned by `{owner}` (runtime grants: {granted}), not by `{}` with the \
                     runtime grants",
                    rotation.other,
                    rotation.names.role
                );
            }
        }
        (RoleKind::Migrator, Err(error)) => {
            return Err(anyhow::Error::new(error).context(format!("`{}` cannot create a table", rotation.other)))
        }
        (_, Ok(())) => bail!("`{}` could create a table: it must not", rotation.other),
        (_, Err(error)) if error.code().map(|c| c.code()) == Some("42501") => {}
        (_, Err(error)) => return Err(anyhow::Error::new(error).context("try a CREATE TABLE that must be denied")),
    }
    tx.rollback()?;
    Ok(reached.direct)
}

/// One session of a login, as `--finish` names those that remain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub pid: i32,
    pub database: String,
    pub application: String,
    pub client: String,
    pub started: String,
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} in `{}` (application `{}`, client {}, since {})",
            self.pid, self.database, self.application, self.client, self.started
        )
    }
}

/// The sessions of `login` in every database of the cluster.
pub fn sessions_of(admin: &mut Client, login: &str) -> Result<Vec<Session>> {
    let rows = admin.query_typed(
        "SELECT pid, coalesce(datname::text, ''), coalesce(application_name, ''), \
                coalesce(host(client_addr), 'local'), \
                coalesce(to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), 'unknown') \
         FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid() ORDER BY pid",
        &[(&login, Type::TEXT)],
    )?;
    Ok(rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            database: r.get(1),
            application: r.get(2),
            client: r.get(3),
            started: r.get(4),
        })
        .collect())
}

/// What `finish` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The old login is retired (or already was).
    Retired { login: String, terminated: usize },
    /// Sessions of the old login remain after the wait: nothing retired.
    Busy { login: String, sessions: Vec<Session> },
}

/// Retires the login the environment no longer uses once none of its
/// sessions remains: waits up to `wait`, then (with `terminate`) ends that
/// login's sessions and only those; else reports them and retires nothing.
/// First it logs in over the environment's DSN: the login that stays must
/// work, or nothing is retired.
pub fn finish(
    admin: &mut Client,
    settings: &Settings,
    rotation: &Rotation,
    wait: Duration,
    terminate: bool,
) -> Result<Finished> {
    let creds = settings.role(rotation.kind);
    let var = rotation.kind.dsn_var();
    // Unpinned, one fully qualified read: through a transaction-mode pooler
    // a SET would stay on a backend the app's sessions share.
    let mut stays = dbenv::connect_unpinned(&creds.dsn, var, dbenv::pg_config(&creds.dsn))
        .with_context(|| format!("nothing was retired: `{}` (what {var} uses) cannot log in", rotation.active))?;
    let current = dbenv::pooling::simple_row(&mut stays, "SELECT current_user")?.remove(0).unwrap_or_default();
    if current != rotation.names.role {
        bail!("nothing was retired: {var} logs in as `{}` acting as `{current}`", rotation.active);
    }
    drop(stays);
    let old = rotation.other.clone();
    let exists = admin.query_typed("SELECT 1 FROM pg_roles WHERE rolname = $1", &[(&old, Type::TEXT)])?;
    if exists.is_empty() {
        // Never made: a role that was never rotated has nothing to retire.
        return Ok(Finished::Retired { login: old, terminated: 0 });
    }
    // Never retire a role someone else made under that name.
    checked_logins(admin, settings, rotation)?;
    let started = Instant::now();
    let mut sessions = sessions_of(admin, &old)?;
    while !sessions.is_empty() && started.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(200).min(wait.saturating_sub(started.elapsed())));
        sessions = sessions_of(admin, &old)?;
    }
    if !sessions.is_empty() && !terminate {
        return Ok(Finished::Busy { login: old, sessions });
    }
    // No new session from here on; then the ones left (or that slipped in
    // since the last look) are ended with --terminate, or LOGIN comes back.
    run(admin, vec![Change::SetAttributes { role: old.clone(), attributes: "NOLOGIN".into() }])?;
    let mut terminated = 0;
    if terminate {
        let rows = admin
            .query_typed(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
                &[(&old, Type::TEXT)],
            )
            .with_context(|| format!("end the sessions of `{old}` (the admin needs pg_signal_backend)"))?;
        terminated = rows.iter().filter(|row| row.get::<_, bool>(0)).count();
    }
    let left = sessions_of(admin, &old)?;
    if !left.is_empty() && !terminate {
        run(admin, vec![Change::SetAttributes { role: old.clone(), attributes: "LOGIN".into() }])?;
        return Ok(Finished::Busy { login: old, sessions: left });
    }
    run(admin, vec![Change::ClearPassword { role: old.clone() }])?;
    Ok(Finished::Retired { login: old, terminated })
}

/// Runs `changes` as the admin in one transaction.
fn run(admin: &mut Client, changes: Vec<Change>) -> Result<()> {
    let mut tx = admin.transaction()?;
    for change in changes {
        tx.batch_execute(&Statement::new(change).text())?;
    }
    tx.commit()?;
    Ok(())
}
