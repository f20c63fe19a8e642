//! What the plan refuses, warns about and leaves to others, as values:
//! tests and callers match the variant; `Display` says it to a person, with
//! the fix. A refusal stops `db-provision` before its first change
//! ([`Refused`]); a warning or a note is printed and the run goes on.

use std::fmt;

use dbenv::quote_ident;

use crate::reach::PathClass;

/// A problem that stops the run before anything changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `APP_DB_NAME` is the maintenance database, without `--allow-postgres-database`.
    MaintenanceDatabase { database: String, migrator: String },
    /// `APP_DB_EXTENSIONS` names an extension the server does not have.
    MissingExtension { extension: String },
    /// A model role owns a schema outside `APP_DB_SCHEMAS`.
    StraySchema { schema: String, owner: String },
    /// A model role owns one of PostgreSQL's own schemas.
    SystemSchema { schema: String, owner: String },
    /// A runtime role owns an object in a schema outside `APP_DB_SCHEMAS`.
    OutsideAppSchemas { owner: String, kind: String, identity: String, schema: String },
    /// `REASSIGN OWNED` would also move a database or tablespace whose ACL
    /// names the migrator.
    ReassignTouchesOther { owner: String, what: Vec<String>, kind: &'static str, name: String, migrator: String },
    /// A conversion would hand an owner's-rights path to the migrator.
    OwnersRights {
        subject: String,
        message: String,
        /// Why the usual fix is out of reach on this server, if it is.
        version_note: String,
        migrator: String,
        fix: String,
        /// What kind of path: the policy-file table that accepts it follows.
        class: PathClass,
    },
    /// A foreign table on a server with a user mapping for a runtime role or PUBLIC.
    ForeignLogin { table: String, server: String },
    /// A conversion would give a runtime role privileges it never had.
    Widening { gains: Vec<String> },
    /// An existing role not shaped like a model role, without `--take-over`.
    Demotion { role: String, taken: Vec<String> },
    /// The environment logs in as the role's alternate login, which does
    /// not exist (`db-rotate` makes it).
    MissingLogin { role: String, login: String, var: &'static str },
}

/// Widenings named in a refusal; the rest are counted.
const SHOWN: usize = 20;

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::MaintenanceDatabase { database, migrator } => write!(
                f,
                "APP_DB_NAME is `{database}`, the cluster's maintenance database, which admin tools connect to: \
                 provisioning would give it to `{migrator}` and take CONNECT from PUBLIC. Give the app a database of \
                 its own, or run with `--allow-postgres-database` if this is really meant"
            ),
            Refusal::MissingExtension { extension } => write!(
                f,
                "APP_DB_EXTENSIONS names `{extension}`, which this server does not have: install its package on the \
                 server (pgvector: postgresql-<major>-pgvector), or remove it from APP_DB_EXTENSIONS"
            ),
            Refusal::StraySchema { schema, owner } => write!(
                f,
                "`{owner}` owns schema `{schema}`, which is not in APP_DB_SCHEMAS: add it to APP_DB_SCHEMAS so the \
                 runtime roles get their access there (and `db-check` checks what it holds), or drop it if nothing \
                 uses it"
            ),
            Refusal::SystemSchema { schema, owner } => {
                write!(f, "`{owner}` owns schema `{schema}`: give it back to its owner by hand")
            }
            Refusal::OutsideAppSchemas { owner, kind, identity, schema } => write!(
                f,
                "`{owner}` owns {kind} `{identity}` in schema `{schema}`, which is not in APP_DB_SCHEMAS: add \
                 `{schema}` to APP_DB_SCHEMAS so the runtime roles keep access to it, or move the object"
            ),
            Refusal::ReassignTouchesOther { owner, what, kind, name, migrator } => write!(
                f,
                "`{owner}` owns {} here and also owns {kind} `{name}`, whose ACL names `{migrator}`; moving them \
                 would change that {kind}'s ACL. Move them by hand",
                what.join(", ")
            ),
            Refusal::OwnersRights { subject, message, version_note, migrator, fix, class } => write!(
                f,
                "`{subject}`: {message}{version_note}. Converting hands it to `{migrator}`, so the runtime roles \
                 would gain its rights. Fix: {fix}; or list it under [[{}]] in the exemptions file with a reason",
                class.exemption().key()
            ),
            Refusal::ForeignLogin { table, server } => write!(
                f,
                "`{table}`: a foreign table on server `{server}`, which has a user mapping for a runtime role or \
                 PUBLIC: reading it logs in as the role the mapping names, so the runtime roles would read the \
                 remote data with that role's rights. Fix: drop the mapping or the table; or list it under [[view]] \
                 in the policy file with a reason"
            ),
            Refusal::Widening { gains } => {
                let more = gains.len().saturating_sub(SHOWN);
                write!(
                    f,
                    "the conversion would give a runtime role privileges it never had: {}{}. Accept them with \
                     `--allow-widening`, or keep a relation from a role with `[[private]]` (name, roles, reason) in \
                     the policy file",
                    gains.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; "),
                    if more > 0 { format!("; and {more} more") } else { String::new() }
                )
            }
            Refusal::Demotion { role, taken } => write!(
                f,
                "role `{role}` exists with {}, which no role of the model may have: provisioning would take {} away. \
                 If `{role}` is meant to be a model role, run again with `--take-over {role}`; otherwise name \
                 another role in the env file",
                taken.join(", "),
                if taken.len() == 1 { "it" } else { "them" },
            ),
            Refusal::MissingLogin { role, login, var } => write!(
                f,
                "{var} logs in as `{login}`, the alternate login of `{role}`, which does not exist: run \
                 `cargo xtask db-rotate {role}` to make it, or point {var} at `{role}`; a role really named \
                 `{login}` is named so in its user variable as well (APP_DB_USER, APP_DB_SERVICE_USER or \
                 APP_DB_MIGRATOR_USER)"
            ),
        }
    }
}

/// Something worth knowing that does not stop the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// PUBLIC's USAGE on a foreign-data wrapper or server is named, not revoked.
    PublicForeignUsage { noun: &'static str, name: String, keyword: &'static str, server: bool },
    /// A user mapping stays: it belongs to no one.
    UserMapping { user: String, server: String },
    /// Another role's default privileges give PUBLIC something.
    PublicDefaults { role: String, privs: String, object: String, schema: Option<String> },
    /// Something a runtime role owns that the plan does not move.
    RuntimeOwned { subject: String, item: String },
    /// An object not owned by the migrator that the plan does not move.
    NotMigratorOwned { kind: String, identity: String, owner: String, migrator: String },
    /// A role or database default the plan leaves to others.
    Setting { subject: String, item: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::PublicForeignUsage { noun, name, keyword, server } => write!(
                f,
                "PUBLIC holds USAGE on {noun} `{name}`, so the runtime roles may create {}; revoke it if nothing \
                 else needs it (`REVOKE USAGE ON {keyword} {} FROM PUBLIC`)",
                if *server { "user mappings for themselves" } else { "foreign servers" },
                quote_ident(name)
            ),
            Warning::UserMapping { user, server } => write!(
                f,
                "user mapping for `{user}` on server `{server}` stays: a mapping belongs to no one, so it is not \
                 moved; the runtime roles reach the remote database through it only via foreign tables they may read"
            ),
            Warning::PublicDefaults { role, privs, object, schema } => write!(
                f,
                "default privileges of `{role}` give PUBLIC {privs} on every new {object} it creates{}: the runtime \
                 roles get them too; revoke them if nothing needs them (`ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE …`)",
                schema.as_deref().map(|s| format!(" in schema `{s}`")).unwrap_or_default(),
                quote_ident(role)
            ),
            Warning::RuntimeOwned { subject, item } => write!(
                f,
                "{subject} is owned by a runtime role ({item}): `db-check` fails it; give it another owner by hand"
            ),
            Warning::NotMigratorOwned { kind, identity, owner, migrator } => {
                write!(f, "{kind} `{identity}` is owned by `{owner}`, not `{migrator}`; change its owner by hand")
            }
            Warning::Setting { subject, item } => write!(f, "{subject}: {item}"),
        }
    }
}

/// What the plan deliberately leaves to others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// An app schema that does not exist yet: the migrations create it.
    SchemaLeftToMigrations { schema: String, migrator: String },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::SchemaLeftToMigrations { schema, migrator } => write!(
                f,
                "schema `{schema}` does not exist yet: it is left to the migrations, which create it as \
                 `{migrator}`; `cargo xtask db-migrate` then grants the runtime roles their access there"
            ),
        }
    }
}

/// The error `db-provision` stops with when the plan refuses: nothing was
/// changed. Callers match [`Refused::refusals`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub refusals: Vec<Refusal>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_problems(f, "nothing was changed", "must be fixed first", &self.refusals)
    }
}

/// `<outcome>; <n> problem(s) <then>:` and one indented line per problem:
/// how a run that refused before its first change says so.
pub fn write_problems(
    f: &mut fmt::Formatter<'_>,
    outcome: &str,
    then: &str,
    problems: &[impl fmt::Display],
) -> fmt::Result {
    let count = problems.len();
    write!(f, "{outcome}; {count} problem{} {then}:", if count == 1 { "" } else { "s" })?;
    for problem in problems {
        write!(f, "\n  - {problem}")?;
    }
    Ok(())
}

impl std::error::Error for Refused {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_what_stops_the_run_and_the_fix() {
        let refused = Refused {
            refusals: vec![
                Refusal::Demotion { role: "app_user".into(), taken: vec!["CREATEDB".into()] },
                Refusal::MissingExtension { extension: "vector".into() },
            ],
        };
        assert_eq!(
            refused.to_string(),
            "nothing was changed; 2 problems must be fixed first:\n  - role `app_user` exists with CREATEDB, which no \
             role of the model may have: provisioning would take it away. If `app_user` is meant to be a model role, \
             run again with `--take-over app_user`; otherwise name another role in the env file\n  - \
             APP_DB_EXTENSIONS names `vector`, which this server does not have: install its package on the server \
             (pgvector: postgresql-<major>-pgvector), or remove it from APP_DB_EXTENSIONS"
        );
        let gains: Vec<String> = (0..22).map(|i| format!("`app_user` gains SELECT on `public.t{i}`")).collect();
        let widening = Refusal::Widening { gains }.to_string();
        assert!(widening.contains("`public.t19`; and 2 more. Accept them with `--allow-widening`"), "{widening}");
        assert!(!widening.contains("`public.t20`"), "{widening}");
        let path = Refusal::OwnersRights {
            subject: "public.v".into(),
            message: "view over RLS table `public.users`".into(),
            version_note: " (PostgreSQL 14 has no security_invoker)".into(),
            migrator: "app_migrator".into(),
            fix: "drop it".into(),
            class: PathClass::View,
        };
        assert_eq!(
            path.to_string(),
            "`public.v`: view over RLS table `public.users` (PostgreSQL 14 has no security_invoker). Converting hands \
             it to `app_migrator`, so the runtime roles would gain its rights. Fix: drop it; or list it under [[view]] \
             in the exemptions file with a reason"
        );
    }
}
