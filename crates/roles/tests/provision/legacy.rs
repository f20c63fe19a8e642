//! Converting a live database in the upstream (legacy) shape, where
//! `app_user` owns the database and everything its migrations created.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::{sqlstate, Fixture, Recorder, DB};
use roles::reach::PathClass;
use roles::{Phase, Refusal, Reporter, Step};

use testkit::legacy::TENANT_A;

/// The upstream-shaped database (`testkit::legacy`), with data in it.
pub fn build_legacy(fx: &Fixture) {
    testkit::legacy::build(&fx.kit, DB);
}

/// What the app does on every request, as `app_user` for tenant A.
pub fn app_works(fx: &Fixture) {
    let mut app = fx.runtime();
    let mut tx = app.transaction().unwrap();
    tx.batch_execute(&format!("SELECT set_config('app.current_user_id', '{TENANT_A}', true)")).unwrap();
    let visible: i64 = tx.query_one("SELECT count(*) FROM users", &[]).unwrap().get(0);
    assert_eq!(visible, 1, "RLS shows tenant A only");
    tx.batch_execute(&format!(
        "INSERT INTO billing_accounts (owner_user_id, slug) VALUES ('{TENANT_A}', 'more'); \
         INSERT INTO credit_ledger (billing_account_id, amount) VALUES (1, 1); \
         INSERT INTO events (at, note) VALUES ('2026-06-01', 'z'); \
         SELECT * FROM events_2026;"
    ))
    .unwrap();
    let view: bool = tx.query_one("SELECT to_regclass('user_emails') IS NOT NULL", &[]).unwrap().get(0);
    if view {
        tx.batch_execute("SELECT * FROM user_emails").unwrap();
    }
    tx.rollback().unwrap();
}

pub fn server_version(fx: &Fixture) -> dbenv::ServerVersion {
    dbenv::ServerVersion::read(&mut fx.admin("postgres")).unwrap()
}

/// On PostgreSQL 13/14 a view over an RLS table cannot keep RLS once the
/// BYPASSRLS migrator owns it: provisioning refuses, changing nothing, until
/// it is dropped.
pub fn drop_leaking_view_before_15(fx: &Fixture) {
    if server_version(fx).has_security_invoker_views() {
        return;
    }
    let error = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let refusals = testkit::refusals(&error);
    assert!(
        matches!(&refusals[..], [Refusal::OwnersRights { subject, class: PathClass::View, version_note, .. }]
            if subject == "public.user_emails" && !version_note.is_empty()),
        "{refusals:#?}"
    );
    fx.connect_as("app_user", "password").batch_execute("DROP VIEW user_emails").unwrap();
}

pub fn assert_converted(fx: &Fixture) {
    let mut admin = fx.admin(DB);
    // app_user and app_service own nothing at all, in any database.
    let owned: Vec<String> = admin
        .query(
            "SELECT coalesce(d.datname, '(shared)') || ': ' || coalesce(o.type || ' ' || o.identity, s.classid::regclass::text) \
             FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid \
             LEFT JOIN LATERAL pg_identify_object(s.classid, s.objid, 0) o ON s.dbid IN (0, \
               (SELECT oid FROM pg_database WHERE datname = current_database())) \
             WHERE s.deptype = 'o' AND s.refclassid = 'pg_authid'::regclass \
               AND s.refobjid IN ('app_user'::regrole, 'app_service'::regrole)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(owned.is_empty(), "still owned by the runtime roles: {owned:?}");
    let database_owner: String = admin
        .query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(database_owner, "app_migrator");
    let extension_owner: String = admin
        .query_one("SELECT pg_get_userbyid(extowner)::text FROM pg_extension WHERE extname = 'citext'", &[])
        .unwrap()
        .get(0);
    assert_eq!(extension_owner, "app_migrator");
    let legacy_defaults: i64 = admin
        .query_one("SELECT count(*) FROM pg_default_acl WHERE defaclrole = 'app_user'::regrole", &[])
        .unwrap()
        .get(0);
    assert_eq!(legacy_defaults, 0);

    // Data and history intact.
    let counts: Vec<i64> = admin
        .query_one(
            "SELECT ARRAY[(SELECT count(*) FROM users), (SELECT count(*) FROM billing_accounts), \
                          (SELECT count(*) FROM credit_ledger), (SELECT count(*) FROM events), \
                          (SELECT count(*) FROM drizzle.__drizzle_migrations WHERE hash IN ('aa', 'bb'))]",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(counts, [2, 2, 2, 2, 2]);

    // The app still works; DDL does not.
    app_works(fx);
    let mut app = fx.runtime();
    for sql in [
        "CREATE TABLE _test_ddl_check (id int)",
        "DROP TABLE users",
        "DROP TYPE account_kind CASCADE",
        "DROP FUNCTION current_app_user() CASCADE",
        "DROP EXTENSION citext CASCADE",
        "ALTER TABLE users DISABLE ROW LEVEL SECURITY",
        "DROP POLICY users_self ON users",
        "TRUNCATE events",
        "CREATE TEMP TABLE t (id int)",
        "SELECT * FROM drizzle.__drizzle_migrations",
    ] {
        assert_eq!(sqlstate(&mut app, sql).as_deref(), Some("42501"), "{sql}");
    }
    // Without the setting, RLS shows app_user nothing, also through the view.
    let unset: i64 = app.query_one("SELECT count(*) FROM users", &[]).unwrap().get(0);
    assert_eq!(unset, 0);
    if server_version(fx).has_security_invoker_views() {
        let through_view: i64 = app.query_one("SELECT count(*) FROM user_emails", &[]).unwrap().get(0);
        assert_eq!(through_view, 0);
    }

    // The workers' role still reads every row.
    let service: i64 = fx.service().query_one("SELECT count(*) FROM users", &[]).unwrap().get(0);
    assert_eq!(service, 2);
}

#[test]
fn a_legacy_database_is_converted_in_place() {
    let fx = Fixture::new();
    build_legacy(&fx);
    app_works(&fx);
    drop_leaking_view_before_15(&fx);
    let recorder = Recorder::default();
    let outcome = roles::provision(&fx.settings(), &roles::Options::default(), &mut recorder.clone()).unwrap();
    assert!(outcome.applied);
    let log = recorder.text();
    assert!(log.contains("owner of table `public.users`: `app_user` → `app_migrator` (grants restored)"), "{log}");
    if server_version(&fx).has_security_invoker_views() {
        let expected = "owner of view `public.user_emails`: `app_user` → `app_migrator` with security_invoker";
        assert!(log.contains(expected), "{log}");
    }
    assert!(log.contains("owner of function `public.current_app_user()`"), "{log}");
    assert!(log.contains("REASSIGN OWNED BY \"app_user\" TO \"app_migrator\""), "{log}");
    assert_converted(&fx);
    assert!(fx.provision().plan.is_empty());
}

/// Stops the run after a given number of committed ownership batches, the
/// way Ctrl-C would.
struct StopAfter {
    batches: usize,
    cancel: Arc<AtomicBool>,
}

impl Reporter for StopAfter {
    fn progress(&mut self, phase: Phase, done: usize, _total: usize) {
        if phase == Phase::Ownership && done >= self.batches {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }
    fn applied(&mut self, _step: &Step) {}
}

#[test]
fn an_interrupted_conversion_leaves_a_working_app_and_the_next_run_finishes() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    // A reader keeps `credit_ledger` locked, so the run cannot finish before
    // the interruption however the two sessions are scheduled.
    let mut reader = fx.admin(DB);
    reader.batch_execute("BEGIN; LOCK TABLE credit_ledger IN ACCESS SHARE MODE").unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    // One table per transaction, stopped after two of them.
    let options = roles::Options {
        lock_budget: 1,
        lock_timeout: std::time::Duration::from_millis(100),
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let error = roles::provision(&fx.settings(), &options, &mut StopAfter { batches: 2, cancel }).unwrap_err();
    assert!(format!("{error:#}").contains("interrupted"), "{error:#}");
    reader.batch_execute("ROLLBACK").unwrap();

    // Half-way: some tables moved, some not, and the app works.
    let moved: i64 = fx
        .admin(DB)
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relowner = 'app_migrator'::regrole AND relkind IN ('r', 'p')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(moved >= 1, "some tables changed owner before the interruption");
    let still_legacy: i64 = fx
        .admin(DB)
        .query_one("SELECT count(*) FROM pg_class WHERE relowner = 'app_user'::regrole AND relkind IN ('r', 'p')", &[])
        .unwrap()
        .get(0);
    assert!(still_legacy >= 1, "the interruption came before the end");
    app_works(&fx);

    fx.provision();
    assert_converted(&fx);
}

#[test]
fn objects_outside_the_app_schemas_stop_the_run_before_any_change() {
    let fx = Fixture::new();
    build_legacy(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute("CREATE SCHEMA reporting; CREATE TABLE reporting.daily (d date)")
        .unwrap();
    let error = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let refusals = testkit::refusals(&error);
    assert!(
        refusals.contains(&Refusal::OutsideAppSchemas {
            owner: "app_user".into(),
            kind: "table".into(),
            identity: "reporting.daily".into(),
            schema: "reporting".into(),
        }),
        "{refusals:#?}"
    );
    let migrator: i64 = fx
        .admin("postgres")
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'app_migrator'", &[])
        .unwrap()
        .get(0);
    assert_eq!(migrator, 0);
}

/// The owner of a named object, read in the app database (which also sees
/// the shared catalogs).
fn owner_of(fx: &Fixture, catalog: &str, owner_column: &str, name_column: &str, name: &str) -> String {
    fx.admin(DB)
        .query_one(
            &format!("SELECT pg_get_userbyid({owner_column})::text FROM {catalog} WHERE {name_column} = $1"),
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// REASSIGN OWNED (which moves the extension `app_user` created) would also
/// move every database and tablespace `app_user` owns in the cluster: they
/// are lent to the migrator for that statement and given back.
#[test]
fn a_database_and_a_tablespace_the_runtime_role_owns_elsewhere_keep_their_owner() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    let mut root = fx.admin("postgres");
    root.batch_execute("CREATE DATABASE side OWNER app_user").unwrap();
    root.batch_execute("SET allow_in_place_tablespaces = on").unwrap();
    root.batch_execute("CREATE TABLESPACE side_space OWNER app_user LOCATION ''").unwrap();

    let recorder = Recorder::default();
    roles::provision(&fx.settings(), &roles::Options::default(), &mut recorder.clone()).unwrap();
    let log = recorder.text();
    assert!(log.contains("REASSIGN OWNED BY \"app_user\" TO \"app_migrator\""), "{log}");
    assert!(log.contains("ALTER DATABASE \"side\" OWNER TO \"app_migrator\""), "{log}");
    assert_eq!(owner_of(&fx, "pg_extension", "extowner", "extname", "citext"), "app_migrator");
    assert_eq!(owner_of(&fx, "pg_database", "datdba", "datname", "side"), "app_user");
    assert_eq!(owner_of(&fx, "pg_tablespace", "spcowner", "spcname", "side_space"), "app_user");
    assert_eq!(owner_of(&fx, "pg_database", "datdba", "datname", DB), "app_migrator");
    assert!(fx.provision().plan.is_empty(), "a re-run converges");
}

/// Lending a database whose ACL already names the migrator would merge the
/// two owners' privileges and change that ACL for good: provisioning refuses
/// before any change.
#[test]
fn a_database_elsewhere_whose_acl_names_the_migrator_stops_the_run_before_any_change() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    let mut root = fx.admin("postgres");
    root.batch_execute("CREATE ROLE app_migrator").unwrap();
    root.batch_execute("CREATE DATABASE side OWNER app_user").unwrap();
    root.batch_execute("GRANT CONNECT ON DATABASE side TO app_migrator").unwrap();
    let acl = |fx: &Fixture| -> Vec<String> {
        fx.admin("postgres")
            .query_one("SELECT datacl::text[] FROM pg_database WHERE datname = 'side'", &[])
            .unwrap()
            .get(0)
    };
    let before = acl(&fx);

    let error = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let refusals = testkit::refusals(&error);
    assert!(
        matches!(&refusals[..], [Refusal::ReassignTouchesOther { owner, what, kind: "database", name, migrator }]
            if owner == "app_user" && what.contains(&"extension citext".to_string()) && name == "side"
                && migrator == "app_migrator"),
        "{refusals:#?}"
    );
    assert_eq!(acl(&fx), before);
    assert_eq!(owner_of(&fx, "pg_extension", "extowner", "extname", "citext"), "app_user");
    assert_eq!(owner_of(&fx, "pg_database", "datdba", "datname", DB), "app_user");
}

/// A large object the app created as `app_user` moves to the migrator, and
/// `app_user` keeps reading and writing it.
#[test]
fn a_large_object_of_the_runtime_role_moves_and_stays_usable() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    let oid: u32 =
        fx.connect_as("app_user", "password").query_one("SELECT lo_from_bytea(0, 'hello')", &[]).unwrap().get(0);

    let recorder = Recorder::default();
    roles::provision(&fx.settings(), &roles::Options::default(), &mut recorder.clone()).unwrap();
    let log = recorder.text();
    assert!(log.contains(&format!("GRANT SELECT, UPDATE ON LARGE OBJECT {oid} TO \"app_user\"")), "{log}");
    assert_converted(&fx);
    let owner: String = fx
        .admin(DB)
        .query_one("SELECT pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata WHERE oid = $1", &[&oid])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_migrator");
    let mut app = fx.runtime();
    app.execute("SELECT lo_put($1, 0, 'J')", &[&oid]).unwrap();
    let content: Vec<u8> = app.query_one("SELECT lo_get($1)", &[&oid]).unwrap().get(0);
    assert_eq!(content, b"Jello");
    let mut service = fx.service();
    assert_eq!(sqlstate(&mut service, &format!("SELECT lo_get({oid})")).as_deref(), Some("42501"));
    assert!(fx.provision().plan.is_empty(), "a re-run converges");
}
