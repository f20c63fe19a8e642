//! Start-up invariants (the seed's `invariants.ts` change): what a service
//! checks about its database environment before it serves, and what
//! `cargo xtask env --check` checks about the env files.

use std::fmt;

use crate::env::{EnvVars, RoleKind};
use crate::{alt_login, keys, Dsn, Host, SslMode};

/// User names that mean an administrative role, refused for the app's DSNs.
pub const ADMIN_NAMES: &[&str] = &["postgres", "root", "superuser", "admin"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// Where the check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A service starting up: the migrator DSN has no business there.
    Runtime,
    /// A developer's env file, which holds every DSN on purpose.
    EnvFile,
    /// A migration job's environment: the migrator's DSN only.
    Migration,
}

/// A start-up rule. It prints as its name (`dsn-present`, …), which
/// `env --check` and the app's own check show in brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Each DSN the context needs is set.
    DsnPresent,
    /// Each DSN names its user.
    DsnUser,
    /// Each DSN parses.
    DsnParse,
    /// No app DSN logs in as an administrative name.
    NoAdminUser,
    /// The runtime and the service roles are different roles.
    DistinctUsers,
    /// Neither runtime role is the migrator.
    MigratorSeparate,
    /// A DSN to another machine uses TLS (or says the network is private).
    TlsOffHost,
    /// A runtime environment does not hold the migrator's DSN.
    MigratorAbsentAtRuntime,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::DsnPresent => "dsn-present",
            Rule::DsnUser => "dsn-user",
            Rule::DsnParse => "dsn-parse",
            Rule::NoAdminUser => "no-admin-user",
            Rule::DistinctUsers => "distinct-users",
            Rule::MigratorSeparate => "migrator-separate",
            Rule::TlsOffHost => "tls-off-host",
            Rule::MigratorAbsentAtRuntime => "migrator-absent-at-runtime",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule, with its fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level} [{}]: {}", self.rule, self.message)
    }
}

/// Every rule, over the process environment and env file in `vars`.
pub fn check(vars: &EnvVars, context: Context) -> Vec<Violation> {
    let (dsns, mut found) = read_dsns(vars, context);
    found.extend(admin_names(&dsns));
    found.extend(distinct_users(&dsns));
    found.extend(migrator_separate(vars, &dsns));
    found.extend(dsns.iter().filter_map(|(kind, dsn)| tls_off_host(*kind, dsn)));
    if context == Context::Runtime && vars.get(keys::DATABASE_MIGRATOR_URL).is_some() {
        found.push(Violation {
            rule: Rule::MigratorAbsentAtRuntime,
            severity: Severity::Warning,
            message: "DATABASE_MIGRATOR_URL is set in a runtime environment: the app never needs it; remove it from \
                      the service's environment (least secret exposure)"
                .to_string(),
        });
    }
    found
}

fn error(rule: Rule, message: String) -> Violation {
    Violation { rule, severity: Severity::Error, message }
}

/// The DSNs `context` needs, parsed, and what is wrong with them.
fn read_dsns(vars: &EnvVars, context: Context) -> (Vec<(RoleKind, Dsn)>, Vec<Violation>) {
    let mut found = Vec::new();
    let mut dsns = Vec::new();
    for kind in [RoleKind::Runtime, RoleKind::Service, RoleKind::Migrator] {
        let var = kind.dsn_var();
        let required = match context {
            Context::Migration => kind == RoleKind::Migrator,
            _ => kind != RoleKind::Migrator,
        };
        match vars.get(var) {
            None if !required => {}
            None if kind == RoleKind::Migrator => found.push(error(
                Rule::DsnPresent,
                format!("{var} is missing or empty: migrations run only as the migrator role; set it"),
            )),
            None => found.push(error(
                Rule::DsnPresent,
                format!("{var} is missing or empty: the app needs it to connect as the {kind} role; set it (`cargo xtask env`)"),
            )),
            Some(text) => match Dsn::parse(var, text) {
                Ok(dsn) if dsn.user.is_none() => found.push(error(
                    Rule::DsnUser,
                    format!("{var} names no user; write it as postgresql://USER:PASSWORD@HOST:PORT/DB"),
                )),
                Ok(dsn) => dsns.push((kind, dsn)),
                Err(e) => found.push(error(Rule::DsnParse, format!("{e:#}"))),
            },
        }
    }
    (dsns, found)
}

fn user(dsns: &[(RoleKind, Dsn)], kind: RoleKind) -> Option<String> {
    dsns.iter().find(|(k, _)| *k == kind).and_then(|(_, d)| d.user.clone())
}

fn admin_names(dsns: &[(RoleKind, Dsn)]) -> Vec<Violation> {
    let admin = |(_, dsn): &&(RoleKind, Dsn)| {
        ADMIN_NAMES.contains(&dsn.user.as_deref().unwrap_or_default().to_ascii_lowercase().as_str())
    };
    dsns.iter()
        .filter(admin)
        .map(|(kind, dsn)| {
            error(
                Rule::NoAdminUser,
                format!(
                    "{} logs in as `{}`, an administrative name: the {kind} role must be its own least-privileged \
                     role (`cargo xtask db-provision` creates it)",
                    kind.dsn_var(),
                    dsn.user.as_deref().unwrap_or_default()
                ),
            )
        })
        .collect()
}

/// Two DSN users stand for one role: the same name, or a role and its
/// alternate login (`db-rotate`). Read both ways, so that a login is never
/// taken for another role's.
fn same_role(a: &str, b: &str) -> bool {
    a == b || a == alt_login(b) || b == alt_login(a)
}

fn distinct_users(dsns: &[(RoleKind, Dsn)]) -> Option<Violation> {
    let (runtime, service) = (user(dsns, RoleKind::Runtime)?, user(dsns, RoleKind::Service)?);
    same_role(&runtime, &service).then(|| {
        error(
            Rule::DistinctUsers,
            format!("DATABASE_URL and DATABASE_SERVICE_URL both log in as `{runtime}`: the runtime role must not bypass RLS, so they must differ"),
        )
    })
}

fn migrator_separate(vars: &EnvVars, dsns: &[(RoleKind, Dsn)]) -> Vec<Violation> {
    let Some(migrator) = user(dsns, RoleKind::Migrator) else { return Vec::new() };
    let mut found = Vec::new();
    for kind in [RoleKind::Runtime, RoleKind::Service] {
        // A migration environment names the runtime roles without DSNs.
        let named = match user(dsns, kind) {
            Some(name) => Some((kind.dsn_var(), "logs in as", name)),
            None => vars.get(kind.user_var()).map(|name| (kind.user_var(), "names", name.to_string())),
        };
        if let Some((var, verb, name)) = named.filter(|(_, _, name)| same_role(name, &migrator)) {
            found.push(error(
                Rule::MigratorSeparate,
                format!(
                    "{var} {verb} `{name}`, the migrator (DATABASE_MIGRATOR_URL): the {kind} role must not own \
                     the schema; point {var} at the {kind} role"
                ),
            ));
        }
    }
    found
}

fn tls_off_host(kind: RoleKind, dsn: &Dsn) -> Option<Violation> {
    let var = kind.dsn_var();
    if dsn.host.as_ref().is_none_or(Host::is_local) {
        return None;
    }
    let (severity, message) = match dsn.sslmode {
        Some(SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => return None,
        Some(SslMode::Disable) => (
            Severity::Warning,
            format!(
                "{var} connects to `{}` without TLS (sslmode=disable): acceptable only on a private network, as \
                 inside the compose network; otherwise use sslmode=verify-full",
                dsn.address()
            ),
        ),
        other => (
            Severity::Error,
            format!(
                "{var} connects to `{}`, not this machine, with sslmode={}: credentials would cross the network \
                 unencrypted or unverified; add `sslmode=verify-full&sslrootcert=…` (or `sslmode=require`), or \
                 `sslmode=disable` to say the network is private",
                dsn.address(),
                other.map(SslMode::as_str).unwrap_or("prefer (the default)")
            ),
        ),
    };
    Some(Violation { rule: Rule::TlsOffHost, severity, message })
}

/// The start-up check a Rust service calls before it serves: `Err` lists
/// every error; warnings come back for the service to log.
pub fn startup_check(vars: &EnvVars) -> anyhow::Result<Vec<Violation>> {
    let found = check(vars, Context::Runtime);
    let errors: Vec<String> = found.iter().filter(|v| v.severity == Severity::Error).map(|v| v.to_string()).collect();
    if !errors.is_empty() {
        anyhow::bail!("the database environment is unsafe to serve with:\n  - {}", errors.join("\n  - "));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNTIME: &str = "postgresql://app_user:password@localhost:55432/db";
    const SERVICE: &str = "postgresql://app_service:service_password@localhost:55432/db";
    const MIGRATOR: &str = "postgresql://app_migrator:migrator_password@localhost:55432/db";

    fn rules(pairs: &[(&str, &str)], context: Context) -> Vec<(Rule, Severity)> {
        check(&EnvVars::from_pairs(pairs.iter().copied()), context).iter().map(|v| (v.rule, v.severity)).collect()
    }

    #[test]
    fn the_dev_environment_passes() {
        let pairs = [("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", SERVICE), ("DATABASE_MIGRATOR_URL", MIGRATOR)];
        assert!(rules(&pairs, Context::EnvFile).is_empty());
        assert!(rules(&pairs[..2], Context::Runtime).is_empty(), "the migrator DSN is optional at runtime");
    }

    #[test]
    fn every_rule_fires() {
        use Severity::*;
        type Case<'a> = (Vec<(&'a str, &'a str)>, Context, Vec<(Rule, Severity)>);
        let cases: Vec<Case> = vec![
            (vec![("DATABASE_SERVICE_URL", SERVICE)], Context::Runtime, vec![(Rule::DsnPresent, Error)]),
            (
                vec![("DATABASE_URL", ""), ("DATABASE_SERVICE_URL", SERVICE)],
                Context::Runtime,
                vec![(Rule::DsnPresent, Error)],
            ),
            (
                vec![("DATABASE_URL", "mysql://x@h/db"), ("DATABASE_SERVICE_URL", SERVICE)],
                Context::Runtime,
                vec![(Rule::DsnParse, Error)],
            ),
            (
                vec![("DATABASE_URL", "postgresql://h/db"), ("DATABASE_SERVICE_URL", SERVICE)],
                Context::Runtime,
                vec![(Rule::DsnUser, Error)],
            ),
            (
                vec![("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", RUNTIME)],
                Context::Runtime,
                vec![(Rule::DistinctUsers, Error)],
            ),
            (
                vec![("DATABASE_URL", "postgres://postgres:x@localhost/db"), ("DATABASE_SERVICE_URL", SERVICE)],
                Context::Runtime,
                vec![(Rule::NoAdminUser, Error)],
            ),
            (
                vec![("DATABASE_URL", "postgresql://Admin:x@localhost/db"), ("DATABASE_SERVICE_URL", SERVICE)],
                Context::Runtime,
                vec![(Rule::NoAdminUser, Error)],
            ),
            (
                vec![("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", SERVICE), ("DATABASE_MIGRATOR_URL", RUNTIME)],
                Context::EnvFile,
                vec![(Rule::MigratorSeparate, Error)],
            ),
            (
                vec![("DATABASE_URL", RUNTIME), ("DATABASE_SERVICE_URL", SERVICE), ("DATABASE_MIGRATOR_URL", MIGRATOR)],
                Context::Runtime,
                vec![(Rule::MigratorAbsentAtRuntime, Warning)],
            ),
            (
                vec![("DATABASE_URL", "postgresql://app_user:p@db.example.com/db"), ("DATABASE_SERVICE_URL", SERVICE)],
                Context::Runtime,
                vec![(Rule::TlsOffHost, Error)],
            ),
            (
                vec![
                    ("DATABASE_URL", "postgresql://app_user:p@db.internal/db?sslmode=disable"),
                    ("DATABASE_SERVICE_URL", SERVICE),
                ],
                Context::Runtime,
                vec![(Rule::TlsOffHost, Warning)],
            ),
            (
                vec![
                    (
                        "DATABASE_URL",
                        "postgresql://app_user:p@db.example.com/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt",
                    ),
                    ("DATABASE_SERVICE_URL", "postgres://app_service:p@10.0.0.5/db?sslmode=require"),
                ],
                Context::Runtime,
                vec![],
            ),
        ];
        for (pairs, context, expected) in cases {
            assert_eq!(rules(&pairs, context), expected, "{pairs:?}");
        }
    }

    #[test]
    fn an_alternate_login_is_its_role_for_every_rule() {
        let alt = |user: &str| format!("postgresql://{user}:p@localhost:55432/db");
        let pairs = [("DATABASE_URL", alt("app_migrator_alt")), ("DATABASE_SERVICE_URL", SERVICE.to_string())];
        let mut vars: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.push(("DATABASE_MIGRATOR_URL", MIGRATOR));
        assert_eq!(rules(&vars, Context::EnvFile), [(Rule::MigratorSeparate, Severity::Error)]);
        let (runtime, service) = (alt("app_user"), alt("app_user_alt"));
        let vars = [("DATABASE_URL", runtime.as_str()), ("DATABASE_SERVICE_URL", service.as_str())];
        assert_eq!(rules(&vars, Context::Runtime), [(Rule::DistinctUsers, Severity::Error)]);
        // Each role on its own alternate login is fine.
        let (runtime, service, migrator) = (alt("app_user_alt"), alt("app_service_alt"), alt("app_migrator_alt"));
        let vars = [
            ("DATABASE_URL", runtime.as_str()),
            ("DATABASE_SERVICE_URL", service.as_str()),
            ("DATABASE_MIGRATOR_URL", migrator.as_str()),
        ];
        assert_eq!(rules(&vars, Context::EnvFile), []);
    }

    /// The cases the app's own start-up check (`platform/db/env/invariants.ts`)
    /// is tested with: the same verdict and the same rules here.
    #[test]
    fn the_shared_cases_hold_in_the_runtime_context() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../platform/db/env/invariants.cases.json");
        let text = std::fs::read_to_string(path).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases = file["cases"].as_array().unwrap();
        assert!(cases.len() > 40, "{}", cases.len());
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let env: Vec<(&str, &str)> =
                case["env"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
            let found = check(&EnvVars::from_pairs(env), Context::Runtime);
            let rules: Vec<&str> = found.iter().map(|v| v.rule.name()).collect();
            let expected: Vec<&str> = case["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            assert_eq!(rules, expected, "{name}");
            let verdict = if found.iter().any(|v| v.severity == Severity::Error) { "fail" } else { "pass" };
            assert_eq!(verdict, case["verdict"], "{name}");
        }
    }

    #[test]
    fn percent_encoded_user_names_are_compared_decoded() {
        let pairs = [
            ("DATABASE_URL", "postgresql://app%5Fuser:p@localhost/db"),
            ("DATABASE_SERVICE_URL", SERVICE),
            ("DATABASE_MIGRATOR_URL", "postgres://app_user:q@localhost/db"),
        ];
        assert_eq!(rules(&pairs, Context::EnvFile), [(Rule::MigratorSeparate, Severity::Error)]);
        let pairs = [("DATABASE_URL", "postgresql://postgre%73:p@localhost/db"), ("DATABASE_SERVICE_URL", SERVICE)];
        assert_eq!(rules(&pairs, Context::Runtime), [(Rule::NoAdminUser, Severity::Error)]);
    }

    #[test]
    fn messages_name_the_fix_and_never_a_password() {
        let vars = EnvVars::from_pairs([
            ("DATABASE_URL", "postgresql://app_user:s3cret@db.example.com/db"),
            ("DATABASE_SERVICE_URL", "postgresql://app_user:s3cret@localhost/db"),
        ]);
        let found = check(&vars, Context::Runtime);
        let rules: Vec<Rule> = found.iter().map(|v| v.rule).collect();
        assert_eq!(rules, [Rule::DistinctUsers, Rule::TlsOffHost]);
        let error = format!("{:#}", startup_check(&vars).unwrap_err());
        // The text of each rule names its fix (the DSN option, the other role).
        assert!(error.contains("[tls-off-host]: DATABASE_URL") && error.contains("sslmode=verify-full"), "{error}");
        assert!(error.contains("[distinct-users]") && error.contains("must differ"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}
