//! One target's run of each fleet command, quiet: the same library calls as
//! the single-database commands, with the outcome as one [`Done`].

use std::path::{Path, PathBuf};

use anyhow::{format_err, Result};
use dbenv::targets::Target;
use dbenv::EnvVars;
use drizzle::{Config, Folder, State};

use super::{Done, Verdict, CANCEL};
use crate::flags::{Engine, RunnerFlags};

/// `db-provision` of one target, stopping between transactions on Ctrl-C.
pub fn provision(vars: &EnvVars, options: &roles::Options) -> Done {
    let settings = match vars.provisioning() {
        Ok(settings) => settings,
        Err(error) => return Done::error(&error),
    };
    let options = roles::Options { cancel: Some(CANCEL.clone()), ..options.clone() };
    let outcome = match roles::provision(&settings, &options, &mut roles::Quiet) {
        Err(error) => return Done::error(&error),
        Ok(outcome) => outcome,
    };
    let (changes, statements) = (outcome.plan.steps.len(), outcome.plan.statement_count());
    let summary = if outcome.plan.is_empty() {
        "nothing to change: matches the model".to_string()
    } else if options.dry_run {
        format!("dry run: {changes} changes ({statements} statements) planned, nothing changed")
    } else {
        format!("provisioned: {changes} changes, {statements} statements, verified")
    };
    // The changes per phase: the roles (cluster-wide) change in one target per server.
    let phases: serde_json::Map<String, serde_json::Value> = roles::Phase::ALL
        .iter()
        .map(|phase| (phase.title().to_string(), outcome.plan.steps_of(*phase).count().into()))
        .filter(|(_, count)| *count != 0)
        .collect();
    let json =
        serde_json::json!({"changes": changes, "statements": statements, "applied": outcome.applied, "phases": phases});
    Done { json: Some(json), ..Done::new(Verdict::Ok, summary) }
}

/// What every migration target shares: the folder, read once, and the flags.
pub struct Migrate<'a> {
    pub folder: &'a Folder,
    pub policy: &'a roles::Exemptions,
    pub runner: &'a RunnerFlags,
    pub engine: Engine,
    pub dry_run: bool,
    /// `platform/db`, for `--engine drizzle-kit`.
    pub package: PathBuf,
    pub search_path: std::ffi::OsString,
}

/// The runner's configuration for one target (as `db_migrate::config`).
fn config(vars: &EnvVars, policy: &roles::Exemptions) -> Result<Config> {
    let mut config = Config::new(vars.migration()?);
    config.policy = policy.clone();
    let runtime: Vec<String> = config.runtime_users.iter().map(|(_, name)| name.clone()).collect();
    if !runtime.is_empty() {
        config.policy.check_private_roles(&runtime)?;
    }
    Ok(config)
}

impl Migrate<'_> {
    /// `db-migrate` of one target.
    pub fn run(&self, vars: &EnvVars) -> Done {
        match self.try_run(vars) {
            Ok(done) => done,
            Err(error) => Done::error(&error),
        }
    }

    fn try_run(&self, vars: &EnvVars) -> Result<Done> {
        let mut config = config(vars, self.policy)?;
        crate::db_migrate::apply_flags(&mut config, self.runner)?;
        let applied = if self.engine == Engine::DrizzleKit && !self.dry_run {
            let node = drizzle::kit::Node { package: &self.package, search_path: self.search_path.clone() };
            let outcome =
                drizzle::kit::migrate_with_drizzle_kit(&config, self.folder, &node, &mut drizzle::Silent, &mut |_| {})?;
            outcome.applied
        } else {
            drizzle::migrate_builtin(&config, self.folder, self.dry_run, &mut drizzle::Silent)?.applied
        };
        let total = self.folder.migrations.len();
        let summary = match (applied.as_slice(), self.dry_run) {
            ([], _) => format!("nothing to apply: {total} migrations, none pending"),
            (pending, true) => format!("dry run: pending {}, nothing applied", drizzle::run::summarise(pending)),
            (applied, false) => format!("applied {}", drizzle::run::summarise(applied)),
        };
        Ok(Done::new(Verdict::Ok, summary))
    }

    /// `db-status` of one target: a problem when db-status alone exits 2.
    pub fn status(&self, vars: &EnvVars) -> Done {
        let result = (|| {
            let config = config(vars, self.policy)?;
            let (status, mut client) = drizzle::session::inspect(&config, self.folder)?;
            let guarded = drizzle::session::guard(&config, self.folder, &status, Some(&mut client))?;
            let mut problems: Vec<String> = status.refusals(false).iter().map(ToString::to_string).collect();
            problems.extend(status.unlisted.iter().map(ToString::to_string));
            problems.extend(guarded.refused.iter().map(ToString::to_string));
            let counts = format!(
                "{} applied, {} pending",
                status.count(|s| *s == State::Applied),
                status.count(|s| *s == State::Pending)
            );
            let mut value = status.to_json(&config.table.to_string());
            if !guarded.refused.is_empty() {
                value["ok"] = serde_json::Value::Bool(false);
            }
            let done = if problems.is_empty() {
                Done::new(Verdict::Ok, counts)
            } else {
                let summary = format!("{counts}; {} problems: {}", problems.len(), problems[0]);
                Done { detail: Some(problems.join("\n")), ..Done::new(Verdict::Problem, summary) }
            };
            Ok::<_, anyhow::Error>(Done { json: Some(value), ..done })
        })();
        result.unwrap_or_else(|error| Done::error(&error))
    }
}

/// `db-check` of one target: its report as JSON and as the target's JUnit suite.
pub fn check(target: &Target, vars: &EnvVars, migrations: &Path, policy: &roles::Exemptions, writes: bool) -> Done {
    let result = (|| {
        let mut config = audit::CheckConfig::new(vars.checking()?, Some(migrations.to_path_buf()), policy.clone())?;
        config.write_probes = writes;
        if let Some(path) = &target.primary_env {
            config.primary = Some(crate::db_check::primary(path)?);
        }
        audit::check(&config)
    })();
    let report = match result {
        Ok(report) => report,
        Err(error) => return Done::error(&error),
    };
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.verdict() == audit::Verdict::Fail)
        .map(|c| c.id.to_string())
        .chain(report.probes.iter().filter(|p| matches!(p.verdict, audit::Verdict::Fail)).map(|p| p.id.to_string()))
        .collect();
    let done = if report.holds() {
        Done::new(Verdict::Ok, format!("holds ({} checks, {} probes)", report.checks.len(), report.probes.len()))
    } else if failed.is_empty() {
        Done::new(Verdict::Problem, "does not hold: a probe was inconclusive or row-level security failed")
    } else {
        Done::new(Verdict::Problem, format!("does not hold: {}", failed.join(", ")))
    };
    let detail = (!report.holds()).then(|| report.to_text());
    Done { detail, json: Some(report.to_json()), testsuite: Some(report.junit_testsuite(&target.name)), ..done }
}

/// The env file of a target that cannot be read, as its error.
pub fn unreadable(target: &Target, error: &anyhow::Error) -> Done {
    Done::error(&format_err!("env file `{}`: {error:#}", target.env_file.display()))
}
