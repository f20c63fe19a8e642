//! `db-check`: proves the three-role model on a live database, the way a
//! security reviewer would. The catalog audit reads the same snapshot as the
//! provisioner (so the two never disagree about what the catalogs say) with
//! a fixed number of queries; the live probes log in as each runtime role
//! and try what it must not be able to do. Needs no admin credentials.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

pub mod catalog;
pub mod checks;
pub mod ci;
pub mod count;
pub mod logins;
pub mod policies;
pub mod powers;
pub mod primary;
pub mod probe_rows;
pub mod probes;
pub mod report;
pub mod reviewed;
mod route;
pub mod shadowing;
pub mod tenancy;
mod writes;

pub use roles::exemptions;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use dbenv::{keys, CheckEnv, Dsn, RoleKind, Secret};
use roles::{Model, Purpose, RoleSpec};

pub use exemptions::{Exemption, Exemptions};
pub use report::{Report, Verdict};

/// What `db-check` needs: the three roles' DSNs (the migrator's optional),
/// the migrations folder and the exemptions.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    pub model: Model,
    pub runtime: Dsn,
    pub service: Dsn,
    /// Reads the catalogs and the bookkeeping; without it the runtime DSN
    /// reads the catalogs and the bookkeeping is not checked.
    pub migrator: Option<Dsn>,
    pub bookkeeping: drizzle::Table,
    pub migrations_dir: Option<PathBuf>,
    pub exemptions: Exemptions,
    /// Run the cross-tenant insert proof (its rows are rolled back, but the
    /// tables' BEFORE triggers fire; `--no-write-probes` for triggers that
    /// reach outside the transaction).
    pub write_probes: bool,
    /// Each DSN pointed at `DB_HOST`/`DB_PORT` when it names another
    /// address (a pooler): where a role is proven when its DSN reaches a
    /// transaction-mode pooler, and what each must match.
    pub direct: DirectDsns,
    /// `--primary-env`: on a standby, compare the audited catalogs with
    /// this primary's.
    pub primary: Option<primary::PrimaryDsn>,
    /// The database every DSN reached when the routes were settled: the
    /// catalog session must reach it too.
    pub reached: Option<dbenv::pooling::Identity>,
}

/// The direct twins of the check's DSNs (see [`CheckConfig::direct`]).
#[derive(Clone, Debug, Default)]
pub struct DirectDsns {
    pub runtime: Option<Dsn>,
    pub service: Option<Dsn>,
    pub migrator: Option<Dsn>,
}

impl CheckConfig {
    /// The check's configuration from the environment's checking view.
    pub fn new(env: CheckEnv, migrations_dir: Option<PathBuf>, exemptions: Exemptions) -> Result<CheckConfig> {
        let (schema, table) = env.bookkeeping;
        // The audit logs in with DSNs; the model's passwords are not needed.
        // Each role logs in as the login its DSN names: its own, or its
        // alternate login once rotated (then the role may be NOLOGIN).
        let spec =
            |kind: RoleKind, name: String, login: String| RoleSpec { kind, login, name, password: Secret::default() };
        let migrator_login =
            env.migrator.as_ref().map(|m| m.login.clone()).unwrap_or_else(|| env.migrator_name.clone());
        let roles = [
            spec(RoleKind::Migrator, env.migrator_name, migrator_login),
            spec(RoleKind::Runtime, env.runtime.name.clone(), env.runtime.login.clone()),
            spec(RoleKind::Service, env.service.name.clone(), env.service.login.clone()),
        ];
        let mut model = Model::new(&env.db_name, &env.app_schemas, &schema, roles).with_exemptions(&exemptions);
        exemptions.check_private_roles(&model.runtime_names())?;
        model.extensions = env.extensions;
        let direct = DirectDsns {
            runtime: env.runtime.direct_dsn(),
            service: env.service.direct_dsn(),
            migrator: env.migrator.as_ref().and_then(|m| m.direct_dsn()),
        };
        Ok(CheckConfig {
            direct,
            model,
            runtime: env.runtime.dsn,
            service: env.service.dsn,
            migrator: env.migrator.map(|m| m.dsn),
            bookkeeping: drizzle::Table::new(&schema, &table),
            migrations_dir,
            exemptions,
            write_probes: true,
            primary: None,
            reached: None,
        })
    }

    /// The DSN that reads the catalogs, and its variable.
    fn catalog_dsn(&self) -> (&Dsn, &'static str) {
        match &self.migrator {
            Some(dsn) => (dsn, keys::DATABASE_MIGRATOR_URL),
            None => (&self.runtime, keys::DATABASE_URL),
        }
    }
}

/// What the catalog audit found.
struct Catalog {
    checks: Vec<report::CheckSummary>,
    /// The tenant root the live proof builds its tenant value from.
    root: Option<String>,
    /// The commands of each table whose policies `[[policy]]` reviewed.
    reviewed: BTreeMap<String, BTreeSet<char>>,
    used: BTreeSet<(exemptions::Kind, String)>,
    notes: Vec<String>,
    logins: Vec<report::RoleLoginState>,
    server_version: String,
    catalog_queries: u32,
}

/// The catalog part: one snapshot (the provisioner's) and the bookkeeping.
/// On `held` when given: the migrator's session the route was learnt on
/// (it reached that database and has set nothing yet).
fn audit_catalog(config: &CheckConfig, held: Option<postgres::Client>, queries: &count::QueryCount) -> Result<Catalog> {
    let started = Instant::now();
    let model = &config.model;
    let (catalog_dsn, catalog_var) = config.catalog_dsn();
    // The route's session (it reached that database and has set nothing
    // yet), or a new one, checked, when there was none or it was closed
    // meanwhile (an idle timeout).
    let (mut client, reached) = match held.and_then(|client| dbenv::pin(client).ok()) {
        Some(client) => (client, None),
        None => {
            let client = dbenv::connect(catalog_dsn, catalog_var).context("connect to read the catalogs")?;
            (client, config.reached.as_ref())
        }
    };
    if let Some(reached) = reached {
        let here = dbenv::pooling::Identity::read(&mut client)?;
        if here != *reached {
            anyhow::bail!(
                "{catalog_var} reached {here} to read the catalogs, but {reached} before: the DSN leads to more than \
                 one server (several hosts, a load balancer). Point it at one server"
            );
        }
    }
    roles::snapshot::prepare_session(&mut client, Purpose::Audit)?;
    let how = roles::snapshot::Read { purpose: Purpose::Audit, login_dsn: None, can_silence_log: false };
    let snapshot = roles::snapshot::read(&mut client, None, model, how)?;
    let mut reads = roles::snapshot::Queries::new(&mut client);
    let policies = policies::read(&mut reads).context("read the RLS policies")?;
    let shadowing = shadowing::read(&mut reads, model).context("read what shadows the built-in functions")?;
    let unproven_settings = policies::contradictions(model, &snapshot.db, &policies, &config.exemptions)?;
    let reviewed = policies::reviewed_commands(model, &snapshot.db, &policies, &config.exemptions);
    let sent = reads.sent;
    let logins = logins::read(&mut client, model, snapshot.server_version).context("read the roles' logins")?;
    let catalog_queries = snapshot.queries + sent + 1;
    queries.add(catalog_queries + 1);
    let server_version: String = client.query_one("SHOW server_version", &[])?.get(0);

    let mut notes = policies::unknown_entries(model, &snapshot.db, &config.exemptions);
    notes.extend(unproven_settings);
    let bookkeeping = match (&config.migrator, &config.migrations_dir) {
        (None, _) => {
            Err("not checked: DATABASE_MIGRATOR_URL is not set (the runtime roles may not read it)".to_string())
        }
        (_, None) => Err("not checked: no migrations folder".to_string()),
        (Some(_), Some(dir)) => match drizzle::folder::read(dir) {
            Err(error) => Err(format!("not checked: {error:#}")),
            Ok(folder) => {
                queries.add(2);
                let table = drizzle::bookkeeping::read(&mut client, &config.bookkeeping)?;
                let status = drizzle::status::status(&folder, &table);
                let pending = status.pending().len();
                if pending > 0 {
                    notes.push(format!("{pending} migrations are pending (`cargo xtask db-migrate`)"));
                }
                Ok(status.disagreements().iter().map(ToString::to_string).collect())
            }
        },
    };
    let mut used = BTreeSet::new();
    // The tenant roots, found once: the catalog checks tenancy from them and
    // the live proof builds its tenant value after the first.
    let roots = catalog::tenant_roots(model, &snapshot, &config.exemptions.rls);
    let rotated = migrator_login(model, &logins, config.migrator.is_some());
    let audited = rotated.as_ref().unwrap_or(model);
    let mut checks = catalog::audit(audited, &snapshot, &config.exemptions, &policies, &roots, bookkeeping, &mut used);
    checks.push(shadowing::check(&shadowing, &config.exemptions, &mut used));
    checks.push(shadowing::leakproof_check(&shadowing, &config.exemptions, &mut used));
    checks.push(shadowing::foreign_logins_check(&shadowing, &config.exemptions, &mut used));
    checks.push(logins::check(&logins));
    // The sessions this check opens: the probes log in with the runtime
    // DSNs, the catalogs are read with the migrator's when the env has it.
    let sessions = [
        (model.runtime.name.as_str(), Some(model.runtime.login.as_str())),
        (model.service.name.as_str(), Some(model.service.login.as_str())),
        (model.migrator.name.as_str(), config.migrator.as_ref().map(|_| model.migrator.login.as_str())),
    ];
    let logins = logins::states(&logins, &sessions);
    notes.extend(logins::notes(&logins));
    let root = roots.first().map(str::to_string);
    trace("catalog audit", started);
    Ok(Catalog { checks, root, reviewed, used, notes, logins, server_version, catalog_queries })
}

/// The live probes of a runtime role run as `login` with `password` (a
/// login `db-rotate` has just readied, before anyone uses it), the
/// `session` probe first. A DSN that reaches a transaction-mode pooler is
/// proven on a direct session at `DB_HOST`/`DB_PORT` as the same login,
/// once the login is shown to log in through the pooler (nothing is set
/// through it).
pub fn probe_login(config: &CheckConfig, kind: RoleKind, login: &str, password: &Secret) -> Result<Vec<report::Probe>> {
    let mut model = config.model.clone();
    let spec = match kind {
        RoleKind::Runtime => &mut model.runtime,
        RoleKind::Service => &mut model.service,
        RoleKind::Migrator => anyhow::bail!("BUG: db-check has no live probes of the migrator"),
    };
    spec.login = login.to_string();
    let role = spec.name.clone();
    let (dsn, direct) = match kind {
        RoleKind::Service => (&config.service, &config.direct.service),
        _ => (&config.runtime, &config.direct.runtime),
    };
    let (dsn, direct) = (dsn.with_login(login, password), direct.as_ref().map(|d| d.with_login(login, password)));
    let notices = probes::Notices::default();
    let config_for = |dsn: &dbenv::Dsn| probes::probe_config_into(dsn, &notices);
    let route = (&dsn, kind.dsn_var(), "db-rotate's probes");
    let reached = dbenv::pooling::session_for(route, direct.as_ref(), (login, &role), config_for)?;
    let targets = (&config.bookkeeping, &probes::Extension::default());
    // Where a new session would go, should this one have closed meanwhile.
    let used = match (&reached.direct, &direct) {
        (Some(_), Some(direct)) => direct,
        _ => &dsn,
    };
    let session = Some((reached.client, notices.clone()));
    let found = probes::probe_role(&model, targets, (kind, used), session, &count::QueryCount::default())?;
    Ok(found.probes)
}

/// Without the migrator's DSN the env does not say which login the
/// migrator uses: once rotated to its alternate login (which can log in),
/// the role itself need not keep LOGIN. The model as audited then, if it
/// differs from `model`.
fn migrator_login(model: &Model, logins: &[roles::logins::RoleLogins], has_dsn: bool) -> Option<Model> {
    let found = logins.iter().find(|l| l.names.role == model.migrator.name)?;
    let alt = found.alt.as_ref().filter(|alt| alt.login)?;
    if has_dsn || model.migrator.login != model.migrator.name {
        return None;
    }
    let mut rotated = model.clone();
    rotated.migrator.login = alt.name.clone();
    Some(rotated)
}

/// How long each phase took, as a `debug` event of target `audit::phase`.
pub(crate) fn trace(phase: &str, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(target: "audit::phase", "{ms:>8.1} ms  phase {phase}");
}

/// What the catalog audit, the RLS sampling and each role's probes found.
type SideBySide =
    (Result<Result<Catalog>>, Vec<Result<Result<probes::RoleProbes>>>, Result<Result<Option<tenancy::Sampled>>>);

/// The catalog audit and the probes of each role use their own sessions
/// and run side by side: the server works on one while we wait on another.
fn side_by_side(config: &CheckConfig, held: route::Held, queries: &count::QueryCount) -> SideBySide {
    let model = &config.model;
    let route::Held { runtime, service, migrator } = held;
    let extension = &probes::Extension::default();
    std::thread::scope(|scope| {
        let catalog = scope.spawn(|| audit_catalog(config, migrator, queries));
        // The RLS tables' rows, read as the service role, unless the app
        // declares no RLS.
        let sampled = scope.spawn(|| {
            let phase = Instant::now();
            let sampled = if config.exemptions.rls.enabled {
                let declared = config.exemptions.rls.tenant_roots.first().filter(|_| config.write_probes);
                let dsns = (&config.service, &config.runtime);
                tenancy::sample_as_service(model, dsns, declared.map(String::as_str), queries).map(Some)
            } else {
                Ok(None)
            };
            trace("rls samples", phase);
            sampled
        });
        let probes: Vec<_> =
            [(RoleKind::Runtime, &config.runtime, runtime), (RoleKind::Service, &config.service, service)]
                .into_iter()
                .map(|(kind, dsn, held)| {
                    scope.spawn(move || {
                        let phase = Instant::now();
                        let found =
                            probes::probe_role(model, (&config.bookkeeping, extension), (kind, dsn), held, queries);
                        trace(kind.label(), phase);
                        found
                    })
                })
                .collect();
        let catalog = catalog.join().map_err(|_| anyhow::format_err!("BUG: the catalog audit panicked"));
        let probes: Vec<_> =
            probes.into_iter().map(|h| h.join().map_err(|_| anyhow::format_err!("BUG: a probe panicked"))).collect();
        let sampled = sampled.join().map_err(|_| anyhow::format_err!("BUG: the RLS sampling panicked"));
        (catalog, probes, sampled)
    })
}

/// Runs the whole check. `Err` means it could not run (exit 1); a report
/// that does not hold means violations (exit 2).
pub fn check(config: &CheckConfig) -> Result<Report> {
    let started = Instant::now();
    // How each DSN reaches the server, before any session sets anything.
    let route::Settled { config, notes: route_notes, standby, identity, held } = route::settle(config)?;
    let config = &config;
    let (catalog_dsn, catalog_var) = config.catalog_dsn();
    let comparison = primary::start(config.primary.as_ref(), standby.is_some(), catalog_dsn, catalog_var, &identity)?;
    let model = &config.model;
    let queries = count::QueryCount::default();
    let queries = &queries;
    let (catalog, probes, sampled) = side_by_side(config, held, queries);
    let Catalog { mut checks, root, reviewed, used, mut notes, logins, server_version, catalog_queries } = catalog??;
    notes.extend(route_notes);
    if let Some(comparison) = comparison {
        let (check, note) = comparison.finish()?;
        checks.push(check);
        notes.extend(note);
    }
    let mut all_probes = Vec::new();
    let mut residuals = Vec::new();
    for result in probes {
        let found = result??;
        all_probes.extend(found.probes);
        residuals.extend(found.residuals);
    }
    let phase = Instant::now();
    let sampled = sampled??;
    let reviewed = reviewed::Reviewed::new(&config.exemptions, reviewed);
    let (rls, tenancy_probes) =
        tenancy::prove(model, &config.runtime, sampled, &reviewed, root.as_deref(), config.write_probes, queries)?;
    let mut used = used;
    used.extend(reviewed.into_used());
    all_probes.extend(tenancy_probes);
    trace("rls behaviour", phase);
    let mut probes = all_probes;
    if standby.is_some() {
        route::read_only_is_unproven(&mut probes);
        route::read_only_is_unproven(&mut residuals);
    }
    let exemptions =
        config.exemptions.entries.iter().map(|e| (e.clone(), used.contains(&(e.kind, e.name.clone())))).collect();
    Ok(Report {
        database: model.db_name.clone(),
        server_version,
        checks,
        probes,
        residuals,
        rls,
        exemptions,
        policy_file: config.exemptions.source_text(),
        roles: vec![model.runtime.name.clone(), model.service.name.clone()],
        catalog_queries,
        queries: queries.get(),
        elapsed: started.elapsed(),
        notes,
        logins,
    })
}
