//! A managed service's admin (RDS-like): CREATEDB CREATEROLE, not a
//! superuser (on PostgreSQL 16+ also BYPASSRLS). Provisioning says before
//! changing anything what it cannot do, runs grants as the owner, and
//! succeeds on 16+ where the admin has what it needs.

use dbenv::{EnvVars, Settings};
use roles::preflight::{AdminCannot, Lack};

use crate::common::{Fixture, DB};

fn version(fx: &Fixture) -> dbenv::ServerVersion {
    dbenv::ServerVersion::read(&mut fx.admin("postgres")).unwrap()
}

/// The cluster gets an admin like RDS's master user.
fn rds_admin(fx: &Fixture) {
    let bypass = if version(fx).has_membership_options() { "BYPASSRLS" } else { "" };
    fx.admin("postgres")
        .batch_execute(&format!("CREATE ROLE rds_admin LOGIN CREATEDB CREATEROLE {bypass} PASSWORD 'rds_password'"))
        .unwrap();
}

fn as_rds(fx: &Fixture) -> Settings {
    let mut vars = fx.vars();
    vars.retain(|(k, _)| !k.starts_with("POSTGRES_ROOT"));
    vars.push(("POSTGRES_ROOT_USER".into(), "rds_admin".into()));
    vars.push(("POSTGRES_ROOT_PASSWORD".into(), "rds_password".into()));
    Settings::from_env(&EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))).unwrap()
}

fn provision_as_rds(fx: &Fixture) -> anyhow::Result<roles::Outcome> {
    roles::provision(&as_rds(fx), &roles::Options::default(), &mut roles::Quiet)
}

/// What `rds_admin` lacks, from the error that stopped the run.
fn lacks(error: &anyhow::Error) -> Vec<Lack> {
    let cannot = error.downcast_ref::<AdminCannot>().unwrap_or_else(|| panic!("{error:#}"));
    assert_eq!(cannot.admin, "rds_admin");
    cannot.lacks.clone()
}

/// What a superuser still finds to change: nothing, when the run converged.
fn superuser_plan(fx: &Fixture) -> Vec<String> {
    let options = roles::Options { dry_run: true, ..Default::default() };
    let outcome = roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    outcome.plan.steps.iter().map(|s| s.summary.clone()).collect()
}

fn roles_exist(fx: &Fixture) -> i64 {
    fx.admin("postgres")
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname IN ('app_migrator', 'app_user', 'app_service')", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_non_superuser_admin_provisions_from_nothing_on_16_or_says_why_not() {
    let fx = Fixture::new();
    rds_admin(&fx);
    let result = provision_as_rds(&fx);
    if !version(&fx).has_membership_options() {
        let lacks = lacks(&result.unwrap_err());
        let major = version(&fx).major();
        assert!(lacks.contains(&Lack::BypassRlsNeedsSuperuser { role: "app_migrator".into(), major }), "{lacks:?}");
        assert_eq!(roles_exist(&fx), 0);
        return;
    }
    let outcome = result.unwrap();
    assert!(outcome.applied);
    assert!(superuser_plan(&fx).is_empty(), "{:?}", superuser_plan(&fx));
    // The runtime role works and cannot create; a second run as the admin changes nothing.
    let mut app = fx.runtime();
    let error = app.batch_execute("CREATE TABLE t (id int)").unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42501");
    let again = provision_as_rds(&fx).unwrap();
    assert!(again.plan.is_empty(), "{:#?}", again.plan.steps);
}

#[test]
fn a_legacy_role_the_admin_did_not_create_is_named_before_any_change() {
    let fx = Fixture::new();
    rds_admin(&fx);
    // The legacy shape, made by the real superuser: app_user owns the database
    // (and its password is about to change).
    let mut root = fx.admin("postgres");
    root.batch_execute("CREATE ROLE app_user LOGIN PASSWORD 'old_password'").unwrap();
    root.batch_execute(&format!("CREATE DATABASE {DB} OWNER app_user")).unwrap();
    fx.admin(DB).batch_execute("ALTER SCHEMA public OWNER TO app_user").unwrap();
    fx.connect_as("app_user", "old_password")
        .batch_execute(
            "CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('kept')",
        )
        .unwrap();

    let lacks = lacks(&provision_as_rds(&fx).unwrap_err());
    if version(&fx).has_membership_options() {
        // Since 16 CREATEROLE reaches only the roles the admin holds ADMIN on.
        assert!(lacks.contains(&Lack::AdminOption { role: "app_user".into() }), "{lacks:?}");
        assert!(lacks.contains(&Lack::TakeObjectsFrom { from: "app_user".into() }), "{lacks:?}");
    } else {
        // Before 16 CREATEROLE could grant itself app_user, but never BYPASSRLS.
        let major = version(&fx).major();
        assert!(lacks.contains(&Lack::BypassRlsNeedsSuperuser { role: "app_migrator".into(), major }), "{lacks:?}");
    }
    let owner: String = fx
        .admin(DB)
        .query_one("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'notes'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_user", "nothing changed");
    if !version(&fx).has_membership_options() {
        return;
    }

    // The provider's console gives the admin what it needs; then it succeeds.
    root.batch_execute("GRANT app_user TO rds_admin WITH ADMIN TRUE, INHERIT TRUE, SET TRUE").unwrap();
    provision_as_rds(&fx).unwrap();
    assert!(superuser_plan(&fx).is_empty(), "{:?}", superuser_plan(&fx));
    let mut app = fx.runtime();
    let kept: i64 = app.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(kept, 1);
    app.batch_execute("INSERT INTO notes (body) VALUES ('new')").unwrap();
    assert_eq!(app.batch_execute("DROP TABLE notes").unwrap_err().code().unwrap().code(), "42501");
}
