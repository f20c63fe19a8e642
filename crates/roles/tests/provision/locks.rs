//! Runs against one cluster: runs against one database wait for each other;
//! runs against different databases wait only for each other's catalog
//! reads and role changes, never for a whole conversion (a fleet provisions
//! its databases side by side).

use std::time::{Duration, Instant};

use dbenv::{keys, Settings};
use postgres::Client;

use crate::common::{Fixture, DB};

/// The settings of another app database on the fixture's cluster, with the
/// same roles and a short PG_TIMEOUT (how long a run waits for a lock).
fn settings_for(fx: &Fixture, db: &str, timeout: &str) -> Settings {
    let mut vars = fx.vars();
    for (key, value) in &mut vars {
        if key == keys::APP_DB_NAME {
            *value = db.to_string();
        }
        if key == keys::PG_TIMEOUT {
            *value = timeout.to_string();
        }
    }
    testkit::env_of(&vars).provisioning().unwrap()
}

/// Waits until some session waits for a lock on `table`.
fn wait_for_lock_waiter(admin: &mut Client, table: &str) {
    let started = Instant::now();
    loop {
        let waiting: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE NOT l.granted AND c.relname = $1)",
                &[&table],
            )
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the conversion never reached `{table}`");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A legacy table the conversion must take from app_user, held by an open
/// transaction of the app (`ROLLBACK` on the returned session ends it): the
/// conversion retries behind it.
fn hold_a_legacy_table(fx: &Fixture) -> Client {
    fx.admin(DB)
        .batch_execute("CREATE TABLE public.legacy (id int); ALTER TABLE public.legacy OWNER TO app_user")
        .unwrap();
    let mut app = fx.runtime();
    app.batch_execute("BEGIN; LOCK TABLE public.legacy IN ACCESS SHARE MODE").unwrap();
    app
}

/// Provisioning of `settings` on a thread, retrying every 100 ms behind locks.
fn converting(settings: Settings) -> std::thread::JoinHandle<anyhow::Result<roles::Outcome>> {
    std::thread::spawn(move || {
        let options = roles::Options { lock_timeout: Duration::from_millis(100), ..Default::default() };
        roles::provision(&settings, &options, &mut roles::Quiet)
    })
}

#[test]
fn a_run_against_another_database_does_not_wait_for_a_long_conversion() {
    let fx = Fixture::new();
    fx.provision();
    let mut held = hold_a_legacy_table(&fx);
    let long = converting(fx.settings());
    wait_for_lock_waiter(&mut fx.admin(DB), "legacy");

    // Another database of the cluster, created and provisioned meanwhile:
    // it would wait for the whole conversion under one cluster-wide lock,
    // and give up after its PG_TIMEOUT of 2 s.
    let other = settings_for(&fx, "other_app", "2");
    let outcome = roles::provision(&other, &roles::Options::default(), &mut roles::Quiet)
        .expect("a run against another database waited for the conversion");
    assert!(outcome.applied);
    assert!(!long.is_finished(), "the conversion finished before the other run: the test proves nothing");

    // The same database waits for the conversion, as before.
    let same = settings_for(&fx, DB, "1");
    let error = roles::provision(&same, &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    assert!(format!("{error:#}").contains("another db-provision"), "{error:#}");

    held.batch_execute("ROLLBACK").unwrap();
    let converted = long.join().unwrap().unwrap();
    assert!(converted.applied);
    let owner: String = fx
        .admin(DB)
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'legacy'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_migrator");
}

#[test]
fn the_cluster_lock_is_held_while_a_run_reads_and_the_database_lock_for_its_life() {
    let fx = Fixture::new();
    fx.provision();
    let mut holder = fx.admin("postgres");
    // Another run reading the catalogs: every run waits for it.
    holder.query_one("SELECT pg_advisory_lock($1)", &[&roles::PROVISION_LOCK_KEY]).unwrap();
    for db in [DB, "other_app"] {
        let error =
            roles::provision(&settings_for(&fx, db, "1"), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
        assert!(format!("{error:#}").contains("another db-provision"), "{db}: {error:#}");
    }
    holder.query_one("SELECT pg_advisory_unlock($1)", &[&roles::PROVISION_LOCK_KEY]).unwrap();
    // A run against the app database: only that database waits for it.
    let key = roles::apply::database_lock_key(DB);
    holder.query_one("SELECT pg_advisory_lock($1)", &[&key]).unwrap();
    let error =
        roles::provision(&settings_for(&fx, DB, "1"), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    assert!(format!("{error:#}").contains("another db-provision"), "{error:#}");
    roles::provision(&settings_for(&fx, "other_app", "1"), &roles::Options::default(), &mut roles::Quiet).unwrap();
    // A converged run lets go of the cluster's lock after its read and keeps
    // its database's until it ends; nothing is left held afterwards.
    holder.query_one("SELECT pg_advisory_unlock($1)", &[&key]).unwrap();
    fx.provision();
    let held: i64 = holder
        .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
}

#[test]
fn a_run_that_changes_roles_keeps_the_cluster_lock_to_its_end() {
    let mut fx = Fixture::new();
    fx.provision();
    let mut held = hold_a_legacy_table(&fx);
    // A new password for the service role: the plan changes a role, then
    // waits behind the app in its ownership phase.
    fx.passwords[2] = "a new service password".into();
    let long = converting(fx.settings());
    wait_for_lock_waiter(&mut fx.admin(DB), "legacy");
    // Another database waits for it now (roles are cluster-wide), and gives up.
    let error = roles::provision(&settings_for(&fx, "other_app", "1"), &roles::Options::default(), &mut roles::Quiet)
        .unwrap_err();
    assert!(format!("{error:#}").contains("another db-provision"), "{error:#}");
    assert!(!long.is_finished());
    held.batch_execute("ROLLBACK").unwrap();
    assert!(long.join().unwrap().unwrap().applied);
}
