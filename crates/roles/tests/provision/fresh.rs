//! A fresh cluster: the role table exactly, a silent second run, dry runs.

use roles::Refusal;
use std::collections::BTreeSet;

use crate::common::{sqlstate, Fixture, DB};

fn acl(client: &mut postgres::Client, sql: &str) -> BTreeSet<String> {
    let items: Vec<String> = client.query_one(sql, &[]).unwrap().get(0);
    items.into_iter().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_fresh_provision_gives_exactly_the_role_table() {
    let fx = Fixture::new();
    let outcome = fx.provision();
    assert!(outcome.applied);
    let mut admin = fx.admin(DB);

    // Attributes: LOGIN; BYPASSRLS for the migrator and the service role only.
    let rows = admin
        .query(
            "SELECT rolname::text, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolcanlogin, rolbypassrls \
             FROM pg_roles WHERE rolname IN ('app_migrator', 'app_user', 'app_service') ORDER BY rolname",
            &[],
        )
        .unwrap();
    let attributes: Vec<(String, bool, bool, bool, bool, bool, bool)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect();
    assert_eq!(
        attributes,
        [
            ("app_migrator".into(), false, false, false, false, true, true),
            ("app_service".into(), false, false, false, false, true, true),
            ("app_user".into(), false, false, false, false, true, false),
        ]
    );
    let memberships: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
             WHERE r.rolname IN ('app_migrator', 'app_user', 'app_service')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(memberships, 0);

    // Owners: the database, the app schema and the bookkeeping schema.
    let owners: Vec<String> = admin
        .query_one(
            "SELECT ARRAY[(SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()), \
                          (SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'), \
                          (SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'drizzle')]",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owners, ["app_migrator", "app_migrator", "app_migrator"]);

    // ACLs: CONNECT for the roles, nothing for PUBLIC; USAGE on the app schema.
    assert_eq!(
        acl(&mut admin, "SELECT coalesce(datacl, acldefault('d', datdba))::text[] FROM pg_database WHERE datname = current_database()"),
        set(&["app_migrator=CTc/app_migrator", "app_user=c/app_migrator", "app_service=c/app_migrator"])
    );
    assert_eq!(
        acl(&mut admin, "SELECT nspacl::text[] FROM pg_namespace WHERE nspname = 'public'"),
        set(&[
            "app_migrator=UC/app_migrator",
            "=U/app_migrator",
            "app_user=U/app_migrator",
            "app_service=U/app_migrator"
        ])
    );
    assert_eq!(
        acl(
            &mut admin,
            "SELECT coalesce(nspacl, acldefault('n', nspowner))::text[] FROM pg_namespace WHERE nspname = 'drizzle'"
        ),
        set(&["app_migrator=UC/app_migrator"])
    );

    // Default privileges for what the migrator creates, per schema.
    let defaults: Vec<(String, String, String)> = admin
        .query(
            "SELECT pg_get_userbyid(defaclrole)::text, defaclobjtype::text, \
                    array_to_string(ARRAY(SELECT x FROM unnest(defaclacl::text[]) x ORDER BY x), ' ') \
             FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace WHERE n.nspname = 'public' \
             ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        defaults,
        [
            ("app_migrator".into(), "S".into(), "app_service=rU/app_migrator app_user=rU/app_migrator".into()),
            ("app_migrator".into(), "r".into(), "app_service=arwd/app_migrator app_user=arwd/app_migrator".into()),
        ]
    );
    assert_eq!(admin.query("SELECT 1 FROM pg_default_acl WHERE defaclnamespace = 0", &[]).unwrap().len(), 0);

    // What the roles can do: the migrator creates; the defaults give the runtime roles DML.
    fx.migrator()
        .batch_execute("CREATE TABLE notes (id serial PRIMARY KEY, body text); CREATE TABLE drizzle.t (id int)")
        .unwrap();
    for mut client in [fx.runtime(), fx.service()] {
        client
            .batch_execute("INSERT INTO notes (body) VALUES ('x'); UPDATE notes SET body = 'y'; DELETE FROM notes")
            .unwrap();
        assert_eq!(sqlstate(&mut client, "TRUNCATE notes").as_deref(), Some("42501"));
        assert_eq!(sqlstate(&mut client, "CREATE TABLE t (id int)").as_deref(), Some("42501"));
        assert_eq!(sqlstate(&mut client, "CREATE TEMP TABLE t (id int)").as_deref(), Some("42501"));
        assert_eq!(sqlstate(&mut client, "CREATE SCHEMA s").as_deref(), Some("42501"));
        assert_eq!(sqlstate(&mut client, "SELECT * FROM drizzle.t").as_deref(), Some("42501"));
        assert_eq!(sqlstate(&mut client, "ALTER TABLE notes DISABLE ROW LEVEL SECURITY").as_deref(), Some("42501"));
        assert_eq!(sqlstate(&mut client, "SET ROLE app_migrator").as_deref(), Some("42501"));
    }

    // The task's own check, message included.
    let error = fx.runtime().batch_execute("CREATE TABLE _test_ddl_check (id int);").unwrap_err();
    assert_eq!(error.as_db_error().unwrap().message(), "permission denied for schema public");
}

/// The row versions of every catalog row provisioning could touch.
fn catalog_fingerprint(fx: &Fixture) -> Vec<String> {
    let shared = "SELECT 'authid ' || oid || ' ' || xmin || ctid FROM pg_authid \
                  UNION ALL SELECT 'database ' || oid || ' ' || xmin || ctid FROM pg_database \
                  UNION ALL SELECT 'member ' || roleid || '/' || member || ' ' || xmin || ctid FROM pg_auth_members";
    let local = "SELECT 'namespace ' || oid || ' ' || xmin || ctid FROM pg_namespace \
                 UNION ALL SELECT 'class ' || oid || ' ' || xmin || ctid FROM pg_class \
                 UNION ALL SELECT 'attribute ' || attrelid || '.' || attnum || ' ' || xmin || ctid FROM pg_attribute \
                 UNION ALL SELECT 'defacl ' || oid || ' ' || xmin || ctid FROM pg_default_acl \
                 UNION ALL SELECT 'proc ' || oid || ' ' || xmin || ctid FROM pg_proc \
                 UNION ALL SELECT 'type ' || oid || ' ' || xmin || ctid FROM pg_type";
    let mut rows: Vec<String> = fx.admin("postgres").query(shared, &[]).unwrap().iter().map(|r| r.get(0)).collect();
    rows.extend(fx.admin(DB).query(local, &[]).unwrap().iter().map(|r| r.get::<_, String>(0)));
    rows.sort();
    rows
}

#[test]
fn a_second_run_writes_nothing_at_all() {
    let fx = Fixture::new();
    fx.provision();
    // Something for the grants and owners to be checked against.
    fx.migrator().batch_execute("CREATE TABLE a (id serial PRIMARY KEY); CREATE VIEW v AS SELECT * FROM a").unwrap();
    let before = catalog_fingerprint(&fx);
    let xid = fx.next_xid();

    let outcome = fx.provision();
    assert!(outcome.plan.is_empty(), "{:#?}", outcome.plan.steps);
    assert!(!outcome.applied);
    assert_eq!(fx.next_xid(), xid, "a converged run must not be assigned a transaction id");
    assert_eq!(catalog_fingerprint(&fx), before);
}

#[test]
fn a_dry_run_plans_everything_and_writes_nothing() {
    let fx = Fixture::new();
    let xid = fx.next_xid();
    let options = roles::Options { dry_run: true, ..Default::default() };
    let outcome = roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    assert!(!outcome.applied);
    let text: Vec<String> =
        outcome.plan.steps.iter().flat_map(|s| s.statements.iter().map(|q| q.to_string())).collect();
    let text = text.join("\n");
    assert!(text.contains("CREATE ROLE \"app_migrator\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS PASSWORD '***'"), "{text}");
    assert!(text.contains("CREATE DATABASE \"cogni_template_test\" OWNER \"app_migrator\""), "{text}");
    assert!(text.contains("REVOKE CONNECT, TEMPORARY ON DATABASE \"cogni_template_test\" FROM PUBLIC"), "{text}");
    assert!(text.contains("ALTER SCHEMA \"public\" OWNER TO \"app_migrator\""), "{text}");
    assert!(text.contains("ALTER DEFAULT PRIVILEGES FOR ROLE \"app_migrator\" IN SCHEMA \"public\" GRANT"), "{text}");
    assert!(!text.contains("SCRAM-SHA-256"), "verifiers are redacted: {text}");
    assert_eq!(fx.next_xid(), xid);
    let roles: i64 = fx
        .admin("postgres")
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'app\\_%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(roles, 0);

    // The plan the dry run printed is the one a real run carries out.
    let real = fx.provision();
    let summaries = |plan: &roles::Plan| plan.steps.iter().map(|s| s.summary.clone()).collect::<Vec<_>>();
    assert_eq!(summaries(&real.plan), summaries(&outcome.plan));
}

#[test]
fn public_create_on_schema_public_is_revoked() {
    let fx = Fixture::new();
    // PostgreSQL 13/14's default, and what a pg_dump restore carries over.
    fx.admin("postgres").batch_execute(&format!("CREATE DATABASE {DB}")).unwrap();
    fx.admin(DB)
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC; CREATE ROLE bystander LOGIN PASSWORD 'x'")
        .unwrap();
    fx.provision();
    let public_create: bool = fx
        .admin(DB)
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a \
             WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!public_create);
    let bystander_create: bool =
        fx.admin(DB).query_one("SELECT has_schema_privilege('bystander', 'public', 'CREATE')", &[]).unwrap().get(0);
    assert!(!bystander_create);
}

#[test]
fn extra_privileges_and_memberships_are_taken_away() {
    let fx = Fixture::new();
    fx.provision();
    fx.migrator().batch_execute("CREATE TABLE t (id serial PRIMARY KEY, secret text)").unwrap();
    let mut admin = fx.admin(DB);
    admin
        .batch_execute(
            "GRANT TRUNCATE, REFERENCES, TRIGGER ON t TO app_user; \
             GRANT SELECT ON t TO app_service WITH GRANT OPTION; \
             GRANT UPDATE ON SEQUENCE t_id_seq TO app_user; \
             GRANT REFERENCES (secret) ON t TO app_service; \
             GRANT SELECT ON t TO PUBLIC; \
             GRANT CREATE ON SCHEMA public TO app_user; \
             GRANT TEMP ON DATABASE cogni_template_test TO app_user; \
             GRANT app_migrator TO app_user; \
             GRANT pg_monitor TO app_service; \
             ALTER ROLE app_user BYPASSRLS CREATEDB; \
             ALTER DEFAULT PRIVILEGES FOR ROLE app_migrator GRANT TRUNCATE ON TABLES TO app_user;",
        )
        .unwrap();
    // Roles that are no longer shaped like model roles are reshaped only on
    // --take-over: nothing changes before it.
    let error = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let refusals = testkit::refusals(&error);
    let taken = |role: &str| {
        refusals.iter().find_map(|r| match r {
            Refusal::Demotion { role: named, taken } if named == role => Some(taken.clone()),
            _ => None,
        })
    };
    assert_eq!(taken("app_user").unwrap(), ["CREATEDB", "BYPASSRLS", "membership in `app_migrator`"], "{refusals:#?}");
    assert_eq!(taken("app_service").unwrap(), ["membership in `pg_monitor`"], "{refusals:#?}");
    let member: bool =
        admin.query_one("SELECT pg_has_role('app_service', 'pg_monitor', 'MEMBER')", &[]).unwrap().get(0);
    assert!(member, "nothing was changed before --take-over");
    let options = roles::Options {
        confirmed: roles::Confirmations {
            take_over: vec!["app_user".into(), "app_service".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    assert!(!outcome.plan.is_empty());
    // provision() verifies with a fresh read; the runtime roles are back to DML.
    let mut runtime = fx.runtime();
    for sql in ["TRUNCATE t", "SET ROLE app_migrator", "CREATE TABLE x (id int)", "CREATE TEMP TABLE x (id int)"] {
        assert_eq!(sqlstate(&mut runtime, sql).as_deref(), Some("42501"), "{sql}");
    }
    let row = admin
        .query_one(
            "SELECT has_table_privilege('app_user', 't', 'TRUNCATE'), \
                    has_sequence_privilege('app_user', 't_id_seq', 'UPDATE'), \
                    has_column_privilege('app_service', 't', 'secret', 'REFERENCES'), \
                    has_table_privilege('app_service', 't', 'SELECT WITH GRANT OPTION'), \
                    (SELECT rolbypassrls OR rolcreatedb FROM pg_roles WHERE rolname = 'app_user'), \
                    pg_has_role('app_service', 'pg_monitor', 'MEMBER'), \
                    has_table_privilege('app_service', 't', 'SELECT')",
            &[],
        )
        .unwrap();
    let flags: Vec<bool> = (0..7).map(|i| row.get(i)).collect();
    assert_eq!(flags, [false, false, false, false, false, false, true]);
}

#[test]
fn two_runs_at_once_both_succeed() {
    let fx = Fixture::new();
    let settings = fx.settings();
    let results: Vec<anyhow::Result<roles::Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let applied: Vec<bool> = results.into_iter().map(|r| r.unwrap().applied).collect();
    // One did the work; the other waited for the lock and found nothing to do.
    assert_eq!(applied.iter().filter(|a| **a).count(), 1, "{applied:?}");
}

/// The databases the server logged logins to after `from` bytes of its
/// log, sorted.
fn logins_after(log: &str, from: usize) -> Vec<String> {
    let mut found: Vec<String> = log[from..]
        .lines()
        .filter_map(|line| line.split("connection authorized: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().find(|w| w.starts_with("database=")).map(str::to_string))
        .collect();
    found.sort();
    found
}

#[test]
fn a_new_database_takes_three_logins_and_a_converged_one_two() {
    let fx = Fixture::with_settings(&[("log_connections", "on")]);
    let from = fx.kit.server.log().len();
    assert!(fx.provision().applied);
    // The cluster's, template1's (what the new database will hold), and the
    // new database's: its changes and their verification share a session.
    let db = format!("database={DB}");
    assert_eq!(logins_after(&fx.kit.server.log(), from), [db.as_str(), "database=postgres", "database=template1"]);
    let from = fx.kit.server.log().len();
    assert!(!fx.provision().applied);
    assert_eq!(logins_after(&fx.kit.server.log(), from), [db.as_str(), "database=postgres"]);
}

#[test]
fn a_session_in_template1_stops_the_new_database_and_says_what_to_do() {
    let fx = Fixture::new();
    // PostgreSQL copies template1 only while nobody else is connected to it
    // (it waits 5 s, then refuses).
    let held = fx.admin("template1");
    let error = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("SQLSTATE 55006"), "{text}");
    assert!(text.contains("pg_stat_activity WHERE datname = 'template1'"), "{text}");
    assert!(text.contains("run again once they have left"), "{text}");
    drop(held);
    // The roles committed before; a re-run finishes the job.
    assert!(fx.provision().applied);
    assert!(fx.provision().plan.is_empty());
}
