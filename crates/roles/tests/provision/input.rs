//! Bad input: each a clear error that names the fix, and nothing changed.

use dbenv::{EnvVars, Settings};

use crate::common::Fixture;

fn settings_with(fx: &Fixture, changes: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let mut vars = fx.vars();
    for (key, value) in changes {
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value.to_string()));
    }
    Settings::from_env(&EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

fn provision_error(fx: &Fixture, changes: &[(&str, &str)]) -> String {
    let result = settings_with(fx, changes)
        .and_then(|settings| roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).map(|_| ()));
    format!("{:#}", result.unwrap_err())
}

fn nothing_changed(fx: &Fixture) {
    let roles: i64 = fx
        .admin("postgres")
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname IN ('app_user', 'app_service', 'app_migrator')", &[])
        .unwrap()
        .get(0);
    assert_eq!(roles, 0);
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let fx = Fixture::new();
    let free_port = pgcluster::free_port().unwrap().to_string();
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![("APP_DB_USER", "app-user")], vec!["APP_DB_USER", "^[a-zA-Z0-9_]+$"]),
        (vec![("APP_DB_NAME", "pg_app")], vec!["APP_DB_NAME", "reserves"]),
        (vec![("APP_DB_MIGRATOR_PASSWORD", "")], vec!["APP_DB_MIGRATOR_PASSWORD is not set", "cargo xtask env"]),
        (
            vec![("DATABASE_URL", "postgresql://app_user:password@127.0.0.1:1/cogni_template_test")],
            vec!["nothing was changed: DATABASE_URL names 127.0.0.1:1, another address than DB_HOST/DB_PORT"],
        ),
        (vec![("POSTGRES_ROOT_PASSWORD", "wrong")], vec!["the password for `postgres` is wrong"]),
        (
            vec![("DB_PORT", free_port.as_str()), ("PG_TIMEOUT", "1")],
            vec!["did not accept connections within 1 s", "cargo xtask db-up"],
        ),
    ];
    for (changes, expected) in cases {
        let message = provision_error(&fx, &changes);
        for part in expected {
            assert!(message.contains(part), "{changes:?}: {message}");
        }
        for secret in ["migrator_password", "service_password", fx.kit.server.password()] {
            assert!(!message.contains(secret), "{changes:?} leaks a password: {message}");
        }
    }
    nothing_changed(&fx);
}

#[test]
fn an_admin_that_is_not_superuser_is_told_what_it_lacks_before_any_change() {
    let fx = Fixture::new();
    fx.admin("postgres").batch_execute("CREATE ROLE weak_admin LOGIN CREATEDB PASSWORD 'weak'").unwrap();
    let settings = settings_with(&fx, &[("POSTGRES_ROOT_USER", "weak_admin"), ("POSTGRES_ROOT_PASSWORD", "weak")]);
    let error = roles::provision(&settings.unwrap(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let cannot = error.downcast_ref::<roles::preflight::AdminCannot>().unwrap_or_else(|| panic!("{error:#}"));
    assert_eq!(cannot.admin, "weak_admin");
    assert!(cannot.lacks.contains(&roles::preflight::Lack::CreateRole), "{cannot:?}");
    let message = format!("{error:#}");
    assert!(message.starts_with("nothing was changed: the admin `weak_admin` cannot do everything"), "{message}");
    nothing_changed(&fx);
}
