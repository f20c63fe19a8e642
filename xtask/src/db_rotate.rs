//! `cargo xtask db-rotate ROLE [--finish]`: a role's password rotated with
//! zero downtime through its two logins (`roles::rotate`). This module reads
//! the env files, publishes the new login into them and says what to deploy.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use dbenv::{RoleKind, Secret, Settings};
use roles::rotate::{self, Finished, Rotation};

use crate::context::Context;
use crate::flags;

pub fn run(ctx: &Context, flags: &flags::DbRotate) -> Result<ExitCode> {
    let files: Vec<PathBuf> = if flags.env_files.is_empty() {
        vec![ctx.root.join(dbenv::DEFAULT_ENV_FILE)]
    } else {
        flags.env_files.iter().map(|path| ctx.invoked_from.join(path)).collect()
    };
    let (settings, vars) = source_settings(&files)?;
    let kinds = kinds_named(&settings, &flags.role)?;
    // What the runtime roles' db-check probes need: they run as each new login before it is published.
    let probes = match flags.finish || kinds == [RoleKind::Migrator] {
        true => None,
        false => {
            let policy = flags.policy.as_ref().map(|path| ctx.invoked_from.join(path));
            let policy = crate::db_provision::policy_file(ctx, policy.as_deref())?;
            Some(audit::CheckConfig::new(vars.checking()?, None, policy)?)
        }
    };
    // With --json, standard output carries the JSON alone.
    let say = |line: String| if flags.json { eprintln!("{line}") } else { println!("{line}") };
    let mut admin = rotate::admin_session(&settings)?;
    rotate::lock(&mut admin)?;
    // Every role is checked before the first change (`all` never stops halfway on bad input).
    if !flags.finish {
        for kind in &kinds {
            check_publishable(&files, *kind)?;
            rotate::check_start(&mut admin, &settings, &Rotation::of(&settings, *kind)?)?;
        }
    }
    let mut busy = false;
    let mut report = Vec::new();
    for kind in kinds {
        let rotation = Rotation::of(&settings, kind)?;
        if flags.finish {
            let wait = Duration::from_secs(flags.wait);
            match rotate::finish(&mut admin, &settings, &rotation, wait, flags.terminate)? {
                Finished::Retired { login, terminated } => {
                    let ended = if terminated > 0 { format!(" ({terminated} sessions ended)") } else { String::new() };
                    say(format!("`{login}` is retired: no LOGIN, no password{ended}; `{}` stays", rotation.active));
                }
                Finished::Busy { login, sessions } => {
                    busy = true;
                    eprintln!("`{login}` still has {} sessions; nothing was retired:", sessions.len());
                    for session in &sessions {
                        eprintln!("  {session}");
                    }
                    eprintln!("  wait for them (--wait SECONDS), or end them after the wait with --terminate");
                }
            }
            report.push(json_of(&rotation, &rotation.active, None));
            continue;
        }
        let password = rotate::new_password()?;
        start_one(&mut admin, (&settings, probes.as_ref()), &rotation, &password, &files, &say)?;
        let shown = flags.print_password.then_some(&password);
        if let (Some(password), false) = (shown, flags.json) {
            println!("{}={}", kind.password_var(), password.expose());
        }
        report.push(json_of(&rotation, &rotation.other, shown));
    }
    if flags.json {
        println!("{}", serde_json::Value::Array(report));
    }
    Ok(if busy { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// Readies, proves and publishes one role's other login.
fn start_one(
    admin: &mut postgres::Client,
    (settings, probes): (&Settings, Option<&audit::CheckConfig>),
    rotation: &Rotation,
    password: &Secret,
    files: &[PathBuf],
    say: &dyn Fn(String),
) -> Result<()> {
    rotate::start(admin, settings, rotation, password)?;
    // Proved, and every file staged beside the original before any is
    // replaced: a login that fails its proof, or a file that cannot be
    // written, leaves every file as it was and the login retired again
    // (nobody knows its password).
    let staged = rotate::prove(settings, rotation, password)
        .and_then(|direct| Ok(format!("{}{}", probe(probes, rotation, password)?, pooled(rotation, direct))))
        .and_then(|probed| Ok((probed, stage(files, rotation, password)?)));
    let (probed, staged) = match staged {
        Ok(staged) => staged,
        Err(error) => return Err(retire_again(admin, settings, rotation, error)),
    };
    say(format!("`{}` logs in and acts as `{}` (proved{probed})", rotation.other, rotation.names.role));
    // Every file is committed, whatever happens to one of them.
    let (mut changed, mut unchanged) = (Vec::new(), Vec::new());
    for file in staged {
        let path = format!("`{}`", file.path().display());
        match file.commit() {
            Ok(keys) => {
                say(format!("  {path}: {} now log in as `{}`", keys.join(", "), rotation.other));
                changed.push(path);
            }
            Err(error) => unchanged.push(format!("{path} ({error:#})")),
        }
    }
    if changed.is_empty() {
        return Err(retire_again(admin, settings, rotation, anyhow::format_err!("{}", unchanged.join("; "))));
    }
    if !unchanged.is_empty() {
        // Those files still use the old login, which works, as does the new one.
        bail!(
            "could not replace {}; {} now use `{}`, which works: copy its {} and {} into the others, deploy every \
             file, then run `cargo xtask db-rotate {} --finish`",
            unchanged.join(", "),
            changed.join(", "),
            rotation.other,
            rotation.kind.dsn_var(),
            rotation.kind.password_var(),
            rotation.names.role,
        );
    }
    say(format!(
        "deploy the changed env files to every instance that uses the {} role, then run `cargo xtask db-rotate {} \
         --finish` to retire `{}`",
        rotation.kind, rotation.names.role, rotation.active
    ));
    Ok(())
}

/// Takes LOGIN and the password from a login nobody was told of, and says
/// so; in a new admin session when the one it has broke.
fn retire_again(
    admin: &mut postgres::Client,
    settings: &Settings,
    rotation: &Rotation,
    error: anyhow::Error,
) -> anyhow::Error {
    let retire = |admin: &mut postgres::Client| -> Result<()> {
        let mut tx = admin.transaction()?;
        for change in roles::logins::RoleLogins::retire(&rotation.other) {
            tx.batch_execute(&roles::Statement::new(change).text())?;
        }
        Ok(tx.commit()?)
    };
    let retired = retire(admin).or_else(|_| retire(&mut rotate::admin_session(settings)?));
    match retired {
        Ok(()) => error.context(format!(
            "`{}` was not published, and is retired again; the env files were not changed",
            rotation.other
        )),
        Err(retire) => error.context(format!(
            "`{}` was not published and could not be retired again ({retire}); the env files were not changed: run \
             `cargo xtask db-rotate {} --finish` to retire it",
            rotation.other, rotation.names.role
        )),
    }
}

/// Every file that uses the role, rewritten beside the original; an error
/// when none does.
fn stage(files: &[PathBuf], rotation: &Rotation, password: &Secret) -> Result<Vec<dbenv::envfile::Staged<'static>>> {
    let mut staged = Vec::new();
    for path in files {
        if let Some(file) = dbenv::envfile::stage_login(path, rotation.kind, &rotation.other, password)? {
            staged.push(file);
        }
    }
    if staged.is_empty() {
        bail!(
            "no env file given holds {} or {}: name the app's env file with --env-file and run again",
            rotation.kind.dsn_var(),
            rotation.kind.password_var(),
        );
    }
    Ok(staged)
}

/// What to add to "proved" when the role's DSN reaches a transaction-mode
/// pooler and the proof ran on a direct session.
fn pooled(rotation: &Rotation, direct: Option<String>) -> String {
    match direct {
        Some(address) => format!(
            "; {} reaches a transaction-mode pooler: `{}` logs in through it, and was proven on a direct session at \
             DB_HOST/DB_PORT ({address}), where its session may be set up",
            rotation.kind.dsn_var(),
            rotation.other
        ),
        None => String::new(),
    }
}

/// A runtime role's db-check probes, run as its new login: every probe
/// must come out as db-check expects before the login is published. What
/// to add to "proved": how many probes held and what the session was.
fn probe(config: Option<&audit::CheckConfig>, rotation: &Rotation, password: &Secret) -> Result<String> {
    let Some(config) = config.filter(|_| rotation.kind != RoleKind::Migrator) else {
        return Ok(String::new());
    };
    let probes = audit::probe_login(config, rotation.kind, &rotation.other, password)?;
    let verdict = |v: audit::Verdict| probes.iter().filter(move |p| p.verdict == v);
    let list = |probes: Vec<&audit::report::Probe>| -> String {
        probes.iter().map(|p| format!("{} ({}): {}", p.id, p.capability, p.observed)).collect::<Vec<_>>().join("; ")
    };
    let failed: Vec<_> = verdict(audit::Verdict::Fail).collect();
    if !failed.is_empty() {
        bail!("as `{}`, db-check's probes did not hold: {}", rotation.other, list(failed));
    }
    let undecided: Vec<_> = verdict(audit::Verdict::Inconclusive).collect();
    if !undecided.is_empty() {
        bail!("as `{}`, db-check's probes could not be decided (try again): {}", rotation.other, list(undecided));
    }
    let session = probes.iter().find(|p| p.id == "session").map(|p| p.observed.as_str()).unwrap_or_default();
    Ok(format!("; {} db-check probes hold in its session, {session}", probes.len()))
}

/// The settings of the first env file that holds the admin and every role,
/// and that file's variables.
fn source_settings(files: &[PathBuf]) -> Result<(Settings, dbenv::EnvVars)> {
    let mut errors = Vec::new();
    // The files alone decide which login is in use: a process variable
    // (an app container's DATABASE_URL, an old file `source`d) must not.
    for path in files {
        let vars = dbenv::EnvVars::load(path, true, &dbenv::ProcessEnv::none())?;
        match vars.provisioning() {
            Ok(settings) => return Ok((settings, vars)),
            Err(error) => errors.push(format!("`{}`: {error:#}", path.display())),
        }
    }
    bail!(
        "no env file given holds the admin's credentials and every role (as db-provision reads them): {}; name \
         that file first with --env-file",
        errors.join("; ")
    )
}

/// The roles `name` means: one of the three as the env names them, or all.
fn kinds_named(settings: &Settings, name: &str) -> Result<Vec<RoleKind>> {
    if name == "all" {
        return Ok(RoleKind::ALL.to_vec());
    }
    match RoleKind::ALL.into_iter().find(|kind| settings.role(*kind).name == name) {
        Some(kind) => Ok(vec![kind]),
        None => {
            let names: Vec<String> =
                RoleKind::ALL.iter().map(|kind| format!("`{}`", settings.role(*kind).name)).collect();
            bail!("`{name}` is not a role of this environment; rotate one of {} or `all`", names.join(", "))
        }
    }
}

/// One role in `--json`: its logins and the one the env files use; the
/// password only when `--print-password` asked for it.
fn json_of(rotation: &Rotation, in_use: &str, password: Option<&Secret>) -> serde_json::Value {
    let mut value = serde_json::json!({
        "role": rotation.names.role,
        "logins": rotation.names.logins(),
        "active": in_use,
    });
    if let Some(password) = password {
        value["password"] = serde_json::Value::String(password.expose().to_string());
    }
    value
}

/// Refuses, before any change, a file the new login cannot be written into
/// so that it works: the role's password without its DSN (the pieces name
/// the role, not a login), or a DSN without a password and no password
/// variable to take it from.
fn check_publishable(files: &[PathBuf], kind: RoleKind) -> Result<()> {
    let (dsn_var, password_var) = (kind.dsn_var(), kind.password_var());
    let mut holding = 0;
    for path in files {
        if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            bail!(
                "`{}` is a symbolic link: a rename would replace the link, not the file the app reads; name the file \
                 it points to. Nothing was changed",
                path.display()
            );
        }
        let vars = dbenv::EnvVars::load(path, true, &dbenv::ProcessEnv::none())?;
        let dsn = vars.get(dsn_var).map(|text| dbenv::Dsn::parse(dsn_var, text)).transpose()?;
        let has_password = vars.get(password_var).is_some();
        match dsn {
            None if has_password => bail!(
                "`{}` holds {password_var} but not {dsn_var}: the new login could not be named there; add \
                 {dsn_var} to it (or leave the file out), then run again. Nothing was changed",
                path.display()
            ),
            Some(dsn) if dsn.password.is_none() && !has_password => bail!(
                "`{}` holds {dsn_var} without a password and no {password_var}; nothing was changed",
                path.display()
            ),
            Some(_) => holding += 1,
            None => {}
        }
    }
    if holding == 0 {
        bail!(
            "no env file given holds {dsn_var}: the new login would reach nobody; name the app's env file with \
             --env-file. Nothing was changed"
        );
    }
    Ok(())
}
