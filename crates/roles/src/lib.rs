//! The three-role model and `db-provision`: read the catalogs once
//! ([`snapshot`]), compute the difference to the [`Model`] ([`plan()`]), check
//! the admin can do it ([`preflight`]), run it ([`apply`]), and verify that a
//! fresh read finds nothing left to do.
//!
//! Converged means silent: on a database that matches the model the plan is
//! empty and no session of the run is assigned a transaction id.

pub mod acl;
pub mod apply;
pub mod exemptions;
pub mod model;
pub mod plan;
pub mod preflight;
pub mod reach;
pub mod scram;
pub mod snapshot;
pub mod wants;

use anyhow::{bail, Context, Result};
use dbenv::{connect, connect_waiting, Settings};

pub use apply::{Options, Quiet, Reporter, PROVISION_LOCK_KEY};
pub use exemptions::{Exemption, Exemptions};
pub use model::{Confirmations, Model, RoleSpec};
pub use plan::{plan, Phase, Plan, Sql, Step};
pub use snapshot::Snapshot;

/// What a run did (or, for a dry run, would do).
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    pub applied: bool,
}

/// Converges the database of `settings` to the model.
pub fn provision(settings: &Settings, options: &Options, reporter: &mut dyn Reporter) -> Result<Outcome> {
    let mut model = Model::from_settings(settings);
    model.exemptions = options.exemptions.clone();
    if let Some(setting) = &options.exemptions.rls.tenant_setting {
        model.tenant_setting = setting.clone();
    }
    model.confirmed = options.confirmed.clone();
    let admin_dsn = &settings.admin.dsn;
    let admin_var = "the admin DSN (POSTGRES_ROOT_USER/POSTGRES_ROOT_PASSWORD or DATABASE_ROOT_URL)";
    let mut cluster =
        connect_waiting(admin_dsn, admin_var, settings.pg_timeout, |wait| reporter.waiting_for_server(wait))?;
    let silenced = apply::prepare_session(&mut cluster, options.dry_run)?;
    if !options.dry_run {
        apply::take_lock(&mut cluster, settings.pg_timeout, reporter)?;
    }

    // Read everything, under the lock, before changing anything.
    let started = std::time::Instant::now();
    let snap = read_snapshot(&mut cluster, settings, &model, options.dry_run, silenced)
        .context("reading the catalogs failed before any change; nothing was changed, run the command again")?;
    trace("snapshot", started);
    let plan = plan::plan(&model, &snap);
    trace("plan", started);
    if !plan.refusals.is_empty() {
        bail!(
            "nothing was changed; {} problem{} must be fixed first:\n  - {}",
            plan.refusals.len(),
            if plan.refusals.len() == 1 { "" } else { "s" },
            plan.refusals.join("\n  - ")
        );
    }
    let missing = preflight::missing_capabilities(&snap, &plan);
    if !missing.is_empty() {
        bail!(
            "nothing was changed: the admin `{}` cannot do everything the plan needs:\n  - {}",
            snap.admin.name,
            missing.join("\n  - ")
        );
    }
    for warning in &plan.warnings {
        reporter.warning(warning);
    }
    for note in &plan.notes {
        reporter.note(note);
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
    if options.dry_run || plan.is_empty() {
        return Ok(Outcome { plan, applied: false });
    }

    let app_dsn = settings.admin_app_dsn();
    apply::execute(
        &plan,
        &mut cluster,
        || {
            let mut client = connect(&app_dsn, admin_var)?;
            apply::prepare_session(&mut client, false)?;
            Ok(client)
        },
        options,
        reporter,
    )?;

    trace("apply", started);
    // Verify: a fresh read must find nothing left to do.
    let after = read_snapshot(&mut cluster, settings, &model, false, silenced).context(
        "every change committed, but reading the catalogs again to verify them failed; run the command again to verify",
    )?;
    let left = plan::plan(&model, &after);
    trace("verify", started);
    if !left.is_empty() {
        let summaries: Vec<&str> = left.steps.iter().map(|s| s.summary.as_str()).collect();
        bail!(
            "provisioning ran but a fresh read of the catalogs still differs from the model (a grant made by \
             another role, or a privilege this admin cannot change):\n  - {}",
            summaries.join("\n  - ")
        );
    }
    Ok(Outcome { plan, applied: true })
}

/// With `XTASK_TRACE_QUERIES` set, how long each stage took goes to stderr.
fn trace(stage: &str, started: std::time::Instant) {
    if std::env::var_os("XTASK_TRACE_QUERIES").is_some() {
        eprintln!("{:>8.1} ms  until {stage} done", started.elapsed().as_secs_f64() * 1000.0);
    }
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
    let exists = cluster
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&settings.db_name, postgres::types::Type::TEXT)],
        )?
        .is_some();
    let db_name = if exists { settings.db_name.as_str() } else { "template1" };
    let db_dsn = settings.admin.dsn.with_dbname(db_name);
    let mut db = connect(&db_dsn, "the admin DSN").with_context(|| format!("read database `{db_name}`"))?;
    apply::prepare_session(&mut db, read_only)?;
    let login_dsn = if exists { db_dsn.clone() } else { settings.admin.dsn.clone() };
    snapshot::read(cluster, &mut db, model, Some(&login_dsn), silenced)
}
