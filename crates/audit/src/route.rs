//! How each DSN of the check reaches the server, learnt before any session
//! of the check sets anything. The check's sessions pin their search path
//! and run multi-statement probes, so each needs a server backend of its
//! own: through a session-mode pooler (or directly) the probes run through
//! the very DSN the app uses. Through a transaction-mode pooler they cannot:
//! the role is then proven on a direct session at `DB_HOST`/`DB_PORT`, as
//! the same login (a pooler changes no privilege), and the report says so;
//! without that address the check stops and says why. And every DSN must
//! reach the database the others reach: one server, one database.

use anyhow::{bail, Result};
use dbenv::pooling::{Identity, Pooling};
use dbenv::{keys, Dsn};

use crate::CheckConfig;

/// One DSN of the check: its variable, the DSN and its direct twin.
struct Route<'a> {
    var: &'static str,
    dsn: &'a Dsn,
    direct: Option<&'a Dsn>,
}

/// `config` with each DSN that reaches a transaction-mode pooler replaced
/// by its direct twin, and what the report must say about it.
pub fn settle(config: &CheckConfig) -> Result<(CheckConfig, Vec<String>)> {
    let mut routes = vec![
        Route { var: keys::DATABASE_URL, dsn: &config.runtime, direct: config.direct.runtime.as_ref() },
        Route { var: keys::DATABASE_SERVICE_URL, dsn: &config.service, direct: config.direct.service.as_ref() },
    ];
    if let Some(migrator) = &config.migrator {
        routes.push(Route { var: keys::DATABASE_MIGRATOR_URL, dsn: migrator, direct: config.direct.migrator.as_ref() });
    }
    // Each DSN's pooling and the database it reaches, side by side.
    let found: Vec<Result<(Pooling, Identity)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = routes.iter().map(|r| scope.spawn(move || learn(r.dsn, r.var))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("BUG: a route check panicked"))).collect()
    });
    let mut settled = config.clone();
    let mut notes = Vec::new();
    let mut first: Option<(&str, Identity)> = None;
    for (route, found) in routes.iter().zip(found) {
        let (pooling, identity) = found?;
        match &first {
            None => first = Some((route.var, identity.clone())),
            Some((var, expected)) => {
                dbenv::pooling::same_database(route.var, &identity, expected, var)?;
            }
        }
        if let Some(direct) = route.direct {
            let mut session = dbenv::connect_unpinned(direct, route.var, dbenv::pg_config(direct))?;
            let there = Identity::read(&mut session)?;
            let described = format!("{} at DB_HOST/DB_PORT ({})", route.var, direct.address());
            dbenv::pooling::same_database(route.var, &identity, &there, &described)?;
        }
        if pooling == Pooling::Transaction {
            let Some(direct) = route.direct else {
                bail!(
                    "{} ({}) reaches the server through a transaction-mode pooler, where db-check cannot keep a \
                     session: its sessions pin their search path and its probes span several statements. Set \
                     DB_HOST and DB_PORT to the server itself in the env file (the role is then proven there, as \
                     the same login) or point {} at a session-mode pool",
                    route.var,
                    route.dsn.address(),
                    route.var
                );
            };
            notes.push(format!(
                "{} ({}) reaches the server through a transaction-mode pooler: its role was proven on a direct \
                 session at DB_HOST/DB_PORT ({}) as the same login; a pooler changes no privilege, but db-check's \
                 sessions (a pinned search path, probes of several statements) cannot run through it",
                route.var,
                route.dsn.address(),
                direct.address()
            ));
            *settled.dsn_mut(route.var) = direct.clone();
        }
    }
    Ok((settled, notes))
}

/// How `dsn` reaches the server and the database it reaches, from sessions
/// that set nothing.
fn learn(dsn: &Dsn, var: &str) -> Result<(Pooling, Identity)> {
    let (pooling, mut held) = dbenv::pooling::pooling_and_session(dsn, var)?;
    Ok((pooling, Identity::read(&mut held)?))
}

impl CheckConfig {
    fn dsn_mut(&mut self, var: &str) -> &mut Dsn {
        match var {
            keys::DATABASE_SERVICE_URL => &mut self.service,
            keys::DATABASE_MIGRATOR_URL => self.migrator.as_mut().unwrap_or(&mut self.runtime),
            _ => &mut self.runtime,
        }
    }
}
