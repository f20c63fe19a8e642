//! `db-check` against production changes nothing a rollback does not undo:
//! `setval` is asked of the catalog, never called; DDL on what the role
//! holds is answered by the catalog, never tried; and every probe waits at
//! most its short `lock_timeout`, so an app writing at the same time sees
//! no error and no long wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::common::{probe_failures, Fixture, DB};

/// Every sequence's state and every table's row count in the app schema.
fn fingerprint(fx: &Fixture, skip_table: &str) -> Vec<String> {
    let mut admin = fx.admin();
    let mut found: Vec<String> = admin
        .query("SELECT schemaname || '.' || sequencename || ' ' || coalesce(last_value::text, 'unused') FROM pg_sequences ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tables: Vec<String> = admin
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|t: &String| t != skip_table)
        .collect();
    for table in tables {
        let count: i64 = admin.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0);
        found.push(format!("{table} {count} rows"));
    }
    found
}

/// A sequence's last value (`None` before its first `nextval`).
fn last_value(fx: &Fixture, sequence: &str) -> Option<i64> {
    fx.admin().query_one("SELECT last_value FROM pg_sequences WHERE sequencename = $1", &[&sequence]).unwrap().get(0)
}

#[test]
fn setval_is_asked_of_the_catalog_and_never_called() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "CREATE SEQUENCE public.aaa_invoice_numbers; \
             SELECT nextval('public.aaa_invoice_numbers') FROM generate_series(1, 5); \
             GRANT UPDATE ON SEQUENCE public.aaa_invoice_numbers TO app_user",
        )
        .unwrap();
    let report = fx.check();
    let held = probe_failures(&report, "setval");
    assert!(held.iter().any(|f| f == "app_user HELD on public.aaa_invoice_numbers"), "{held:?}\n{}", report.to_text());
    let last: i64 = fx.admin().query_one("SELECT last_value FROM public.aaa_invoice_numbers", &[]).unwrap().get(0);
    assert_eq!(last, 5, "db-check moved a production sequence");
}

#[test]
fn ddl_on_a_table_the_role_owns_is_answered_by_the_catalog_without_a_lock() {
    let fx = Fixture::migrated();
    // The probe target (the first RLS table) handed to the runtime role, and
    // an app transaction holding a lock on it for the whole check.
    fx.admin().batch_execute("ALTER TABLE public.ai_threads OWNER TO app_user").unwrap();
    let mut app = Client::connect(&fx.kit.server.admin_url(DB), NoTls).unwrap();
    app.batch_execute("BEGIN; LOCK TABLE public.ai_threads IN ROW EXCLUSIVE MODE").unwrap();
    let report = fx.check();
    app.batch_execute("COMMIT").unwrap();
    for id in ["drop-table", "alter-table", "disable-rls", "truncate", "create-index", "create-policy"] {
        let probe = report.probes.iter().find(|p| p.id == id && p.role == "app_user").unwrap();
        assert!(
            probe.observed.starts_with("HELD (the catalog shows it; not tried)"),
            "{id}: {}\n{}",
            probe.observed,
            report.to_text()
        );
    }
    assert!(!report.holds());
}

#[test]
fn an_app_writing_during_the_check_sees_no_error_and_nothing_changes() {
    let fx = Fixture::migrated();
    let written = "public.ai_invocation_summaries";
    let before = fingerprint(&fx, written);
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("postgresql://app_service:service_password@127.0.0.1:{}/{DB}", fx.kit.server.port());
    // A long app transaction (a batch job) holds a lock on the probes'
    // target table for the whole check, and short app transactions keep
    // coming: a probe that queued behind the long one for its lock would hold
    // every short one up until its own timeout. The short ones' own
    // lock_timeout is 10x the probe's.
    let mut batch_job = Client::connect(&url, NoTls).unwrap();
    batch_job.batch_execute("BEGIN; LOCK TABLE public.ai_threads IN ROW EXCLUSIVE MODE").unwrap();
    let app = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || -> (u32, Vec<String>) {
            let mut app = Client::connect(&url, NoTls).unwrap();
            app.batch_execute("SET lock_timeout = '500ms'").unwrap();
            let (mut done, mut errors) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let sql = format!(
                    "BEGIN; LOCK TABLE public.ai_threads IN ROW EXCLUSIVE MODE; \
                     INSERT INTO {written} (invocation_id, request_id, status) VALUES ('app-{done}', 'r', 'ok'); \
                     SELECT pg_sleep(0.01); COMMIT"
                );
                match app.batch_execute(&sql) {
                    Ok(()) => done += 1,
                    Err(error) => {
                        errors.push(format!("{error:?}"));
                        let _ = app.batch_execute("ROLLBACK");
                    }
                }
            }
            (done, errors)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let report = fx.check();
    stop.store(true, Ordering::Relaxed);
    batch_job.batch_execute("COMMIT").unwrap();
    let (inserted, errors) = app.join().unwrap();
    assert!(errors.is_empty(), "the app saw errors while db-check ran: {errors:?}\n{}", report.to_text());
    assert!(inserted > 0);
    assert_eq!(fingerprint(&fx, written), before, "db-check changed a sequence or a row");
    // The probes that needed a lock the app held said so, not "denied".
    for probe in report.probes.iter().filter(|p| p.observed.starts_with("timed out")) {
        assert_eq!(probe.verdict, audit::Verdict::Inconclusive, "{}", probe.id);
    }
}

#[test]
fn writing_the_bookkeeping_is_answered_by_the_catalog_and_takes_no_serial_value() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "GRANT USAGE ON SCHEMA drizzle TO app_user; GRANT INSERT ON drizzle.__drizzle_migrations TO app_user; \
             GRANT USAGE ON SEQUENCE drizzle.__drizzle_migrations_id_seq TO app_user",
        )
        .unwrap();
    let last = |fx: &Fixture| last_value(fx, "__drizzle_migrations_id_seq");
    let before = last(&fx);
    let report = fx.check();
    let probe = report.probes.iter().find(|p| p.id == "write-bookkeeping" && p.role == "app_user").unwrap();
    assert!(probe.observed.starts_with("HELD (the catalog shows it"), "{}", probe.observed);
    assert_eq!(last(&fx), before, "db-check took a value of the bookkeeping's SERIAL");
}

#[test]
fn a_schema_the_role_owns_is_never_dropped_to_find_out() {
    let fx = Fixture::migrated();
    fx.admin().batch_execute("ALTER SCHEMA public OWNER TO app_user").unwrap();
    let report = fx.check();
    for id in ["drop-schema", "rename-schema", "drop-table"] {
        let probe = report.probes.iter().find(|p| p.id == id && p.role == "app_user").unwrap();
        assert!(probe.observed.starts_with("HELD (the catalog shows it"), "{id}: {}", probe.observed);
    }
}

#[test]
fn without_write_probes_no_row_is_inserted_and_the_write_proof_is_unproven() {
    let fx = Fixture::migrated();
    // A trigger that counts the rows it sees: with --no-write-probes it
    // never fires.
    fx.migrator()
        .batch_execute(
            "CREATE SEQUENCE public.trigger_calls; \
             CREATE FUNCTION public.count_call() RETURNS trigger LANGUAGE plpgsql AS $$ \
               BEGIN PERFORM nextval('public.trigger_calls'); RETURN NEW; END $$; \
             CREATE TRIGGER count_call BEFORE INSERT ON public.billing_accounts \
               FOR EACH ROW EXECUTE FUNCTION public.count_call()",
        )
        .unwrap();
    let calls = |fx: &Fixture| last_value(fx, "trigger_calls");
    let exemptions = audit::Exemptions::load_default(&crate::common::repo_root()).unwrap();
    let mut config =
        audit::CheckConfig::new(fx.env().checking().unwrap(), Some(fx.migrations.clone()), exemptions).unwrap();
    config.write_probes = false;
    let report = audit::check(&config).unwrap();
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert_eq!(insert.verdict, audit::Verdict::Unproven, "{}", insert.observed);
    assert!(insert.observed.starts_with("not tried (--no-write-probes)"), "{}", insert.observed);
    assert!(report.unproven().contains(&"cross-tenant-insert (app_user)".to_string()), "{:?}", report.unproven());
    assert_eq!(calls(&fx), None, "the trigger fired");
    // With the write proofs the table is not touched either: its trigger
    // takes a sequence value, which a rollback does not undo, so the table
    // is named as unproven rather than written.
    let report = fx.check();
    assert_eq!(calls(&fx), None, "the trigger never fired");
    for id in ["cross-tenant-insert", "probe-rows-insert"] {
        let probe = report.probes.iter().find(|p| p.id == id).unwrap();
        assert_eq!(probe.verdict, audit::Verdict::Unproven, "{id}: {}", probe.observed);
        assert!(
            probe.observed.contains("public.billing_accounts (not touched: trigger count_call"),
            "{id}: {}",
            probe.observed
        );
    }
}
