//! The alternate logins `db-rotate` prepares (roles::logins): each acts as
//! its role from the first statement, holds nothing of its own, can do
//! nothing as itself, and leaves provisioning with nothing to do. Run on
//! every major of the matrix (13–15: the gate's NOINHERIT; 16+: the
//! membership's INHERIT FALSE).

use dbenv::{Secret, ServerVersion};
use postgres::Client;
use roles::logins::{LoginNames, RoleLogins, Shape};
use roles::Statement;

use crate::common::{sqlstate, Fixture, DB};

const ROLES: [&str; 3] = ["app_migrator", "app_user", "app_service"];

fn logins_of(fx: &Fixture, role: &str) -> RoleLogins {
    RoleLogins::read(&mut fx.admin(DB), &LoginNames::of(role).unwrap(), DB).unwrap()
}

/// Applies `changes` as the admin, in one transaction.
fn apply(fx: &Fixture, changes: Vec<roles::Change>) {
    let mut admin = fx.admin(DB);
    let mut tx = admin.transaction().unwrap();
    for change in changes {
        tx.batch_execute(&Statement::new(change).text()).unwrap();
    }
    tx.commit().unwrap();
}

/// Prepares `role`'s alternate login with `password`.
fn prepare(fx: &Fixture, role: &str, standby: &str, password: &str) {
    let logins = logins_of(fx, role);
    let version = ServerVersion::read(&mut fx.admin(DB)).unwrap();
    let verifier = roles::scram::new_verifier(&Secret::new(password));
    apply(fx, logins.prepare(standby, verifier, DB, version));
}

fn provisioned() -> Fixture {
    let fx = Fixture::new();
    roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap();
    fx
}

fn who(client: &mut Client) -> (String, String) {
    let row = client.query_one("SELECT current_user::text, session_user::text", &[]).unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn an_alternate_login_acts_as_its_role_and_as_itself_can_do_nothing() {
    let fx = provisioned();
    for role in ROLES {
        let before = logins_of(&fx, role);
        assert_eq!((before.gate.as_ref(), before.alt.as_ref()), (None, None), "{role}");
        prepare(&fx, role, &format!("{role}_alt"), "alt-secret");
        let after = logins_of(&fx, role);
        assert_eq!(after.problems("postgres"), [], "{role}: {after:#?}");
        let (gate, alt) = (after.gate.unwrap(), after.alt.unwrap());
        assert_eq!(gate.dependencies, ["pg_database:a"], "the gate holds CONNECT and nothing else");
        assert!(alt.dependencies.is_empty() && alt.login && alt.can_connect && !alt.inherits_role, "{alt:#?}");
    }

    // The migrator's login: what it creates is the migrator's, with the
    // runtime grants of the migrator's default privileges.
    let mut migrator = fx.connect_as("app_migrator_alt", "alt-secret");
    assert_eq!(who(&mut migrator), ("app_migrator".into(), "app_migrator_alt".into()));
    migrator
        .batch_execute(
            "CREATE TABLE notes (id int, tenant text); ALTER TABLE notes ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY by_tenant ON notes USING (tenant = current_setting('app.tenant', true)); \
             INSERT INTO notes VALUES (1, 'a'), (2, 'b')",
        )
        .unwrap();
    let row = fx
        .admin(DB)
        .query_one(
            "SELECT relowner::regrole::text, has_table_privilege('app_user', oid, 'SELECT, INSERT, UPDATE, DELETE') \
             FROM pg_class WHERE relname = 'notes'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("app_migrator".into(), true));

    // The runtime login is the runtime role: RLS applies, DDL is denied.
    let mut runtime = fx.connect_as("app_user_alt", "alt-secret");
    assert_eq!(who(&mut runtime), ("app_user".into(), "app_user_alt".into()));
    let seen: i64 = runtime.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(seen, 0, "no tenant set: RLS hides every row");
    assert_eq!(sqlstate(&mut runtime, "CREATE TABLE t (id int)").as_deref(), Some("42501"));
    // As itself, the login holds nothing: no data, no DDL, no temp tables,
    // no other role. RESET ROLE returns to the role.
    for escape in ["SET ROLE NONE", "SET ROLE app_user_logins"] {
        runtime.batch_execute(escape).unwrap();
        for sql in ["SELECT * FROM notes", "CREATE TABLE t (id int)", "CREATE TEMP TABLE t (id int)"] {
            assert_eq!(sqlstate(&mut runtime, sql).as_deref(), Some("42501"), "{escape}; {sql}");
        }
        for other in ["app_migrator", "app_service", "app_migrator_logins"] {
            assert_eq!(sqlstate(&mut runtime, &format!("SET ROLE {other}")).as_deref(), Some("42501"), "{other}");
        }
        runtime.batch_execute("RESET ROLE").unwrap();
        assert_eq!(who(&mut runtime).0, "app_user");
    }
    // The migrator's login as itself cannot create in the migrator's schema.
    migrator.batch_execute("SET ROLE NONE").unwrap();
    assert_eq!(sqlstate(&mut migrator, "CREATE TABLE mine (id int)").as_deref(), Some("42501"));

    // The service login bypasses RLS, as its role does.
    let mut service = fx.connect_as("app_service_alt", "alt-secret");
    assert_eq!(who(&mut service), ("app_service".into(), "app_service_alt".into()));
    let seen: i64 = service.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(seen, 2);

    // Provisioning leaves the logins alone: nothing to do.
    let options = roles::Options { dry_run: true, ..Default::default() };
    let outcome = roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    assert!(outcome.plan.steps.is_empty(), "{:#?}", outcome.plan.steps);
}

#[test]
fn logins_take_turns_and_a_retired_login_is_refused() {
    let fx = provisioned();
    prepare(&fx, "app_user", "app_user_alt", "second");
    apply(&fx, RoleLogins::retire("app_user"));
    let refused = postgres::Config::new()
        .host("localhost")
        .port(fx.kit.port())
        .user("app_user")
        .password(&fx.passwords[1])
        .dbname(DB)
        .connect(postgres::NoTls)
        .err()
        .expect("a retired login is refused");
    // No password left to match: refused at authentication (before LOGIN is looked at).
    assert_eq!(refused.code().map(|c| c.code()), Some("28P01"), "{refused}");
    assert_eq!(who(&mut fx.connect_as("app_user_alt", "second")).0, "app_user");

    // The next rotation makes the role's own login the standby again.
    prepare(&fx, "app_user", "app_user", "third");
    apply(&fx, RoleLogins::retire("app_user_alt"));
    assert_eq!(who(&mut fx.connect_as("app_user", "third")), ("app_user".into(), "app_user".into()));
    let logins = logins_of(&fx, "app_user");
    assert!(!logins.alt.as_ref().unwrap().login);
    assert_eq!(logins.problems("postgres"), []);
}

#[test]
fn a_wrong_shape_is_named() {
    let fx = provisioned();
    let mut admin = fx.admin(DB);
    // Taken by an unrelated role.
    admin.batch_execute("CREATE ROLE app_user_alt LOGIN").unwrap();
    let logins = logins_of(&fx, "app_user");
    assert_eq!(logins.problems("postgres"), [Shape::NotOurs { name: "app_user_alt".into() }]);
    admin.batch_execute("DROP ROLE app_user_alt").unwrap();

    // Ours, but given more than its role: a grant, another membership, a power.
    prepare(&fx, "app_user", "app_user_alt", "alt-secret");
    admin
        .batch_execute(
            "GRANT SELECT ON pg_class TO app_user_alt; GRANT app_service TO app_user_alt; \
             ALTER ROLE app_user_alt CREATEDB",
        )
        .unwrap();
    let problems = logins_of(&fx, "app_user").problems("postgres");
    let name = || "app_user_alt".to_string();
    for expected in [
        Shape::Power { name: name(), power: "CREATEDB" },
        Shape::MemberOf { name: name(), role: "app_service".into() },
        Shape::Depends { name: name(), dependency: "pg_class:a".into() },
    ] {
        assert!(problems.contains(&expected), "{expected:?} in {problems:?}");
    }
}

/// The provisioning settings with the runtime role's DSN on `login`.
fn settings_logging_in_as(fx: &Fixture, login: &str, password: &str) -> dbenv::Settings {
    let mut vars = fx.vars();
    vars.retain(|(key, _)| key != dbenv::keys::APP_DB_PASSWORD);
    vars.push((dbenv::keys::APP_DB_PASSWORD.into(), password.into()));
    vars.push((dbenv::keys::DATABASE_URL.into(), fx.dsn(login, password, DB).expose_url()));
    testkit::env_of(&vars).provisioning().unwrap()
}

fn plan(settings: &dbenv::Settings) -> Vec<String> {
    let options = roles::Options { dry_run: true, ..Default::default() };
    let outcome = roles::provision(settings, &options, &mut roles::Quiet).unwrap();
    outcome.plan.steps.iter().map(|step| step.summary.clone()).collect()
}

#[test]
fn provisioning_an_environment_on_the_alternate_login_converges_that_login_only() {
    let fx = provisioned();
    // Not made yet: refused before any change, with the fix.
    let settings = settings_logging_in_as(&fx, "app_user_alt", "alt-secret");
    let error = roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let refusals = testkit::refusals(&error);
    assert_eq!(
        refusals,
        [roles::Refusal::MissingLogin { role: "app_user".into(), login: "app_user_alt".into(), var: "DATABASE_URL" }]
    );

    prepare(&fx, "app_user", "app_user_alt", "alt-secret");
    assert_eq!(plan(&settings), Vec::<String>::new(), "the login's password is the env's: nothing to do");
    // Retired, the role's own login stays retired.
    apply(&fx, RoleLogins::retire("app_user"));
    assert_eq!(plan(&settings), Vec::<String>::new());
    // A new password in the env goes to the login the env uses, never to the role's own.
    let changed = settings_logging_in_as(&fx, "app_user_alt", "newer-secret");
    assert_eq!(plan(&changed), ["`app_user_alt`: password changed"]);
    roles::provision(&changed, &roles::Options::default(), &mut roles::Quiet).unwrap();
    assert_eq!(who(&mut fx.connect_as("app_user_alt", "newer-secret")), ("app_user".into(), "app_user_alt".into()));
    let logins = logins_of(&fx, "app_user");
    assert!(!logins.role.unwrap().login, "the retired login was not given LOGIN back");
}

#[test]
fn provisioning_never_sets_a_password_on_an_alternate_login_it_did_not_make() {
    let fx = provisioned();
    fx.admin(DB).batch_execute("CREATE ROLE app_user_alt LOGIN; GRANT app_service TO app_user_alt").unwrap();
    let settings = settings_logging_in_as(&fx, "app_user_alt", "alt-secret");
    let error = roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let wrong = error.downcast_ref::<roles::rotate::WrongShape>().unwrap_or_else(|| panic!("{error:#}"));
    assert_eq!(wrong.problems, [Shape::NotOurs { name: "app_user_alt".into() }]);
    assert!(fx.kit.connect_with_result("app_user_alt", "alt-secret", DB).is_err(), "no password was set");
}

#[test]
fn a_login_named_as_the_role_itself_is_refused() {
    let fx = provisioned();
    prepare(&fx, "app_user", "app_user_alt", "alt-secret");
    // The env names the login as the runtime role: provisioning would make
    // it one (grants, drift revokes of its gate), so it stops first.
    let mut vars = fx.vars();
    vars.retain(|(key, _)| key != dbenv::keys::APP_DB_USER && key != dbenv::keys::APP_DB_PASSWORD);
    vars.push((dbenv::keys::APP_DB_USER.into(), "app_user_alt".into()));
    vars.push((dbenv::keys::APP_DB_PASSWORD.into(), "alt-secret".into()));
    vars.push((dbenv::keys::DATABASE_URL.into(), fx.dsn("app_user_alt", "alt-secret", DB).expose_url()));
    let settings = testkit::env_of(&vars).provisioning().unwrap();
    let error = roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    assert!(
        format!("{error:#}").contains("APP_DB_USER names `app_user_alt`, which is an alternate login db-rotate made"),
        "{error:#}"
    );
    let logins = logins_of(&fx, "app_user");
    assert_eq!(logins.problems(""), [], "nothing was changed");
}
