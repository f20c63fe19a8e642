//! The `logins` check: the alternate logins `db-rotate` prepares hold as
//! they are made, are listed, and any login or gate that reaches past its
//! role (another gate, a grant, an object, a power, a stranger in the
//! gate, a name taken by another role) fails the check.

use audit::checks::CheckId;
use dbenv::{Secret, ServerVersion};
use roles::logins::{LoginNames, RoleLogins};
use roles::Statement;

use crate::common::{assert_caught, catalog_failures, Fixture, DB};

/// Prepares the alternate login of each of the three roles, as the admin.
fn rotated() -> Fixture {
    let fx = Fixture::migrated();
    let mut admin = fx.admin();
    let version = ServerVersion::read(&mut admin).unwrap();
    for role in ["app_migrator", "app_user", "app_service"] {
        let names = LoginNames::of(role).unwrap();
        let logins = RoleLogins::read(&mut admin, &names, DB).unwrap();
        let verifier = roles::scram::new_verifier(&Secret::new("alt-secret"));
        for change in logins.prepare(&names.alt, verifier, DB, version) {
            admin.batch_execute(&Statement::new(change).text()).unwrap();
        }
    }
    fx
}

#[test]
fn prepared_logins_hold_and_are_listed() {
    let fx = rotated();
    let report = fx.check();
    assert!(report.holds(), "{}", report.to_text());
    assert_eq!(catalog_failures(&report, CheckId::Logins), Vec::<String>::new());
    let logins = report.checks.iter().find(|c| c.id == CheckId::Logins).unwrap();
    assert_eq!(logins.checked, 9, "three roles, each with its gate and its alternate login");
    let overlap = "logins of `app_user`: `app_user` (LOGIN, used here), `app_user_alt` (LOGIN); in a rotation's \
                   overlap: both can log in until `cargo xtask db-rotate app_user --finish`";
    assert!(report.notes.iter().any(|n| n == overlap), "{:?}", report.notes);
    assert!(
        report.notes.iter().any(|n| n.starts_with("`app_service_alt` can log in but this env does not name it")),
        "the login nothing was tried as is named: {:?}",
        report.notes
    );
    let json = report.to_json();
    let runtime = json["logins"].as_array().unwrap().iter().find(|r| r["role"] == "app_user").unwrap();
    assert_eq!(runtime["rotation"], "overlap");
    let used: Vec<(&str, bool, bool)> = runtime["logins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["can_log_in"].as_bool().unwrap(), l["used"].as_bool().unwrap()))
        .collect();
    assert_eq!(used, [("app_user", true, true), ("app_user_alt", true, false)]);
}

/// The env after a rotation of the runtime roles: their DSNs log in as the
/// alternate logins, and the roles themselves can no longer log in.
fn switched() -> Fixture {
    let mut fx = rotated();
    let mut admin = fx.admin();
    // The migrator's rotation was never started: its alternate login is
    // prepared and retired again.
    for role in ["app_user", "app_service", "app_migrator_alt"] {
        for change in RoleLogins::retire(role) {
            admin.batch_execute(&Statement::new(change).text()).unwrap();
        }
    }
    for (var, login) in [("DATABASE_URL", "app_user_alt"), ("DATABASE_SERVICE_URL", "app_service_alt")] {
        fx.extra.push((var.to_string(), fx.kit.dsn(login, "alt-secret", DB).expose_url()));
    }
    fx
}

#[test]
fn the_probes_run_as_the_login_the_env_names() {
    let report = switched().check();
    assert!(report.holds(), "{}", report.to_text());
    let sessions: Vec<(&str, &str)> =
        report.probes.iter().filter(|p| p.id == "session").map(|p| (p.role.as_str(), p.observed.as_str())).collect();
    assert_eq!(sessions, [("app_user", "app_user_alt as app_user"), ("app_service", "app_service_alt as app_service")]);
    let settled = "logins of `app_user`: `app_user` (NOLOGIN), `app_user_alt` (LOGIN, used here); settled on \
                   `app_user_alt`";
    assert!(report.notes.iter().any(|n| n == settled), "{:?}", report.notes);
    assert!(!report.notes.iter().any(|n| n.contains("this env does not name it")), "{:?}", report.notes);
    // The login as itself (SET ROLE NONE) is the alternate login: still nothing.
    let as_login: Vec<&str> =
        report.probes.iter().filter(|p| p.id.starts_with("as-login")).map(|p| p.observed.as_str()).collect();
    assert_eq!(as_login, ["denied (42501)"; 4]);
}

#[test]
fn a_login_that_starts_as_itself_fails_the_session_probe() {
    let fx = switched();
    // The login no longer starts as its role: every probe after it would
    // prove what the bare login can do, not what the role can.
    fx.admin().batch_execute("ALTER ROLE app_user_alt RESET role").unwrap();
    let report = fx.check();
    assert!(!report.holds());
    assert_eq!(
        crate::common::probe_failures(&report, "session"),
        ["app_user app_user_alt as app_user_alt, NOT app_user_alt as app_user"]
    );
}

/// A check whose env has no migrator DSN (the app's own runtime file).
fn check_without_migrator(fx: &Fixture) -> audit::Report {
    let mut env = fx.env().checking().unwrap();
    env.migrator = None;
    let exemptions = audit::Exemptions::load_default(&crate::common::repo_root()).unwrap();
    audit::check(&audit::CheckConfig::new(env, None, exemptions).unwrap()).unwrap()
}

#[test]
fn an_env_without_the_migrator_holds_once_the_migrator_settled_on_its_login() {
    let fx = rotated();
    let mut admin = fx.admin();
    for change in RoleLogins::retire("app_migrator") {
        admin.batch_execute(&Statement::new(change).text()).unwrap();
    }
    let report = check_without_migrator(&fx);
    assert!(report.holds(), "{}", report.to_text());
    assert!(
        report.notes.iter().any(|n| n
            .starts_with("logins of `app_migrator`: `app_migrator` (NOLOGIN), `app_migrator_alt` (LOGIN); settled")),
        "{:?}",
        report.notes
    );
}

#[test]
fn a_role_neither_of_whose_logins_can_log_in_fails_the_check() {
    let fx = rotated();
    let mut admin = fx.admin();
    for change in RoleLogins::retire("app_migrator").into_iter().chain(RoleLogins::retire("app_migrator_alt")) {
        admin.batch_execute(&Statement::new(change).text()).unwrap();
    }
    // Without the migrator's DSN the catalogs are read as the runtime role.
    let report = check_without_migrator(&fx);
    assert_caught(&report, CheckId::Logins, "neither `app_migrator` nor `app_migrator_alt` can log in");
    assert!(
        report.notes.iter().any(|n| n
            .starts_with("logins of `app_migrator`: `app_migrator` (NOLOGIN), `app_migrator_alt` (NOLOGIN); neither")),
        "{:?}",
        report.notes
    );
}

#[test]
fn a_fresh_database_has_no_logins_to_list() {
    let report = Fixture::migrated().check();
    assert!(report.holds(), "{}", report.to_text());
    assert!(!report.notes.iter().any(|n| n.starts_with("logins of")), "{:?}", report.notes);
}

const INHERITING_GATE: &str = "ALTER ROLE app_user_logins INHERIT";

#[test]
fn a_login_that_reaches_past_its_role_fails_the_check() {
    let db_grant = format!("GRANT CREATE ON DATABASE {DB} TO app_user_logins");
    let db_setting = format!("ALTER ROLE app_user_alt IN DATABASE {DB} SET search_path = public, pg_catalog");
    let cases: [(&str, &str, &str); 10] = [
        // The gate may also create in the database.
        (&db_grant, "app_user", "on databases"),
        // The login starts its sessions elsewhere in the app database.
        (&db_setting, "app_user", "does not start its sessions as its role"),
        // The gate may grant the role to anyone.
        ("GRANT app_service TO app_service_logins WITH ADMIN OPTION", "app_service", "WITH ADMIN OPTION"),
        // Someone becomes the migrator without a gate.
        (
            "CREATE ROLE insider LOGIN; GRANT app_migrator TO insider",
            "app_migrator",
            "`insider` is a member of `app_migrator`",
        ),
        // The runtime login may also enter the migrator's gate.
        ("GRANT app_migrator_logins TO app_user_alt", "app_user", "is a member of `app_migrator_logins`"),
        // A stranger enters the service role's gate.
        ("CREATE ROLE stranger LOGIN; GRANT app_service_logins TO stranger", "app_service", "`stranger` is a member"),
        // A login owns an object.
        ("ALTER TABLE public.users OWNER TO app_user_alt", "app_user", "pg_class:o"),
        // A login holds a grant of its own.
        ("GRANT SELECT ON public.users TO app_service_alt", "app_service", "pg_class:a"),
        // A login is given a power its role's sessions would not need.
        ("ALTER ROLE app_user_alt BYPASSRLS", "app_user", "has BYPASSRLS"),
        // The gate inherits its role: the login would hold it without SET ROLE.
        (INHERITING_GATE, "app_user", "without SET ROLE"),
    ];
    for (sql, role, needle) in cases {
        let fx = rotated();
        let mut admin = fx.admin();
        let sql = match sql {
            // Since 16 the membership, not the gate's attribute, decides.
            INHERITING_GATE if ServerVersion::read(&mut admin).unwrap().has_membership_options() => {
                "GRANT app_user TO app_user_logins WITH INHERIT TRUE"
            }
            sql => sql,
        };
        admin.batch_execute(sql).unwrap();
        let report = fx.check();
        let found = catalog_failures(&report, CheckId::Logins);
        assert!(!report.holds() && found.iter().any(|f| f.starts_with(role) && f.contains(needle)), "{sql}: {found:?}");
    }
}

#[test]
fn a_name_taken_by_another_role_fails_the_check() {
    let fx = Fixture::migrated();
    fx.admin().batch_execute("CREATE ROLE app_user_alt LOGIN; GRANT app_user TO app_user_alt").unwrap();
    assert_caught(&fx.check(), CheckId::Logins, "db-rotate did not make it");
}
