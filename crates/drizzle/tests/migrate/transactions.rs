//! Migrations that end drizzle's batch transaction (`COMMIT` for `CREATE
//! INDEX CONCURRENTLY` or an enum value used after being added, `COMMIT …
//! BEGIN` pairs): applied with the stated semantics, failures that say what
//! was committed, and refusals for what would discard work.

use drizzle::RunFailed;

use crate::common::{Fixture, TestFolder};

const DB: &str = "tx_test";

fn exists(fx: &Fixture, relation: &str) -> bool {
    fx.admin(DB).query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation]).unwrap().get(0)
}

/// How a run that had begun failed, and what stays.
fn run_failed(config: &drizzle::Config, folder: &TestFolder) -> RunFailed {
    let error = drizzle::migrate_builtin(config, &folder.read(), false, &mut drizzle::Silent).unwrap_err();
    match error.downcast_ref::<RunFailed>() {
        Some(failed) => failed.clone(),
        None => panic!("not a failed run: {error:#}"),
    }
}

fn recorded(fx: &Fixture) -> Vec<i64> {
    fx.rows(DB).iter().map(|(_, _, when)| when.unwrap()).collect()
}

#[test]
fn commit_then_create_index_concurrently_applies_and_records_every_migration() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_webhook", 1000, b"CREATE TABLE \"webhook\" (\"id\" serial PRIMARY KEY, \"url\" text);")
        .add(
            "0001_routing_key",
            2000,
            b"ALTER TABLE \"webhook\" ADD COLUMN \"routing_key\" text;--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nSET lock_timeout = 0;--> statement-breakpoint\nCREATE INDEX CONCURRENTLY IF NOT EXISTS \"webhook_routing_key_idx\" ON \"webhook\" USING btree (\"routing_key\");",
        )
        .add("0002_after", 3000, b"CREATE TABLE \"delivery\" (\"id\" serial PRIMARY KEY);");
    let read = folder.read();
    assert_eq!(read.migrations[1].ends_transaction(), Some((2, "COMMIT".to_string())));
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &read, false, &mut drizzle::Silent).unwrap();
    assert_eq!(outcome.applied, ["0000_webhook", "0001_routing_key", "0002_after"]);
    assert_eq!(recorded(&fx), [1000, 2000, 3000], "one row each, in order");
    let valid: bool = fx
        .admin(DB)
        .query_one("SELECT indisvalid FROM pg_index WHERE indexrelid = 'webhook_routing_key_idx'::regclass", &[])
        .unwrap()
        .get(0);
    assert!(valid);
    assert!(exists(&fx, "delivery"));
    // Nothing left to do, and the rows are the same a second time.
    assert!(drizzle::migrate_builtin(&fx.config(DB), &read, false, &mut drizzle::Silent).unwrap().applied.is_empty());
}

#[test]
fn an_enum_value_is_usable_after_a_commit_and_refused_without_it() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add(
            "0000_status",
            1000,
            b"CREATE TYPE \"status\" AS ENUM('queued', 'sent');--> statement-breakpoint\nCREATE TABLE \"job\" (\"id\" int, \"status\" \"status\");--> statement-breakpoint\nINSERT INTO \"job\" VALUES (1, 'queued');",
        )
        .add(
            "0001_failed",
            2000,
            b"ALTER TYPE \"status\" ADD VALUE 'failed';--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nUPDATE \"job\" SET \"status\" = 'failed' WHERE \"id\" = 1;",
        );
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    let status: String = fx.admin(DB).query_one("SELECT status::text FROM job", &[]).unwrap().get(0);
    assert_eq!(status, "failed");
    assert_eq!(recorded(&fx), [1000, 2000]);

    // Without the COMMIT the server refuses (55P04) and nothing stays. The
    // type comes from an earlier run: a type created in the same transaction
    // may use its new values at once (PostgreSQL 17+ relaxed this further).
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_status", 1000, b"CREATE TYPE \"status\" AS ENUM('queued');--> statement-breakpoint\nCREATE TABLE \"job\" (\"id\" int, \"status\" \"status\");");
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    folder.add(
        "0001_failed",
        2000,
        b"ALTER TYPE \"status\" ADD VALUE 'failed';--> statement-breakpoint\nINSERT INTO \"job\" VALUES (1, 'failed');",
    );
    let failed = run_failed(&fx.config(DB), &folder);
    assert_eq!(failed.sqlstate.as_deref(), Some("55P04"), "{failed}");
    assert!(failed.recorded.is_empty() && failed.rolled_back.is_empty(), "{failed:?}");
    assert_eq!((failed.migration.as_str(), failed.committed_statements), ("0001_failed", 0));
    assert!(failed.to_string().contains("none of the 1 pending migrations was applied"), "{failed}");
    let labels: i64 = fx.admin(DB).query_one("SELECT count(*) FROM pg_enum", &[]).unwrap().get(0);
    assert_eq!(labels, 1, "the new value was rolled back with the batch");
    assert_eq!(recorded(&fx), [1000]);
}

#[test]
fn a_commit_begin_pair_keeps_the_rest_in_a_transaction() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_t", 1000, b"CREATE TABLE t (id int, note text);")
        .add(
            "0001_pair",
            2000,
            b"INSERT INTO t VALUES (1, 'a');--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nCREATE INDEX CONCURRENTLY t_note_idx ON t (note);--> statement-breakpoint\nBEGIN;--> statement-breakpoint\nINSERT INTO t VALUES (2, 'b');",
        )
        .add("0002_more", 3000, b"INSERT INTO t VALUES (3, 'c');");
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    let count: i64 = fx.admin(DB).query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(count, 3);
    assert_eq!(recorded(&fx), [1000, 2000, 3000]);
}

#[test]
fn a_failure_outside_the_transaction_says_what_was_committed() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_first", 1000, b"CREATE TABLE first_table (id int);")
        .add(
            "0001_index",
            2000,
            b"CREATE TABLE dupes (v int);--> statement-breakpoint\nINSERT INTO dupes VALUES (1), (1);--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nCREATE UNIQUE INDEX CONCURRENTLY dupes_v_idx ON dupes (v);",
        )
        .add("0002_never", 3000, b"CREATE TABLE never_table (id int);");
    let failed = run_failed(&fx.config(DB), &folder);
    assert_eq!(failed.recorded, ["0000_first"]);
    assert_eq!(
        (failed.migration.as_str(), failed.committed_statements, failed.failed_at, failed.total),
        ("0001_index", 3, 4, 4)
    );
    assert!(failed.autocommit && failed.concurrent_index, "{failed:?}");
    assert_eq!(failed.sqlstate.as_deref(), Some("23505"));
    assert_eq!(failed.next, "0001_index", "not recorded: the next run starts it again");
    assert!(failed.to_string().contains("INVALID index"), "the advice on the index: {failed}");
    assert_eq!(recorded(&fx), [1000], "nothing is recorded that did not run");
    assert!(exists(&fx, "first_table") && exists(&fx, "dupes") && !exists(&fx, "never_table"));
    let invalid: bool = fx
        .admin(DB)
        .query_one("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'dupes_v_idx'::regclass", &[])
        .unwrap()
        .get(0);
    assert!(invalid, "what the advice is about");
}

#[test]
fn the_migrations_after_a_commit_run_outside_a_transaction_as_under_drizzle_kit() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_commits", 1000, b"CREATE TABLE a (id int);--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nCREATE TABLE b (id int);")
        .add("0001_ok", 2000, b"CREATE TABLE c (id int);")
        .add("0002_bad", 3000, b"CREATE TABLE d (id int);--> statement-breakpoint\nSELECT 1/0;");
    let failed = run_failed(&fx.config(DB), &folder);
    assert_eq!(failed.recorded, ["0000_commits", "0001_ok"]);
    assert_eq!((failed.migration.as_str(), failed.committed_statements, failed.total), ("0002_bad", 1, 2));
    assert!(failed.to_string().contains("make the committed statements idempotent"), "{failed}");
    assert_eq!(recorded(&fx), [1000, 2000]);
    assert!(exists(&fx, "a") && exists(&fx, "b") && exists(&fx, "c") && exists(&fx, "d"));

    // With a transaction per migration, the failing one leaves nothing.
    let fx = Fixture::provisioned(DB);
    let mut config = fx.config(DB);
    config.per_migration = true;
    let failed = run_failed(&config, &folder);
    assert_eq!((failed.migration.as_str(), failed.failed_at, failed.total), ("0002_bad", 2, 2));
    assert_eq!(failed.committed_statements, 0, "nothing of it was committed");
    assert_eq!(recorded(&fx), [1000, 2000]);
    assert!(exists(&fx, "c") && !exists(&fx, "d"));
}

#[test]
fn a_failure_in_the_transaction_after_a_commit_names_the_committed_part() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add(
        "0000_half",
        1000,
        b"CREATE TABLE kept (id int);--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nBEGIN;--> statement-breakpoint\nCREATE TABLE lost (id int);--> statement-breakpoint\nSELECT 1/0;",
    );
    let failed = run_failed(&fx.config(DB), &folder);
    assert_eq!(
        (failed.migration.as_str(), failed.committed_statements, failed.failed_at, failed.total),
        ("0000_half", 2, 5, 5)
    );
    assert!(failed.to_string().contains("statements 3–4 were rolled back"), "{failed}");
    assert!(fx.rows(DB).is_empty());
    assert!(exists(&fx, "kept") && !exists(&fx, "lost"));
}

#[test]
fn one_transaction_per_migration_with_a_commit_inside() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_t", 1000, b"CREATE TABLE t (id int);")
        .add("0001_index", 2000, b"COMMIT;--> statement-breakpoint\nCREATE INDEX CONCURRENTLY t_idx ON t (id);")
        .add("0002_u", 3000, b"CREATE TABLE u (id int);");
    let mut config = fx.config(DB);
    config.per_migration = true;
    drizzle::migrate_builtin(&config, &folder.read(), false, &mut drizzle::Silent).unwrap();
    assert_eq!(recorded(&fx), [1000, 2000, 3000]);
}

#[test]
fn savepoints_and_two_phase_commit_are_refused_before_anything_runs() {
    for (sql, keyword) in [
        ("CREATE TABLE x (id int);\nSAVEPOINT s;\nCREATE TABLE y (id int);", "SAVEPOINT"),
        ("CREATE TABLE x (id int);\nCOMMIT;\nABORT;", "ABORT"),
        ("CREATE TABLE x (id int);\nPREPARE TRANSACTION 'p';", "PREPARE TRANSACTION"),
        ("COMMIT AND CHAIN;", "COMMIT AND CHAIN"),
    ] {
        let fx = Fixture::provisioned(DB);
        let mut folder = TestFolder::new();
        folder.add("0000_ok", 500, b"CREATE TABLE ok (id int);").add("0001_bad", 1000, sql.as_bytes());
        let mut refusals = crate::common::refused(&fx.config(DB), &folder.read());
        // The guard refuses a savepoint too (what a ROLLBACK TO undoes, it cannot tell).
        refusals.retain(|r| {
            !matches!(r, drizzle::Refusal::Guarded(f) if keyword == "SAVEPOINT" && f.to_string().contains("savepoint"))
        });
        assert!(
            matches!(&refusals[..], [drizzle::Refusal::Statement { tag, keyword: refused, .. }]
                if tag == "0001_bad" && refused == keyword),
            "{sql}: {refusals:?}"
        );
        assert!(!exists(&fx, "ok") && !exists(&fx, "x"), "{sql}: nothing ran");
    }
}

/// A failure after the commit that follows an enum value: the message says
/// which migrations are applied and recorded, which were rolled back, where
/// the next run starts and the fix; once the file is fixed, a re-run ends
/// where a clean run ends.
#[test]
fn a_failure_after_an_enum_commit_says_what_stays_and_a_rerun_converges() {
    let source = crate::common::realworld("enum-batch");
    let bad = b"CREATE TABLE \"audit\" (\"id\" int);--> statement-breakpoint\nSELECT 1/0;";
    let good = b"CREATE TABLE \"audit\" (\"id\" int);";
    let fx = Fixture::provisioned(DB);
    fx.provision("clean");
    // The type exists before the batch (an earlier deploy), on every major.
    let first = TestFolder::copy_of(&source, Some(1)).read();
    for db in [DB, "clean"] {
        drizzle::migrate_builtin(&fx.config(db), &first, false, &mut drizzle::Silent).unwrap();
    }
    let mut failing = TestFolder::copy_of(&source, None);
    failing.add("0005_audit", 1_900_000_000_000, bad);
    let failed = run_failed(&fx.config(DB), &failing);
    assert_eq!(failed.recorded, ["0001_triaged"]);
    assert_eq!(failed.rolled_back, ["0002_review_state", "0003_triage_old", "0004_notes"]);
    assert_eq!((failed.migration.as_str(), failed.failed_at, failed.committed_statements), ("0005_audit", 2, 0));
    assert_eq!(failed.next, "0002_review_state");
    let said = failed.to_string();
    assert!(said.contains("fix `0005_audit.sql`") && said.contains("--transaction-per-migration"), "{said}");
    assert!(!said.contains("idempotent"), "nothing of it was committed: {said}");
    assert_eq!(fx.rows(DB).len(), 2);

    let mut fixed = TestFolder::copy_of(&source, None);
    fixed.add("0005_audit", 1_900_000_000_000, good);
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &fixed.read(), false, &mut drizzle::Silent).unwrap();
    assert_eq!(outcome.applied, ["0002_review_state", "0003_triage_old", "0004_notes", "0005_audit"]);
    drizzle::migrate_builtin(&fx.config("clean"), &fixed.read(), false, &mut drizzle::Silent).unwrap();
    assert_eq!(fx.rows(DB), fx.rows("clean"));
    assert_eq!(fx.schema_fingerprint(DB), fx.schema_fingerprint("clean"));
}

/// A migration that committed part of itself and opened a transaction
/// again, rolled back with a later failure: the message says its first
/// part stays, never that the whole batch was rolled back.
#[test]
fn a_partly_committed_migration_rolled_back_with_a_later_one_is_named() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add(
            "0000_pair",
            1000,
            b"CREATE TABLE t (id int);--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nCREATE INDEX CONCURRENTLY t_idx ON t (id);--> statement-breakpoint\nBEGIN;--> statement-breakpoint\nCREATE TABLE u (id int);",
        )
        .add("0001_bad", 2000, b"SELECT 1/0;");
    let failed = run_failed(&fx.config(DB), &folder);
    assert_eq!(failed.rolled_back, ["0000_pair"]);
    assert_eq!(failed.partial, ["0000_pair"], "its first part stays");
    assert!(!failed.to_string().contains("whole batch was rolled back"), "{failed}");
    assert!(exists(&fx, "t") && !exists(&fx, "u"));
    assert!(fx.rows(DB).is_empty());
}

/// A single migration that starts with its own `COMMIT`: no transaction
/// of the run held any work.
#[test]
fn a_commit_first_migration_counts_no_transaction() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_t", 1000, b"CREATE TABLE t (id int);");
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    folder.add("0001_index", 2000, b"COMMIT;--> statement-breakpoint\nCREATE INDEX CONCURRENTLY t_idx ON t (id);");
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    assert_eq!(outcome.transactions, 0, "{outcome:?}");
    assert_eq!(outcome.outside, ["0001_index"]);
}

/// With a transaction per migration, a statement that cannot run in one
/// (drizzle-kit runs it only outside a transaction) names the fix.
#[test]
fn a_statement_that_needs_no_transaction_names_the_fix() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_t", 1000, b"CREATE TABLE t (id int);").add(
        "0001_index",
        2000,
        b"CREATE INDEX CONCURRENTLY t_idx ON t (id);",
    );
    let mut config = fx.config(DB);
    config.per_migration = true;
    let failed = run_failed(&config, &folder);
    assert_eq!(failed.sqlstate.as_deref(), Some("25001"));
    assert!(failed.to_string().contains("write `COMMIT;` before it"), "the fix: {failed}");
}

/// What a failed run committed (a schema made before a `COMMIT`) gets its
/// grants at once, not at the end of a later successful run.
#[test]
fn what_a_failed_run_committed_is_granted_to_the_runtime_roles() {
    let extra = [("APP_DB_SCHEMAS", "app")];
    let fx = Fixture::bare();
    fx.provision_with(DB, &extra);
    let mut folder = TestFolder::new();
    folder.add(
        "0000_app",
        1000,
        b"CREATE SCHEMA \"app\";--> statement-breakpoint\nCREATE TABLE \"app\".\"t\" (\"id\" int);--> statement-breakpoint\nCOMMIT;--> statement-breakpoint\nSELECT 1/0;",
    );
    let failed = run_failed(&fx.config_with(DB, &extra), &folder);
    assert!(failed.granted_what_stays, "{failed}");
    fx.connect_as("app_user", DB).batch_execute("SELECT * FROM app.t").unwrap();
}

#[test]
fn long_lists_of_migrations_are_summarised() {
    let tags: Vec<String> = (0..298).map(|i| format!("{i:04}_m")).collect();
    assert_eq!(drizzle::run::summarise(&tags), "0000_m … 0297_m (298 migrations)");
    assert_eq!(drizzle::run::summarise(&tags[..2]), "0000_m, 0001_m");
}
