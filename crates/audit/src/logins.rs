//! The `logins` check: the logins `db-rotate` gives each of the three roles
//! (`roles::logins`) act only as their role. Each gate and alternate login
//! is ours, holds no power, owns and holds nothing (`pg_shdepend`, in every
//! database), reaches only its role and only through SET ROLE, and starts
//! its sessions as the role; nobody else enters through a gate. A role
//! that was never rotated has no such login and passes as it is.

use anyhow::Result;
use dbenv::ServerVersion;
use postgres::Client;
use roles::logins::{LoginNames, RoleLogins};
use roles::Model;

use crate::checks::CheckId;
use crate::report::{CheckSummary, LoginUse, RoleLoginState, Rotation};

/// The logins of the three roles (one query). A role whose name is too
/// long to have an alternate login has none to read.
pub fn read(client: &mut Client, model: &Model, version: ServerVersion) -> Result<Vec<RoleLogins>> {
    let names: Vec<LoginNames> = model.roles().iter().filter_map(|spec| LoginNames::of(&spec.name).ok()).collect();
    RoleLogins::read_all(client, version, &names, &model.db_name)
}

pub fn check(found: &[RoleLogins]) -> CheckSummary {
    let mut check = CheckSummary::new(CheckId::Logins);
    for logins in found {
        check.checked += 1 + usize::from(logins.gate.is_some()) + usize::from(logins.alt.is_some());
        // The audit knows no admin: a creator that may act through a gate
        // is named like anyone else.
        for problem in logins.problems("") {
            check.fail(&logins.names.role, problem.to_string());
        }
        let can_log_in = [&logins.role, &logins.alt].into_iter().flatten().any(|row| row.login);
        if logins.alt.is_some() && !can_log_in {
            check.fail(
                &logins.names.role,
                format!(
                    "neither `{}` nor `{}` can log in: nothing can connect as the role; run `cargo xtask db-rotate \
                     {}` to give one of them a new password",
                    logins.names.role, logins.names.alt, logins.names.role
                ),
            );
        }
    }
    check
}

/// Each role's logins and where its rotation stands. `used` names, per
/// role, the login the check's sessions logged in as (none for a migrator
/// whose DSN the env does not give).
pub fn states(found: &[RoleLogins], used: &[(&str, Option<&str>)]) -> Vec<RoleLoginState> {
    found
        .iter()
        .map(|logins| {
            let role = &logins.names.role;
            let used_login = used.iter().find(|(r, _)| *r == role.as_str()).and_then(|(_, login)| *login);
            let each: Vec<LoginUse> = [&logins.role, &logins.alt]
                .into_iter()
                .flatten()
                .map(|row| LoginUse {
                    name: row.name.clone(),
                    can_log_in: row.login,
                    used: used_login == Some(row.name.as_str()),
                })
                .collect();
            let active: Vec<&LoginUse> = each.iter().filter(|l| l.can_log_in).collect();
            let rotation = match (&logins.alt, active.as_slice()) {
                (None, _) => Rotation::Never,
                (Some(_), []) => Rotation::NoLogin,
                (Some(_), [one]) => Rotation::Settled(one.name.clone()),
                (Some(_), _) => Rotation::Overlap,
            };
            RoleLoginState { role: role.clone(), rotation, logins: each }
        })
        .collect()
}

/// Each rotated role's logins, which of them can log in and which this
/// check used; and for a login that can log in but was not used, how it is
/// proven instead.
pub fn notes(states: &[RoleLoginState]) -> Vec<String> {
    let mut notes = Vec::new();
    for state in states.iter().filter(|s| s.rotation != Rotation::Never) {
        let each: Vec<String> = state
            .logins
            .iter()
            .map(|l| {
                let used = if l.used { ", used here" } else { "" };
                format!("`{}` ({}{used})", l.name, if l.can_log_in { "LOGIN" } else { "NOLOGIN" })
            })
            .collect();
        let stands = match &state.rotation {
            Rotation::Settled(login) => format!("settled on `{login}`"),
            Rotation::Overlap => format!(
                "in a rotation's overlap: both can log in until `cargo xtask db-rotate {} --finish`",
                state.role
            ),
            Rotation::NoLogin => "neither can log in: the app cannot connect as it".to_string(),
            Rotation::Never => unreachable!(),
        };
        notes.push(format!("logins of `{}`: {}; {stands}", state.role, each.join(", ")));
        let used_any = state.logins.iter().any(|l| l.used);
        for login in state.logins.iter().filter(|l| l.can_log_in && !l.used && used_any) {
            notes.push(format!(
                "`{}` can log in but this env does not name it, so nothing was tried in its sessions; the `logins` \
                 check proves from the catalog that it holds nothing of its own and starts as `{}` (to try it live, \
                 run db-check with an env file that logs in as it)",
                login.name, state.role
            ));
        }
    }
    notes
}
