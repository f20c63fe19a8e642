//! The app's own migration set, applied as the migrator after provisioning.

use crate::common::{app_migrations, sqlstate, Fixture, TestFolder};

const DB: &str = "cogni_template_test";
const TENANT_A: &str = "0000000a-0000-4000-a000-00000000000a";
const TENANT_B: &str = "0000000b-0000-4000-a000-00000000000b";

#[test]
fn the_whole_set_applies_as_the_migrator_and_rls_holds() {
    let fx = Fixture::provisioned(DB);
    let folder = drizzle::folder::read(&app_migrations()).unwrap();
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &folder, false, &mut drizzle::Silent).unwrap();
    let tags: Vec<&str> = outcome.applied.iter().map(String::as_str).collect();
    assert_eq!(tags.len(), 9);
    assert_eq!(tags[0], "0000_init");
    assert_eq!(tags[8], "0008_seed_system_tenant");
    assert!(drizzle::migrate_builtin(&fx.config(DB), &folder, false, &mut drizzle::Silent).unwrap().applied.is_empty());

    // Everything the migrator created reached the runtime roles through the
    // default privileges: DML on tables, USAGE on the serial's sequence.
    let mut admin = fx.admin(DB);
    let row = admin
        .query_one(
            "SELECT bool_and(has_table_privilege('app_user', c.oid, 'SELECT, INSERT, UPDATE, DELETE')), \
                    bool_and(has_table_privilege('app_service', c.oid, 'SELECT, INSERT, UPDATE, DELETE')), \
                    bool_or(has_table_privilege('app_user', c.oid, 'TRUNCATE, REFERENCES, TRIGGER')), \
                    bool_and(pg_get_userbyid(c.relowner) = 'app_migrator'), count(*) \
             FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2), row.get::<_, bool>(3)),
        (true, true, false, true)
    );
    assert_eq!(row.get::<_, i64>(4), 14);
    let sequence: bool = admin
        .query_one("SELECT has_sequence_privilege('app_user', 'payment_events_id_seq', 'USAGE')", &[])
        .unwrap()
        .get(0);
    assert!(sequence);

    // Two tenants, written by the migrator (which bypasses RLS).
    fx.connect_as("app_migrator", DB)
        .batch_execute(&format!(
            "INSERT INTO users (id, name) VALUES ('{TENANT_A}', 'A'), ('{TENANT_B}', 'B'); \
             INSERT INTO billing_accounts (owner_user_id) VALUES ('{TENANT_A}'), ('{TENANT_B}');"
        ))
        .unwrap();

    let mut app = fx.connect_as("app_user", DB);
    let mut tx = app.transaction().unwrap();
    tx.batch_execute(&format!("SET LOCAL app.current_user_id = '{TENANT_A}'")).unwrap();
    let visible: Vec<String> = tx.query("SELECT id::text FROM users", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(visible, [TENANT_A]);
    let accounts: i64 = tx.query_one("SELECT count(*) FROM billing_accounts", &[]).unwrap().get(0);
    assert_eq!(accounts, 1);
    // A serial insert works (sequence USAGE), within the tenant.
    let attempt: String = tx
        .query_one(
            "INSERT INTO payment_attempts (billing_account_id, from_address, chain_id, amount_raw) \
             SELECT id, '0xabc', 1, 10 FROM billing_accounts RETURNING id::text",
            &[],
        )
        .unwrap()
        .get(0);
    tx.batch_execute(&format!("INSERT INTO payment_events (attempt_id, event_type) VALUES ('{attempt}', 'created')"))
        .unwrap();
    // A cross-tenant insert fails the policy's WITH CHECK.
    let error =
        tx.batch_execute(&format!("INSERT INTO billing_accounts (owner_user_id) VALUES ('{TENANT_B}')")).unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42501");
    drop(tx);

    let unset: i64 = app.query_one("SELECT count(*) FROM users", &[]).unwrap().get(0);
    assert_eq!(unset, 0, "no tenant set, no rows");
    assert_eq!(sqlstate(&mut app, "CREATE TABLE _test_ddl_check (id int)").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut app, "DROP TABLE users").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut app, "SELECT * FROM drizzle.__drizzle_migrations").as_deref(), Some("42501"));

    let mut service = fx.connect_as("app_service", DB);
    let both: i64 = service
        .query_one(&format!("SELECT count(*) FROM users WHERE id IN ('{TENANT_A}', '{TENANT_B}')"), &[])
        .unwrap()
        .get(0);
    assert_eq!(both, 2, "the service role sees both tenants");
    let system: String = service
        .query_one(
            "SELECT u.name FROM billing_accounts b JOIN users u ON u.id = b.owner_user_id \
             WHERE b.slug = 'cogni_system' AND b.is_system_tenant",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(system, "Cogni System");
    let keys: i64 = service
        .query_one(
            "SELECT count(*) FROM virtual_keys WHERE billing_account_id = '00000000-0000-4000-b000-000000000000'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(keys, 1);
}

#[test]
fn the_seed_is_idempotent_when_run_again() {
    let fx = Fixture::provisioned(DB);
    let folder = TestFolder::copy_of(&app_migrations(), None);
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    // The seed's statements, run a second time by hand, change nothing.
    let seed = std::fs::read_to_string(app_migrations().join("0008_seed_system_tenant.sql")).unwrap();
    let mut migrator = fx.connect_as("app_migrator", DB);
    let mut tx = migrator.transaction().unwrap();
    for piece in drizzle::folder::split(&seed) {
        tx.batch_execute(piece).unwrap();
    }
    tx.commit().unwrap();
    let counts: Vec<i64> = fx
        .admin(DB)
        .query_one(
            "SELECT ARRAY[(SELECT count(*) FROM users), (SELECT count(*) FROM billing_accounts), (SELECT count(*) FROM virtual_keys)]",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(counts, [1, 1, 1]);
}
