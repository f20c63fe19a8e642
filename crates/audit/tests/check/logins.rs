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
    assert!(
        report.notes.contains(&"logins of `app_user`: `app_user` (LOGIN), `app_user_alt` (LOGIN)".to_string()),
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
