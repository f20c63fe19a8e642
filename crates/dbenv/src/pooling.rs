//! What stands between a DSN and the server, found by behaviour, never by
//! port numbers or names: a transaction-mode pooler (PgBouncer's
//! `pool_mode = transaction` or `statement`) hands each transaction to
//! whichever server session is free, so session state (an advisory lock, a
//! `SET`, a batch that spans statements) does not carry from one
//! transaction to the next. And which database a session really reached:
//! a DSN may name a pooler on another host or port than `DB_HOST`/`DB_PORT`,
//! accepted when both reach one database of one running server.

use std::fmt;

use anyhow::{bail, Result};
use postgres::Client;

use crate::dsn::Dsn;

/// How a DSN's sessions map to server sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// One server session per client session, for its whole life (a direct
    /// connection, or a session-mode pooler).
    Session,
    /// Two client sessions shared one server session, or one client session
    /// moved to another between transactions.
    Transaction,
}

/// Opens a session through `dsn` (as `config` says) and learns, before it
/// sets anything, whether it has a server backend of its own: at once when
/// the backend's client is this process's own socket (nothing between
/// them, [`crate::peer`]), else by the watch of [`own_backend`].
pub fn connect_own_backend(dsn: &Dsn, var: &str, config: postgres::Config, what: &str) -> Result<Client> {
    let mut held = crate::connect_unpinned(dsn, var, config)?;
    if crate::peer::talks_to_us(&mut held)? {
        return settle(held, Pooling::Session, dsn, var, what);
    }
    let mut other = crate::connect_unpinned(dsn, var, crate::pg_config(dsn))?;
    let found = watch(&mut held, &mut other)?;
    // Closing the second session costs a round trip nobody waits for.
    std::thread::spawn(move || drop(other));
    settle(held, found, dsn, var, what)
}

/// `held`, a session through `dsn` that has set nothing yet, checked for a
/// server backend of its own: a second session, and both watched over a
/// few transactions. A direct connection or a session-mode pooler keeps
/// each client on its own backend; a transaction-mode pooler shares its
/// idle backend between the two (PgBouncer reuses the most recently freed
/// one) or moves a client between backends. Refused then, naming `what`
/// needs one session; otherwise returned with its search path pinned.
pub fn own_backend(mut held: Client, dsn: &Dsn, var: &str, what: &str) -> Result<Client> {
    if crate::peer::talks_to_us(&mut held)? {
        return settle(held, Pooling::Session, dsn, var, what);
    }
    let mut other = crate::connect_unpinned(dsn, var, crate::pg_config(dsn))?;
    let found = watch(&mut held, &mut other)?;
    settle(held, found, dsn, var, what)
}

/// How `dsn` reaches the server, from two sessions that set nothing, the
/// first opened as `config` says and returned as it is (unpinned: fully
/// qualified queries only). Through a session pool or directly it has a
/// backend of its own: pinned ([`crate::pin`]), it may serve the caller.
pub fn pooling_and_session(dsn: &Dsn, var: &str, config: postgres::Config) -> Result<(Pooling, Client)> {
    let mut held = crate::connect_unpinned(dsn, var, config.clone())?;
    if crate::peer::talks_to_us(&mut held)? {
        return Ok((Pooling::Session, held));
    }
    // The second session only watches: the caller's configuration (a notice
    // collector, say) is the held one's.
    let mut other = crate::connect_unpinned(dsn, var, crate::pg_config(dsn))?;
    let found = watch(&mut held, &mut other)?;
    // Closing the second session costs a round trip nobody waits for.
    std::thread::spawn(move || drop(other));
    Ok((found, held))
}

/// Which of the two sessions asks, turn by turn (`true`: the held one),
/// after each asked once. Irregular on purpose: a session asking twice in
/// a row catches a pool that hands out backends in turn (PgBouncer's
/// `server_round_robin`), alternation catches one that reuses the last
/// freed backend (its default). With the two checks after pinning, a
/// random pick among two backends looks steady with odds of 2^-9.
const TURNS: [bool; 6] = [true, true, false, false, true, false];

/// The server backend a session's transaction ran on. The sessions set no
/// search path yet: every name is qualified.
fn backend(client: &mut Client) -> Result<i32> {
    let text = simple_row(client, "SELECT pg_catalog.pg_backend_pid()")?.remove(0).unwrap_or_default();
    Ok(text.parse()?)
}

/// The backends of two sessions over [`TURNS`]: each must keep its own.
fn watch(held: &mut Client, other: &mut Client) -> Result<Pooling> {
    let (first, other_first) = (backend(held)?, backend(other)?);
    if first == other_first {
        return Ok(Pooling::Transaction);
    }
    for held_asks in TURNS {
        let moved = if held_asks { backend(held)? != first } else { backend(other)? != other_first };
        if moved {
            return Ok(Pooling::Transaction);
        }
    }
    Ok(Pooling::Session)
}

/// Refuses a transaction-mode pool; otherwise pins `held` and checks the
/// pin took on the backend it keeps (a pool that fooled the watch would
/// show another backend or an unpinned search path here).
fn settle(held: Client, found: Pooling, dsn: &Dsn, var: &str, what: &str) -> Result<Client> {
    if found == Pooling::Transaction {
        bail!(
            "{var} ({}) reaches the server through a transaction-mode pooler: two sessions through it shared one \
             server backend, or one moved between backends. {what} needs one server session for its whole run \
             (its advisory lock and its transactions); point {var} at the server itself or at a session-mode \
             pool (PgBouncer: `pool_mode = session` for this database or user). Nothing was changed",
            dsn.address()
        );
    }
    let mut held = crate::pin(held)?;
    let before = backend(&mut held)?;
    let row = simple_row(&mut held, "SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('search_path')")?;
    let (pid, path) = (row[0].as_deref().unwrap_or_default(), row[1].as_deref().unwrap_or_default());
    if pid != before.to_string() || path != "pg_catalog, pg_temp" {
        bail!(
            "{var} ({}) changed server backend between two transactions of one session: a transaction-mode \
             pooler. {what} needs one server session; point {var} at the server itself or at a session-mode \
             pool. Nothing was changed",
            dsn.address()
        );
    }
    Ok(held)
}

/// The one row of `sql` as text, through the simple protocol: a session
/// that may share its backend (a transaction-mode pool) prepares no named
/// statement there, where another client's would collide with it.
pub fn simple_row(client: &mut Client, sql: &str) -> Result<Vec<Option<String>>> {
    for message in client.simple_query(sql)? {
        if let postgres::SimpleQueryMessage::Row(row) = message {
            return Ok((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
        }
    }
    bail!("BUG: `{sql}` returned no row")
}

/// Which database of which running server a session reached: the
/// database's OID and name and the server's start time (to the
/// microsecond). A pooler passes these through; another server or another
/// database of the same server answers differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub database_oid: i64,
    pub database: String,
    pub started: String,
}

impl Identity {
    pub fn read(client: &mut Client) -> Result<Identity> {
        // Qualified throughout: the session may not have pinned its search path.
        let mut row = simple_row(
            client,
            "SELECT d.oid::pg_catalog.int8, d.datname::pg_catalog.text, \
                    pg_catalog.to_char(pg_catalog.timezone('UTC', pg_catalog.pg_postmaster_start_time()), \
                                       'YYYY-MM-DD HH24:MI:SS.US') \
             FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()",
        )?
        .into_iter()
        .map(Option::unwrap_or_default);
        let mut next = || row.next().unwrap_or_default();
        Ok(Identity { database_oid: next().parse()?, database: next(), started: next() })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database `{}` (OID {}) of a server started {}", self.database, self.database_oid, self.started)
    }
}

/// Refuses when the session through `var` reached another database than
/// `expected` (a session opened directly, as `direct` describes).
pub fn require_same_database(client: &mut Client, var: &str, expected: &Identity, direct: &str) -> Result<()> {
    same_database(var, &Identity::read(client)?, expected, direct)
}

/// Refuses when `found` (through `var`) is not `expected` (what `direct` reached).
pub fn same_database(var: &str, found: &Identity, expected: &Identity, direct: &str) -> Result<()> {
    if found != expected {
        bail!(
            "{var} reaches {found}, but {direct} reaches {expected}: they are not the same database. A DSN may \
             point at a pooler, but the pooler must lead to the database DB_HOST, DB_PORT and APP_DB_NAME name; \
             fix the DSN or the pooler's [databases] entry"
        );
    }
    Ok(())
}

/// A session for a command that sets things in it (a pinned search path,
/// `SET`s, a proof of several statements), reached through `dsn` as `login`
/// acting as `role`. With a server session of its own (directly, or through
/// a session pool) it is the DSN's own session, pinned. Through a
/// transaction-mode pooler nothing may be set there (it would stay on a
/// backend the app's sessions share): the pooled session only shows, with
/// fully qualified reads, that the login logs in through the pooler as
/// `role`, in the database a direct session at `direct` (`DB_HOST`/`DB_PORT`,
/// the same login) then reaches; the command (`what`) goes on there, on a
/// session with a backend of its own. `config` opens a session to a DSN.
pub fn session_for(
    (dsn, var, what): (&Dsn, &str, &str),
    direct: Option<&Dsn>,
    (login, role): (&str, &str),
    config: impl Fn(&Dsn) -> postgres::Config,
) -> Result<Reached> {
    let (pooling, mut held) = pooling_and_session(dsn, var, config(dsn))?;
    if pooling == Pooling::Session {
        // Pinned, and checked that the pin held on the backend it keeps.
        return Ok(Reached { client: settle(held, pooling, dsn, var, what)?, direct: None });
    }
    let Some(direct) = direct else {
        bail!(
            "{var} ({}) reaches the server through a transaction-mode pooler, where nothing may be set in a session \
             (it would stay on a backend the app's sessions share): set DB_HOST and DB_PORT to the server itself in \
             the env file (the login is then proven there) or point {var} at a session-mode pool",
            dsn.address()
        );
    };
    let who = simple_row(&mut held, "SELECT session_user, current_user")?;
    let (session, current) = (who[0].as_deref().unwrap_or_default(), who[1].as_deref().unwrap_or_default());
    if session != login || current != role {
        bail!(
            "{var} ({}) logs in as `{session}` acting as `{current}`, not as `{login}` acting as `{role}`: fix the \
             DSN or the pooler (a `[databases]` entry that forces a user, a `connect_query` that sets a role)",
            dsn.address()
        );
    }
    let identity = Identity::read(&mut held)?;
    drop(held);
    // DB_HOST/DB_PORT may themselves lead to a pooler (unset, they come
    // from the first DSN): the session there must have a backend of its own.
    let mut client = connect_own_backend(direct, "DB_HOST/DB_PORT", config(direct), what)?;
    let described = format!("{var} at DB_HOST/DB_PORT ({})", direct.address());
    require_same_database(&mut client, &described, &identity, &format!("{var} ({})", dsn.address()))?;
    Ok(Reached { client, direct: Some(direct.address()) })
}

/// What [`session_for`] opened.
pub struct Reached {
    pub client: Client,
    /// Where the session went instead when the DSN reaches a
    /// transaction-mode pooler: `host:port` at `DB_HOST`/`DB_PORT`.
    pub direct: Option<String>,
}
