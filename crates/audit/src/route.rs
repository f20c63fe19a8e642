//! How each DSN of the check reaches the server, learnt before any session
//! of the check sets anything. The check's sessions pin their search path
//! and run multi-statement probes, so each needs a server backend of its
//! own: through a session-mode pooler (or directly) the probes run through
//! the very DSN the app uses. Through a transaction-mode pooler they cannot:
//! the role is then proven on a direct session at `DB_HOST`/`DB_PORT`, as
//! the same login (a pooler changes no privilege), and the report says so;
//! without that address the check stops and says why. And every DSN must
//! reach the database the others reach: one server, one database.
//!
//! A hot standby (`pg_is_in_recovery()`) is found here too: its catalogs are
//! the primary's as replayed, so the catalog audit runs; every write there
//! fails as read-only (25006), which is never a denial, so the live write
//! probes are not provable there and are marked so.

use anyhow::{bail, Result};
use dbenv::pooling::{Identity, Pooling};
use dbenv::{keys, Dsn};
use postgres::Client;

use crate::probes::{probe_config, ProbeSession};
use crate::CheckConfig;

/// One DSN of the check: its variable, the DSN, its direct twin, and the
/// login and role its sessions must be.
struct Route<'a> {
    var: &'static str,
    dsn: &'a Dsn,
    direct: Option<&'a Dsn>,
    spec: &'a roles::RoleSpec,
}

/// The server is a hot standby: when it last replayed a transaction, and
/// how many seconds before now.
#[derive(Clone, Debug)]
pub struct Standby {
    pub replayed: Option<String>,
    pub lag_seconds: Option<f64>,
}

impl Standby {
    pub fn describe(&self) -> String {
        let behind = match (&self.replayed, self.lag_seconds) {
            (Some(at), Some(lag)) => format!("it last replayed a transaction at {at}, {lag:.1} s ago"),
            _ => "it has replayed no transaction since it started".to_string(),
        };
        format!(
            "the server is a hot standby (in recovery): the catalog audit reads the primary's catalogs as replayed \
             ({behind}); every write there fails as read-only (25006), so the live write probes are not provable \
             on a standby and are marked unproven, never denied. Run db-check against the primary for them"
        )
    }
}

/// Marks every probe a standby answered read-only (25006) as not provable
/// there: a read-only refusal says nothing of the role's privileges.
pub fn read_only_is_unproven(probes: &mut [crate::report::Probe]) {
    for probe in probes.iter_mut().filter(|p| p.observed.starts_with("error 25006")) {
        probe.observed = "not provable on a hot standby (read-only, 25006)".to_string();
        probe.verdict = crate::report::Verdict::Unproven;
    }
}

/// What [`settle`] learnt: the configuration to run, the report's notes,
/// and whether the server is a standby.
pub struct Settled {
    pub config: CheckConfig,
    pub notes: Vec<String>,
    pub standby: Option<Standby>,
    /// The database every DSN reaches.
    pub identity: Identity,
    /// The sessions the routes were learnt on, for the check to go on with.
    pub held: Held,
}

/// The session each DSN was learnt on, kept where it has a server backend
/// of its own (directly or through a session pool) and the check goes on
/// through that DSN: it has set nothing (unpinned, fully qualified reads
/// only), so it serves as a new session would, one login fewer. The
/// runtime roles' were opened as their probe sessions are ([`probe_config`]).
#[derive(Default)]
pub struct Held {
    pub runtime: Option<ProbeSession>,
    pub service: Option<ProbeSession>,
    pub migrator: Option<Client>,
}

/// `config` with each DSN that reaches a transaction-mode pooler replaced
/// by its direct twin, and what the report must say about it.
pub fn settle(config: &CheckConfig) -> Result<Settled> {
    let model = &config.model;
    let mut routes = vec![
        Route {
            var: keys::DATABASE_URL,
            dsn: &config.runtime,
            direct: config.direct.runtime.as_ref(),
            spec: &model.runtime,
        },
        Route {
            var: keys::DATABASE_SERVICE_URL,
            dsn: &config.service,
            direct: config.direct.service.as_ref(),
            spec: &model.service,
        },
    ];
    if let Some(migrator) = &config.migrator {
        let direct = config.direct.migrator.as_ref();
        routes.push(Route { var: keys::DATABASE_MIGRATOR_URL, dsn: migrator, direct, spec: &model.migrator });
    }
    // Each DSN's pooling and the database it reaches, side by side.
    let found: Vec<Result<Learnt>> = std::thread::scope(|scope| {
        let handles: Vec<_> = routes.iter().map(|r| scope.spawn(move || learn(r))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("BUG: a route check panicked"))).collect()
    });
    let mut settled = config.clone();
    let mut notes = Vec::new();
    let mut first: Option<(&str, Identity)> = None;
    let mut standby = None;
    let mut held = Held::default();
    for (route, found) in routes.iter().zip(found) {
        let Learnt { pooling, identity, standby: recovery, session } = found?;
        standby = standby.or(recovery);
        if pooling == Pooling::Session {
            held.keep(route.var, session);
        }
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
    if let Some(standby) = &standby {
        settled.write_probes = false;
        notes.push(standby.describe());
    }
    let Some((_, identity)) = first else { bail!("BUG: a check without a DSN") };
    settled.reached = Some(identity.clone());
    Ok(Settled { config: settled, notes, standby, identity, held })
}

/// What [`learn`] found of one DSN, and the session it found it on.
struct Learnt {
    pooling: Pooling,
    identity: Identity,
    standby: Option<Standby>,
    session: (Client, Option<crate::probes::Notices>),
}

/// How a DSN reaches the server, the database it reaches, and whether the
/// server is a standby, from sessions that set nothing (every name
/// qualified). A session through a transaction-mode pool must log in and
/// act as the role the check proves before a direct session may stand in
/// for it: a pooler may force another user (`[databases] … user=`) or set
/// one (`connect_query`). Elsewhere the session probe, run through the very
/// DSN, reports a session that is not its role as a failure.
fn learn(route: &Route<'_>) -> Result<Learnt> {
    let (dsn, var) = (route.dsn, route.var);
    // The runtime roles' sessions are opened as their probes' are.
    let (config, notices) = match route.var {
        keys::DATABASE_MIGRATOR_URL => (dbenv::pg_config(dsn), None),
        _ => {
            let (config, notices) = probe_config(dsn);
            (config, Some(notices))
        }
    };
    let (pooling, mut held) = dbenv::pooling::pooling_and_session(dsn, var, config)?;
    let who = dbenv::pooling::simple_row(&mut held, "SELECT session_user, current_user")?;
    let (session, current) = (who[0].as_deref().unwrap_or_default(), who[1].as_deref().unwrap_or_default());
    if pooling == Pooling::Transaction && (session != route.spec.login || current != route.spec.name) {
        bail!(
            "{var} ({}) logs in as `{session}` acting as `{current}`, not as `{}` acting as `{}`: whatever leads \
             it there (a pooler's `[databases]` entry that forces a user, a `connect_query` that sets a role) \
             makes the app run as another role than the one db-check would prove on a direct session. Fix the \
             DSN or the pooler",
            dsn.address(),
            route.spec.login,
            route.spec.name
        );
    }
    let identity = Identity::read(&mut held)?;
    let row = dbenv::pooling::simple_row(
        &mut held,
        "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_xact_replay_timestamp()::pg_catalog.text, \
                pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) \
                pg_catalog.pg_last_xact_replay_timestamp())::pg_catalog.float8",
    )?;
    let standby = (row[0].as_deref() == Some("t"))
        .then(|| Standby { replayed: row[1].clone(), lag_seconds: row[2].as_deref().and_then(|s| s.parse().ok()) });
    Ok(Learnt { pooling, identity, standby, session: (held, notices) })
}

impl Held {
    fn keep(&mut self, var: &str, (client, notices): (Client, Option<crate::probes::Notices>)) {
        match (var, notices) {
            (keys::DATABASE_MIGRATOR_URL, _) => self.migrator = Some(client),
            (keys::DATABASE_SERVICE_URL, Some(notices)) => self.service = Some((client, notices)),
            (_, Some(notices)) => self.runtime = Some((client, notices)),
            (_, None) => {}
        }
    }
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
