//! `cargo xtask db-provision`: converge the database to the three-role model.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use dbenv::Settings;

use crate::context::{Context, Env};
use crate::flags::DbProvision;
use crate::report::{print_plan, Terminal};

pub fn run(ctx: &Context, env: &Env, policy: Option<&Path>, flags: &DbProvision) -> Result<ExitCode> {
    let settings = env.settings(ctx)?;
    provision(&settings, &options(ctx, policy, flags)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The run's options from the flags (shared with the fleet).
pub fn options(ctx: &Context, policy: Option<&Path>, flags: &DbProvision) -> Result<roles::Options> {
    if !(flags.lock_timeout > 0.0 && flags.lock_timeout.is_finite()) {
        anyhow::bail!("--lock-timeout must be a positive number of seconds");
    }
    Ok(roles::Options {
        dry_run: flags.dry_run,
        lock_timeout: Duration::from_secs_f64(flags.lock_timeout),
        lock_budget: flags.lock_budget.max(1),
        exemptions: policy_file(ctx, policy)?,
        confirmed: roles::Confirmations {
            take_over: flags.take_over.clone(),
            maintenance_database: flags.allow_postgres_database,
            widening: flags.allow_widening,
        },
        ..Default::default()
    })
}

/// The default options with the project's policy file: what `db-setup`,
/// `db-reset` and `check` provision with.
pub fn default_options(ctx: &Context) -> Result<roles::Options> {
    Ok(roles::Options { exemptions: policy_file(ctx, None)?, ..Default::default() })
}

/// The RLS policy file named on the command line (it must exist), or the
/// project's own (`platform/db/rls-policy.toml`, or the older exemptions file).
pub fn policy_file(ctx: &Context, given: Option<&Path>) -> Result<roles::Exemptions> {
    match given {
        Some(path) => roles::Exemptions::load(path),
        None => roles::Exemptions::load_default(&ctx.root),
    }
}

/// Runs provisioning with terminal output; shared with `db-setup`.
pub fn provision(settings: &Settings, options: &roles::Options) -> Result<()> {
    let mut terminal = Terminal::new(false);
    println!(
        "{} `{}` on {} as `{}`",
        if options.dry_run { "planning (dry run)" } else { "provisioning" },
        settings.db_name,
        settings.admin.dsn.address(),
        settings.admin.name
    );
    let outcome = roles::provision(settings, options, &mut terminal)?;
    let elapsed = terminal.elapsed();
    if options.dry_run {
        if outcome.plan.is_empty() {
            println!("nothing to change: the database matches the model (dry run, {} ms)", elapsed.as_millis());
        } else {
            print_plan(&outcome.plan);
            println!(
                "dry run: {} changes ({} statements) planned, nothing was changed",
                outcome.plan.steps.len(),
                outcome.plan.statement_count()
            );
        }
    } else if outcome.plan.is_empty() {
        println!("nothing to change: the database matches the model ({} ms, no writes)", elapsed.as_millis());
    } else {
        terminal.finish(&outcome.plan);
        println!(
            "provisioned `{}`: {} changes, {} statements, verified ({:.2} s)",
            settings.db_name,
            outcome.plan.steps.len(),
            outcome.plan.statement_count(),
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}
