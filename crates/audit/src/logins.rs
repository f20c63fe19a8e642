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
use crate::report::CheckSummary;

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
    }
    check
}

/// Each rotated role's logins, and which of them can log in.
pub fn notes(found: &[RoleLogins]) -> Vec<String> {
    found
        .iter()
        .filter(|logins| logins.alt.is_some())
        .map(|logins| {
            let each: Vec<String> = [&logins.role, &logins.alt]
                .into_iter()
                .flatten()
                .map(|row| format!("`{}` ({})", row.name, if row.login { "LOGIN" } else { "NOLOGIN" }))
                .collect();
            format!("logins of `{}`: {}", logins.names.role, each.join(", "))
        })
        .collect()
}
