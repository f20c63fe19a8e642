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

/// Opens two sessions through `dsn` and watches their server backends over
/// a few transactions each. A direct connection or a session-mode pooler
/// keeps each client on its own backend; a transaction-mode pooler shares
/// its idle backend between the two clients (PgBouncer reuses the most
/// recently freed one) or moves a client between backends.
pub fn pooling(dsn: &Dsn, var: &str) -> Result<Pooling> {
    let mut a = crate::connect(dsn, var)?;
    let mut b = crate::connect(dsn, var)?;
    let pid = |client: &mut Client| -> Result<i32> { Ok(client.query_one("SELECT pg_backend_pid()", &[])?.get(0)) };
    let (first_a, first_b) = (pid(&mut a)?, pid(&mut b)?);
    if first_a == first_b {
        return Ok(Pooling::Transaction);
    }
    for _ in 0..3 {
        if pid(&mut a)? != first_a || pid(&mut b)? != first_b {
            return Ok(Pooling::Transaction);
        }
    }
    Ok(Pooling::Session)
}

/// [`pooling`] with a session the caller already holds through `dsn` as
/// one of the two: one more session, a few round trips.
pub fn pooling_with(held: &mut Client, dsn: &Dsn, var: &str) -> Result<Pooling> {
    let pid = |client: &mut Client| -> Result<i32> { Ok(client.query_one("SELECT pg_backend_pid()", &[])?.get(0)) };
    let first = pid(held)?;
    let mut other = crate::connect(dsn, var)?;
    let other_first = pid(&mut other)?;
    for _ in 0..3 {
        let (mine, theirs) = (pid(held)?, pid(&mut other)?);
        if mine == other_first || theirs == first || mine != first || theirs != other_first {
            return Ok(Pooling::Transaction);
        }
    }
    Ok(if first == other_first { Pooling::Transaction } else { Pooling::Session })
}

/// Refuses when `held`, a session through `dsn`, reaches the server through
/// a transaction-mode pooler: `what` needs one server session for its run.
pub fn require_own_backend(held: &mut Client, dsn: &Dsn, var: &str, what: &str) -> Result<()> {
    refuse_pooled(pooling_with(held, dsn, var)?, dsn, var, what)
}

/// Refuses `dsn` when it reaches the server through a transaction-mode
/// pooler: `what` needs one server session for its whole run.
pub fn require_session(dsn: &Dsn, var: &str, what: &str) -> Result<()> {
    refuse_pooled(pooling(dsn, var)?, dsn, var, what)
}

fn refuse_pooled(found: Pooling, dsn: &Dsn, var: &str, what: &str) -> Result<()> {
    if found == Pooling::Transaction {
        bail!(
            "{var} ({}) reaches the server through a transaction-mode pooler: two sessions through it shared one \
             server backend, or one moved between backends. {what} needs one server session for its whole run \
             (its advisory lock and its transaction); point {var} at the server itself or at a session-mode \
             pool (PgBouncer: `pool_mode = session` for this database or user). Nothing was changed",
            dsn.address()
        );
    }
    Ok(())
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
        let row = client.query_one(
            "SELECT d.oid::int8, d.datname::text, pg_postmaster_start_time()::text FROM pg_database d \
             WHERE d.datname = current_database()",
            &[],
        )?;
        Ok(Identity { database_oid: row.get(0), database: row.get(1), started: row.get(2) })
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
    let found = Identity::read(client)?;
    if &found != expected {
        bail!(
            "{var} reaches {found}, but {direct} reaches {expected}: they are not the same database. A DSN may \
             point at a pooler, but the pooler must lead to the database DB_HOST, DB_PORT and APP_DB_NAME name; \
             fix the DSN or the pooler's [databases] entry"
        );
    }
    Ok(())
}
