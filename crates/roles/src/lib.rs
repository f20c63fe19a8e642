//! The three-role model and `db-provision`: read the catalogs once
//! ([`snapshot`]), compute the difference to the [`Model`] ([`plan()`]), check
//! the admin can do it ([`preflight`]), run it ([`apply`]), and verify that a
//! fresh read finds nothing left to do.
//!
//! Converged means silent: on a database that matches the model the plan is
//! empty and no session of the run is assigned a transaction id.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

pub mod acl;
pub mod apply;
pub mod drift;
pub mod exemptions;
pub mod kinds;
pub mod logins;
pub mod model;
pub mod plan;
pub mod preflight;
pub mod reach;
pub mod reset;
pub mod rotate;
pub mod scram;
pub mod snapshot;
pub mod sql;
pub mod wants;

use anyhow::{bail, Context, Result};
use dbenv::{connect, RoleKind, Settings};

pub use apply::{Options, Quiet, Reporter, PROVISION_LOCK_KEY};
pub use exemptions::{Exemption, Exemptions, MigrationReview};
pub use model::{Confirmations, Model, RoleSpec};
pub use plan::{plan, Phase, Plan, Refusal, Refused, Step};
pub use snapshot::{Purpose, Snapshot};
pub use sql::{Change, Statement};

/// What a run did (or, for a dry run, would do).
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    pub applied: bool,
}

/// Converges the database of `settings` to the model.
pub fn provision(settings: &Settings, options: &Options, reporter: &mut dyn Reporter) -> Result<Outcome> {
    let model = model_for(settings, options);
    options.exemptions.check_private_roles(&model.runtime_names())?;
    let admin_var = "the admin DSN (POSTGRES_ROOT_USER/POSTGRES_ROOT_PASSWORD or DATABASE_ROOT_URL)";
    let waited = dbenv::connect_waiting_unpinned(&settings.admin.dsn, admin_var, settings.pg_timeout, |wait| {
        reporter.waiting_for_server(wait)
    })?;
    // Its locks and its transactions need one server session: never a
    // transaction-mode pooler, found by behaviour before anything is set.
    let mut cluster = dbenv::pooling::own_backend(waited, &settings.admin.dsn, admin_var, "db-provision")?;
    let silenced = snapshot::prepare_session(&mut cluster, Purpose::Provision { read_only: options.dry_run })?;
    if !options.dry_run {
        apply::take_locks(&mut cluster, &settings.db_name, settings.pg_timeout, reporter)?;
    }

    // Read everything, under the lock, before changing anything.
    let started = std::time::Instant::now();
    let snap = read_snapshot(&mut cluster, settings, &model, options.dry_run, silenced)
        .context("reading the catalogs failed before any change; nothing was changed, run the command again")?;
    trace("snapshot", started);
    let plan = plan::plan(&model, &snap);
    trace("plan", started);
    refuse_foreign_logins(&mut cluster, settings, &model, &snap)?;
    refuse_early(&snap, &plan)?;
    let cluster_wide = [Phase::Roles, Phase::Reassign].iter().any(|phase| plan.steps_of(*phase).next().is_some());
    if !options.dry_run && !cluster_wide {
        // This run changes no role, and never hands other databases'
        // objects around (REASSIGN OWNED gives them back to the owners it
        // read): runs against the cluster's other databases need not wait
        // for it. Its own database's lock stays.
        apply::release_cluster_lock(&mut cluster)?;
    }
    let tracked = snapshot::statements_tracked(&mut cluster)?;
    tell(&snap, &plan, silenced, tracked, reporter);
    if options.dry_run || plan.is_empty() {
        if !options.dry_run {
            check_routed_dsns(settings, true)?;
        }
        return Ok(Outcome { plan, applied: false });
    }

    check_routed_dsns(settings, false)?;
    let app_dsn = settings.admin_app_dsn();
    let open = || {
        let mut client = connect(&app_dsn, admin_var)?;
        snapshot::prepare_session(&mut client, Purpose::Provision { read_only: false })?;
        Ok(client)
    };
    let app = apply::execute(&plan, &mut cluster, open, options, reporter)?;
    trace("apply", started);
    verify(&mut cluster, settings, &model, silenced, app)?;
    trace("verify", started);
    check_routed_dsns(settings, true)?;
    Ok(Outcome { plan, applied: true })
}

/// A role DSN naming another address than `DB_HOST`/`DB_PORT` (a pooler)
/// must reach the database provisioned. Before any change (`deferred` is
/// false): nothing answering there is an error, a role that cannot log in
/// yet (a new role, a new password) is left for after; a session is checked
/// at once. After the changes, every one is checked.
fn check_routed_dsns(settings: &Settings, after_changes: bool) -> Result<()> {
    let routed = RoleKind::ALL.iter().map(|k| settings.role(*k)).filter(|r| r.direct.is_some());
    let mut expected = None;
    for role in routed {
        let var = role.kind.dsn_var();
        // Unpinned (the identity query is qualified): through a transaction
        // pool a SET would stay on a backend the app's sessions share.
        let mut client = match dbenv::connect_raw_unpinned(&role.dsn, var)? {
            Ok(client) => client,
            Err(error) if !after_changes && error.code().is_some() => continue,
            Err(error) => {
                let when = if after_changes { "provisioning committed, but " } else { "nothing was changed: " };
                return Err(dbenv::describe_connect_error(&error, &role.dsn, var).context(format!(
                    "{when}{var} names {}, another address than DB_HOST/DB_PORT ({}:{}), and connecting through it \
                     failed; point it at the server or at a pooler in front of it",
                    role.dsn.address(),
                    settings.host,
                    settings.port
                )));
            }
        };
        if expected.is_none() {
            let mut admin = connect(&settings.admin_app_dsn(), "the admin DSN")?;
            expected = Some(dbenv::pooling::Identity::read(&mut admin)?);
        }
        let described = format!("the admin's session at DB_HOST/DB_PORT ({}:{})", settings.host, settings.port);
        let expected = expected.as_ref().context("BUG: no identity read")?;
        dbenv::pooling::require_same_database(&mut client, var, expected, &described)?;
    }
    Ok(())
}

/// An environment on a role's alternate login gets its password from
/// provisioning only when that login is as `db-rotate` makes it: never a
/// role someone else made under that name. And an environment that names a
/// role whose own login db-rotate retired, while its alternate login is in
/// use, is a stale file: provisioning it would bring the retired login back
/// with the old password.
fn refuse_foreign_logins(
    cluster: &mut postgres::Client,
    settings: &Settings,
    model: &Model,
    snap: &Snapshot,
) -> Result<()> {
    // A login or gate db-rotate made is never one of the three roles.
    let names: Vec<String> = model.roles().iter().map(|spec| spec.name.clone()).collect();
    let marked = cluster.query(
        "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = ANY($1) \
         AND shobj_description(oid, 'pg_authid') IN ($2, $3)",
        &[&names, &logins::LOGIN_MARKER, &logins::GATE_MARKER],
    )?;
    if let Some(row) = marked.first() {
        let (name, comment): (String, String) = (row.get(0), row.get(1));
        let spec = model.roles().into_iter().find(|spec| spec.name == name).context("BUG: a role not asked for")?;
        let what = if comment == logins::LOGIN_MARKER { "an alternate login" } else { "the gate of a role's logins" };
        bail!(
            "{} names `{name}`, which is {what} db-rotate made, not a role: name the role itself there (its DSN \
             may log in as its alternate login). Nothing was changed",
            spec.kind.user_var()
        );
    }
    for spec in model.roles() {
        let retired = snap.roles.get(&spec.name).is_some_and(|row| !row.login);
        if spec.login == spec.name && !retired {
            continue;
        }
        let Ok(names) = logins::LoginNames::of(&spec.name) else { continue };
        let found = logins::RoleLogins::read(cluster, &names, &settings.db_name)?;
        if spec.login != spec.name {
            let problems = found.problems(&snap.admin.name);
            if !problems.is_empty() {
                return Err(rotate::WrongShape { role: spec.name.clone(), problems }.into());
            }
        } else if found.alt.as_ref().is_some_and(|alt| alt.login && alt.comment == logins::LOGIN_MARKER) {
            bail!(
                "{var} logs in as `{}`, whose login db-rotate retired; `{}` is in use. This env file is older than \
                 the rotation: use the one db-rotate wrote (or point {var} at `{}`). Nothing was changed",
                spec.name,
                names.alt,
                names.alt,
                var = spec.kind.dsn_var(),
            );
        }
    }
    Ok(())
}

/// The model `settings` and `options` describe.
fn model_for(settings: &Settings, options: &Options) -> Model {
    let mut model = Model::from_settings(settings).with_exemptions(&options.exemptions);
    model.confirmed = options.confirmed.clone();
    model
}

/// Stops before the first change when the plan refuses, or when the admin
/// cannot do everything it needs.
fn refuse_early(snap: &Snapshot, plan: &Plan) -> Result<()> {
    if !plan.refusals.is_empty() {
        return Err(plan::Refused { refusals: plan.refusals.clone() }.into());
    }
    let lacks = preflight::missing_capabilities(snap, plan);
    if !lacks.is_empty() {
        return Err(preflight::AdminCannot { admin: snap.admin.name.clone(), lacks }.into());
    }
    Ok(())
}

/// The plan's warnings and notes, and a warning when new verifiers would
/// reach a server log this admin cannot silence.
fn tell(snap: &Snapshot, plan: &Plan, silenced: bool, tracked: bool, reporter: &mut dyn Reporter) {
    for warning in &plan.warnings {
        reporter.warning(&warning.to_string());
    }
    for note in &plan.notes {
        reporter.note(&note.to_string());
    }
    let sets_passwords =
        plan.steps_of(Phase::Roles).any(|s| s.statements.iter().any(|q| q.to_string().contains("PASSWORD")));
    if sets_passwords && !silenced && matches!(snap.admin.log_statement.as_str(), "ddl" | "all") {
        reporter.warning(&format!(
            "`{}` may not change log_statement, which is `{}` on this server: the new SCRAM verifiers (not the \
             passwords) will appear in the server log",
            snap.admin.name, snap.admin.log_statement
        ));
    }
    if sets_passwords && tracked {
        reporter.warning(&format!(
            "`{}` may not change pg_stat_statements.track: the new SCRAM verifiers (not the passwords) will be \
             recorded in pg_stat_statements; run as a superuser, or `GRANT SET ON PARAMETER pg_stat_statements.track`",
            snap.admin.name
        ));
    }
}

/// A fresh read must find nothing left to do: in new transactions, on the
/// app database's session the changes ran on when there was one.
fn verify(
    cluster: &mut postgres::Client,
    settings: &Settings,
    model: &Model,
    silenced: bool,
    app: Option<postgres::Client>,
) -> Result<()> {
    let after = read_snapshot_on(cluster, settings, model, (false, silenced), app).context(
        "every change committed, but reading the catalogs again to verify them failed; run the command again to verify",
    )?;
    let left = plan::plan(model, &after);
    if !left.is_empty() {
        let summaries: Vec<&str> = left.steps.iter().map(|s| s.summary.as_str()).collect();
        bail!(
            "provisioning ran but a fresh read of the catalogs still differs from the model (a grant made by \
             another role, or a privilege this admin cannot change):\n  - {}",
            summaries.join("\n  - ")
        );
    }
    Ok(())
}

/// How long each stage took, as a `debug` event of target `roles::stage`.
fn trace(stage: &str, started: std::time::Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(target: "roles::stage", "{ms:>8.1} ms  until {stage} done");
}

/// Reads a snapshot: the cluster through `cluster`, the app database (or
/// `template1`, which a new database copies) through a session of its own.
pub fn read_snapshot(
    cluster: &mut postgres::Client,
    settings: &Settings,
    model: &Model,
    read_only: bool,
    silenced: bool,
) -> Result<Snapshot> {
    read_snapshot_on(cluster, settings, model, (read_only, silenced), None)
}

/// [`read_snapshot`], reading the app database through `app` when given
/// (an admin session in it, opened as [`read_snapshot`] opens one).
fn read_snapshot_on(
    cluster: &mut postgres::Client,
    settings: &Settings,
    model: &Model,
    (read_only, silenced): (bool, bool),
    app: Option<postgres::Client>,
) -> Result<Snapshot> {
    let exists = cluster
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&settings.db_name, postgres::types::Type::TEXT)],
        )?
        .is_some();
    let db_name = if exists { settings.db_name.as_str() } else { "template1" };
    let db_dsn = settings.admin.dsn.with_dbname(db_name);
    // The apply's session was prepared as this one would be.
    let mut db = match app.filter(|_| exists) {
        Some(app) => app,
        None => {
            let mut db = connect(&db_dsn, "the admin DSN").with_context(|| format!("read database `{db_name}`"))?;
            snapshot::prepare_session(&mut db, Purpose::Provision { read_only })?;
            db
        }
    };
    let login_dsn = if exists { db_dsn.clone() } else { settings.admin.dsn.clone() };
    let how = snapshot::Read {
        purpose: Purpose::Provision { read_only },
        login_dsn: Some(&login_dsn),
        can_silence_log: silenced,
    };
    snapshot::read(cluster, Some(&mut db), model, how)
}
