//! `cargo xtask env --check`: each env file checked in the role it plays,
//! and the files given together checked for one password per role.
//!
//! - a **development** file holds the admin's credentials (`POSTGRES_ROOT_*`
//!   or `DATABASE_ROOT_URL`): every setting `db-provision` reads, plus the
//!   start-up invariants of an env file;
//! - a **migration** environment holds `DATABASE_MIGRATOR_URL` and no
//!   `DATABASE_URL`: the migrator's credentials, never a runtime role's;
//! - a **runtime** environment is everything else: `DATABASE_URL` and
//!   `DATABASE_SERVICE_URL` pass the start-up invariants, and the
//!   migrator's credentials are warned about.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::env::{conflicting_roles, name_and_password, EnvVars, RoleKind, Settings};
use crate::invariants::{self, Context, Severity, Violation};
use crate::{keys, Dsn, Host};

/// The role an env file plays, read from what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRole {
    Development,
    Migration,
    Runtime,
}

impl FileRole {
    pub fn of(vars: &EnvVars) -> FileRole {
        let admin = [keys::POSTGRES_ROOT_PASSWORD, keys::DATABASE_ROOT_URL].iter().any(|key| vars.get(key).is_some());
        if admin {
            FileRole::Development
        } else if vars.get(keys::DATABASE_MIGRATOR_URL).is_some() && vars.get(keys::DATABASE_URL).is_none() {
            FileRole::Migration
        } else {
            FileRole::Runtime
        }
    }
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileRole::Development => "development or provisioning file (admin and every role)",
            FileRole::Migration => "migration environment (DATABASE_MIGRATOR_URL)",
            FileRole::Runtime => "runtime environment (DATABASE_URL, DATABASE_SERVICE_URL)",
        })
    }
}

/// One thing a file's check found; `Display` is the text `env --check`
/// prints after the file's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// A start-up rule, with its own severity and fix.
    Rule(Violation),
    /// The file's settings do not load: the loader's error, with its fix.
    Settings(String),
    /// A development file holds the admin's credentials for a server that is
    /// not this machine.
    RemoteAdmin { host: String },
    /// A migration environment holds a runtime role's DSN or password.
    RuntimeSecretInMigration { var: &'static str, kind: RoleKind },
    /// A runtime environment holds the migrator's password.
    MigratorPasswordAtRuntime,
    /// The file holds the admin's password and its group or others may read it.
    ReadableAdminSecret { path: PathBuf, mode: u32 },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Rule(Violation { rule, message, .. }) => write!(f, "[{rule}] {message}"),
            FileProblem::Settings(error) => f.write_str(error),
            FileProblem::RemoteAdmin { host } => write!(
                f,
                "holds the admin's credentials (POSTGRES_ROOT_PASSWORD or DATABASE_ROOT_URL) for `{host}`, not this \
                 machine: only the provisioning job needs them; never give this file to the app or the migration job"
            ),
            FileProblem::RuntimeSecretInMigration { var, kind } => write!(
                f,
                "{var} is set in a migration environment: migrations never need the {kind} role's credentials; \
                 remove it (its name, {}, is enough to grant to it)",
                kind.user_var()
            ),
            FileProblem::MigratorPasswordAtRuntime => f.write_str(
                "APP_DB_MIGRATOR_PASSWORD is set in a runtime environment: the app never needs the migrator's \
                 password; remove it (least secret exposure)",
            ),
            FileProblem::ReadableAdminSecret { path, mode } => write!(
                f,
                "holds the admin's password and its group or others may read it (mode {mode:04o}); run `chmod 600 {}`",
                path.display()
            ),
        }
    }
}

/// What one file's check found.
#[derive(Debug)]
pub struct FileCheck {
    pub path: PathBuf,
    pub role: FileRole,
    pub errors: Vec<FileProblem>,
    pub warnings: Vec<FileProblem>,
}

/// Two files on one server give a role different passwords (roles are
/// cluster-wide). Never holds a value; `hints` says how each file quotes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordConflict {
    pub role: String,
    pub files: (PathBuf, PathBuf),
    pub hints: String,
}

impl fmt::Display for PasswordConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "role `{}`: `{}` and `{}` give it different passwords on the same server; make them equal{}",
            self.role,
            self.files.0.display(),
            self.files.1.display(),
            self.hints
        )
    }
}

/// Checks one file's variables in the role they play.
pub fn check_file(path: &Path, vars: &EnvVars) -> FileCheck {
    let role = FileRole::of(vars);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let context = match role {
        FileRole::Development => {
            if let Err(error) = Settings::from_env(vars) {
                errors.push(FileProblem::Settings(format!("{error:#}")));
            }
            if let Some((host, _)) = server_of(vars).filter(|(host, _)| !Host::Tcp(host.clone()).is_local()) {
                warnings.push(FileProblem::RemoteAdmin { host });
            }
            Context::EnvFile
        }
        FileRole::Migration => {
            for kind in [RoleKind::Runtime, RoleKind::Service] {
                for var in [kind.dsn_var(), kind.password_var()] {
                    if vars.get(var).is_some() {
                        warnings.push(FileProblem::RuntimeSecretInMigration { var, kind });
                    }
                }
            }
            Context::Migration
        }
        FileRole::Runtime => {
            if vars.get(RoleKind::Migrator.password_var()).is_some() {
                warnings.push(FileProblem::MigratorPasswordAtRuntime);
            }
            Context::Runtime
        }
    };
    // Each role whose variables or DSN are present must agree with itself
    // (DSN user and password against APP_DB_* when both are given).
    if role != FileRole::Development {
        for kind in RoleKind::ALL {
            let present = [kind.dsn_var(), kind.user_var(), kind.password_var()].iter().any(|v| vars.get(v).is_some());
            let needed = match role {
                FileRole::Migration => kind == RoleKind::Migrator,
                _ => kind != RoleKind::Migrator,
            };
            if present && needed {
                if let Err(error) = name_and_password(vars, kind) {
                    errors.push(FileProblem::Settings(format!("{error:#}")));
                }
            }
        }
    }
    for violation in invariants::check(vars, context) {
        match violation.severity {
            Severity::Error => errors.push(FileProblem::Rule(violation)),
            Severity::Warning => warnings.push(FileProblem::Rule(violation)),
        }
    }
    warnings.extend(readable_admin_secret(path, vars));
    errors.dedup();
    FileCheck { path: path.to_path_buf(), role, errors, warnings }
}

/// A warning when the file itself holds the admin's password (not the
/// process environment) and its group or others may read it.
fn readable_admin_secret(path: &Path, vars: &EnvVars) -> Option<FileProblem> {
    use std::os::unix::fs::PermissionsExt;
    let in_file = |key: &str| vars.get(key).is_some() && vars.origin(key) != "the process environment";
    let admin_dsn_password = in_file(keys::DATABASE_ROOT_URL)
        && vars
            .get(keys::DATABASE_ROOT_URL)
            .and_then(|url| Dsn::parse(keys::DATABASE_ROOT_URL, url).ok())
            .is_some_and(|dsn| dsn.password.is_some());
    if !(in_file(keys::POSTGRES_ROOT_PASSWORD) || admin_dsn_password) {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| FileProblem::ReadableAdminSecret { path: path.to_path_buf(), mode })
}

use crate::env::server_of;

/// Files given together that point at one server must give each role one
/// password (roles are cluster-wide). Never names a value.
pub fn password_conflicts(files: &[(PathBuf, EnvVars)]) -> Vec<PasswordConflict> {
    let mut conflicts = Vec::new();
    for (i, (path_a, a)) in files.iter().enumerate() {
        for (path_b, b) in &files[i + 1..] {
            if server_of(a).is_none() || server_of(a) != server_of(b) {
                continue;
            }
            for (name, kind_a, kind_b) in conflicting_roles(a, b) {
                let hints = a.quoting_hint(&[kind_a.password_var(), kind_a.dsn_var()])
                    + &b.quoting_hint(&[kind_b.password_var(), kind_b.dsn_var()]);
                conflicts.push(PasswordConflict { role: name, files: (path_a.clone(), path_b.clone()), hints });
            }
        }
    }
    conflicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::Rule;

    const RUNTIME: &str = "postgresql://app_user:pw1@db.internal:5432/app?sslmode=verify-full";
    const SERVICE: &str = "postgresql://app_service:pw2@db.internal:5432/app?sslmode=verify-full";
    const MIGRATOR: &str = "postgresql://app_migrator:pw3@db.internal:5432/app?sslmode=verify-full";

    fn vars(pairs: &[(&str, &str)]) -> EnvVars {
        EnvVars::from_pairs(pairs.iter().copied())
    }

    fn has(found: &[FileProblem], rule: Rule) -> bool {
        found.iter().any(|problem| matches!(problem, FileProblem::Rule(v) if v.rule == rule))
    }

    #[test]
    fn an_admin_password_in_a_file_others_may_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.provision");
        std::fs::write(&path, "POSTGRES_ROOT_USER=postgres\nPOSTGRES_ROOT_PASSWORD='s3cret'\nAPP_DB_NAME=app\n")
            .unwrap();
        let warned = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let vars = EnvVars::load(&path, true, &crate::ProcessEnv::none()).unwrap();
            let check = check_file(&path, &vars);
            let text: Vec<String> = check.warnings.iter().chain(&check.errors).map(|w| w.to_string()).collect();
            assert!(!text.iter().any(|w| w.contains("s3cret")), "{text:?}");
            check.warnings.contains(&FileProblem::ReadableAdminSecret { path: path.clone(), mode })
        };
        assert!(warned(0o644));
        assert!(warned(0o640));
        assert!(!warned(0o600));
    }

    #[test]
    fn roles_are_read_from_what_a_file_holds() {
        assert_eq!(FileRole::of(&vars(&[("DATABASE_URL", RUNTIME)])), FileRole::Runtime);
        assert_eq!(FileRole::of(&vars(&[("DATABASE_MIGRATOR_URL", MIGRATOR)])), FileRole::Migration);
        assert_eq!(
            FileRole::of(&vars(&[("DATABASE_URL", RUNTIME), ("DATABASE_MIGRATOR_URL", MIGRATOR)])),
            FileRole::Runtime
        );
        assert_eq!(FileRole::of(&vars(&[("POSTGRES_ROOT_PASSWORD", "x")])), FileRole::Development);
    }

    #[test]
    fn a_production_runtime_file_passes_and_the_migrator_is_warned_about() {
        let check =
            check_file(Path::new("prod.env"), &vars(&[("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", SERVICE)]));
        assert!(check.errors.is_empty() && check.warnings.is_empty(), "{check:?}");
        let check = check_file(
            Path::new("prod.env"),
            &vars(&[("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", SERVICE), ("DATABASE_MIGRATOR_URL", MIGRATOR)]),
        );
        assert!(check.errors.is_empty(), "{check:?}");
        assert!(has(&check.warnings, Rule::MigratorAbsentAtRuntime), "{check:?}");
    }

    #[test]
    fn a_runtime_file_with_the_same_user_twice_or_no_tls_fails() {
        let check =
            check_file(Path::new("prod.env"), &vars(&[("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", RUNTIME)]));
        assert!(has(&check.errors, Rule::DistinctUsers), "{check:?}");
        let plain = "postgresql://app_user:pw1@db.internal:5432/app";
        let check =
            check_file(Path::new("prod.env"), &vars(&[("DATABASE_URL", plain), ("DATABASE_SERVICE_URL", SERVICE)]));
        assert!(has(&check.errors, Rule::TlsOffHost), "{check:?}");
    }

    #[test]
    fn admin_credentials_for_a_remote_server_are_warned_about() {
        let pairs = [("POSTGRES_ROOT_PASSWORD", "root-pw"), ("DB_HOST", "db.internal"), ("DATABASE_URL", RUNTIME)];
        let check = check_file(Path::new("prod.env"), &vars(&pairs));
        assert_eq!(check.role, FileRole::Development);
        assert_eq!(check.warnings, [FileProblem::RemoteAdmin { host: "db.internal".into() }], "{check:?}");
        assert!(!format!("{check:?}").contains("root-pw"));
        let local = [("POSTGRES_ROOT_PASSWORD", "root-pw"), ("DB_HOST", "localhost")];
        assert_eq!(check_file(Path::new(".env.local"), &vars(&local)).warnings, []);
    }

    #[test]
    fn a_migration_environment_needs_only_the_migrator() {
        let check = check_file(Path::new("migrate.env"), &vars(&[("DATABASE_MIGRATOR_URL", MIGRATOR)]));
        assert!(check.errors.is_empty() && check.warnings.is_empty(), "{check:?}");
        let check = check_file(
            Path::new("migrate.env"),
            &vars(&[("DATABASE_MIGRATOR_URL", MIGRATOR), ("APP_DB_PASSWORD", "pw1")]),
        );
        let runtime = FileProblem::RuntimeSecretInMigration { var: "APP_DB_PASSWORD", kind: RoleKind::Runtime };
        assert_eq!(check.warnings, [runtime], "{check:?}");
        let admin = "postgresql://postgres:pw@db.internal:5432/app?sslmode=require";
        let check = check_file(Path::new("migrate.env"), &vars(&[("DATABASE_MIGRATOR_URL", admin)]));
        assert!(has(&check.errors, Rule::NoAdminUser), "{check:?}");
        let check = check_file(
            Path::new("migrate.env"),
            &vars(&[("DATABASE_MIGRATOR_URL", MIGRATOR), ("APP_DB_USER", "app_migrator")]),
        );
        assert!(has(&check.errors, Rule::MigratorSeparate), "{check:?}");
    }

    #[test]
    fn files_on_one_server_must_agree_on_passwords_and_never_name_them() {
        let runtime = vars(&[("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", SERVICE)]);
        let other = vars(&[("DATABASE_URL", "postgresql://app_user:other-secret@db.internal:5432/app")]);
        let conflicts =
            password_conflicts(&[(PathBuf::from("a.env"), runtime.clone()), (PathBuf::from("b.env"), other)]);
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].role, "app_user");
        assert_eq!(conflicts[0].files, (PathBuf::from("a.env"), PathBuf::from("b.env")));
        assert!(!conflicts[0].to_string().contains("other-secret"), "{conflicts:?}");
        let elsewhere = vars(&[("DATABASE_URL", "postgresql://app_user:other-secret@db2.internal:5432/app")]);
        assert!(
            password_conflicts(&[(PathBuf::from("a.env"), runtime), (PathBuf::from("c.env"), elsewhere)]).is_empty()
        );
    }
}
