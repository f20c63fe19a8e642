//! The fleet form of `db-provision`, `db-migrate`, `db-status` and
//! `db-check`: what every target shares is read once (the policy file, the
//! migrations folder), then [`super::run`] runs each target.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

use super::{jobs, Reports};
use crate::context::Context;
use crate::flags::{DbCheck, DbMigrate, DbProvision, DbStatus, Engine};

pub fn provision(ctx: &Context, policy: Option<&Path>, flags: &DbProvision) -> Result<ExitCode> {
    let options = crate::db_provision::options(ctx, policy, flags)?;
    let reports = Reports { json: flags.reports.json, junit: flags.reports.junit.clone() };
    super::run(ctx, &flags.fleet, "db-provision", &reports, &|_, vars| jobs::provision(vars, &options))
}

pub fn migrate(ctx: &Context, migrations: &Path, flags: &DbMigrate) -> Result<ExitCode> {
    if flags.engine == Engine::DrizzleKit && flags.runner.transaction_per_migration {
        bail!(
            "--transaction-per-migration is the built-in runner's; drizzle-kit runs the batch in one transaction. \
             Leave out --engine drizzle-kit or the flag"
        );
    }
    let folder = drizzle::folder::read(migrations)?;
    crate::db_migrate::warn_unlisted(&folder);
    let policy = crate::db_provision::policy_file(ctx, None)?;
    let job = migrate_job(ctx, &folder, &policy, flags);
    let reports = Reports { json: flags.reports.json, junit: flags.reports.junit.clone() };
    super::run(ctx, &flags.fleet, "db-migrate", &reports, &|_, vars| job.run(vars))
}

fn migrate_job<'a>(
    ctx: &Context,
    folder: &'a drizzle::Folder,
    policy: &'a roles::Exemptions,
    flags: &'a DbMigrate,
) -> jobs::Migrate<'a> {
    jobs::Migrate {
        folder,
        policy,
        runner: &flags.runner,
        engine: flags.engine,
        dry_run: flags.dry_run,
        package: ctx.root.join("platform/db"),
        search_path: ctx.search_path.clone(),
    }
}

pub fn status(ctx: &Context, migrations: &Path, flags: &DbStatus) -> Result<ExitCode> {
    let folder = drizzle::folder::read(migrations)?;
    let policy = crate::db_provision::policy_file(ctx, None)?;
    let runner = crate::flags::RunnerFlags {
        allow_changed: false,
        transaction_per_migration: false,
        lock_timeout: drizzle::config::DEFAULT_LOCK_TIMEOUT.as_secs_f64(),
        lock_wait: drizzle::config::DEFAULT_LOCK_WAIT.as_secs_f64(),
    };
    let job = jobs::Migrate {
        folder: &folder,
        policy: &policy,
        runner: &runner,
        engine: Engine::Builtin,
        dry_run: true,
        package: ctx.root.join("platform/db"),
        search_path: ctx.search_path.clone(),
    };
    let reports = Reports { json: flags.json, junit: flags.junit.clone() };
    super::run(ctx, &flags.fleet, "db-status", &reports, &|_, vars| job.status(vars))
}

pub fn check(ctx: &Context, migrations: &Path, policy: Option<&Path>, flags: &DbCheck) -> Result<ExitCode> {
    let policy = crate::db_provision::policy_file(ctx, policy)?;
    primary_envs_are_readable(ctx, flags)?;
    let writes = !flags.no_write_probes;
    let reports = Reports { json: flags.json, junit: flags.junit.clone() };
    super::run(ctx, &flags.fleet, "db-check", &reports, &|target, vars| {
        jobs::check(target, vars, migrations, &policy, writes)
    })
}

/// Every target's `primary_env` reads as `--primary-env` reads its file,
/// before any target runs: a file that does not stops the run, naming the
/// target and its line.
fn primary_envs_are_readable(ctx: &Context, flags: &DbCheck) -> Result<()> {
    let Some(path) = &flags.fleet.targets else { return Ok(()) };
    let targets = dbenv::targets::Targets::load(&ctx.invoked_from.join(path))?;
    for target in &targets.targets {
        if let Some(primary) = &target.primary_env {
            crate::db_check::primary(primary).map_err(|error| {
                anyhow::format_err!(
                    "targets file `{}`: target `{}` (line {}): {error:#}",
                    targets.path.display(),
                    target.name,
                    target.line
                )
            })?;
        }
    }
    Ok(())
}
