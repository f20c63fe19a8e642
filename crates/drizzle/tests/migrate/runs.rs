//! Runs that fail, run at once, or only look.

use crate::common::{Fixture, TestFolder};

const DB: &str = "app_test";

#[test]
fn a_failing_migration_rolls_back_the_whole_batch() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_ok", 1000, b"CREATE TABLE kept (id int);")
        .add("0001_ok", 2000, b"INSERT INTO kept VALUES (1);")
        .add(
            "0002_bad",
            3000,
            b"CREATE TABLE fine (id int);\n--> statement-breakpoint\nSELECT 1;\nALTER TABLE nowhere ADD COLUMN x int;",
        );
    let result = drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent);
    let message = format!("{:#}", result.unwrap_err());
    assert!(
        message.contains("migration `0002_bad` failed at statement 2 of 2 (line 3 of 0002_bad.sql): relation \"nowhere\" does not exist (SQLSTATE 42P01)"),
        "{message}"
    );
    assert!(message.contains("statement: SELECT 1; ALTER TABLE nowhere ADD COLUMN x int;"), "{message}");
    assert!(message.contains("none of the 3 pending migrations was applied"), "{message}");
    let left: Vec<bool> = fx
        .admin(DB)
        .query_one("SELECT ARRAY[to_regclass('kept') IS NULL, to_regclass('fine') IS NULL]", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, [true, true]);
    assert!(fx.rows(DB).is_empty(), "the bookkeeping is unchanged");
}

#[test]
fn per_migration_transactions_keep_what_succeeded() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_ok", 1000, b"CREATE TABLE kept (id int);").add("0001_bad", 2000, b"SELECT 1/0;");
    let mut config = fx.config(DB);
    config.per_migration = true;
    let message =
        format!("{:#}", drizzle::migrate_builtin(&config, &folder.read(), false, &mut drizzle::Silent).unwrap_err());
    assert!(message.contains("division by zero (SQLSTATE 22012)"), "{message}");
    assert_eq!(fx.rows(DB).len(), 1);
}

#[test]
fn a_rollback_inside_a_migration_is_refused_before_anything_runs() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_before", 500, b"CREATE TABLE before_it (id int);");
    folder.add("0001_rolls_back", 1000, b"CREATE TABLE early (id int);\n--> statement-breakpoint\n-- undo\nROLLBACK;");
    let refusals = crate::common::refused(&fx.config(DB), &folder.read());
    assert!(
        matches!(&refusals[..], [drizzle::Refusal::Statement { tag, line: 4, keyword, reason }]
            if tag == "0001_rolls_back" && keyword == "ROLLBACK" && reason.contains("silently discard")),
        "{refusals:?}"
    );
    let nothing: bool = fx
        .admin(DB)
        .query_one("SELECT to_regclass('before_it') IS NULL AND to_regclass('early') IS NULL", &[])
        .unwrap()
        .get(0);
    assert!(nothing, "refused before anything ran");
    assert!(fx.rows(DB).is_empty());
}

#[test]
fn eight_runners_at_once_apply_each_migration_exactly_once() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder
        .add("0000_counter", 1000, b"CREATE TABLE counter (n int);")
        .add("0001_data", 2000, b"INSERT INTO counter VALUES (1); SELECT pg_sleep(0.2);")
        .add("0002_more", 3000, b"INSERT INTO counter VALUES (2);");
    let read = folder.read();
    let config = fx.config(DB);
    let results: Vec<anyhow::Result<drizzle::Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| drizzle::migrate_builtin(&config, &read, false, &mut drizzle::Silent)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let applied: Vec<usize> = results.into_iter().map(|r| r.unwrap().applied.len()).collect();
    assert_eq!(applied.iter().sum::<usize>(), 3, "{applied:?}");
    let counter: Vec<i32> =
        fx.admin(DB).query("SELECT n FROM counter ORDER BY n", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(counter, [1, 2]);
    assert_eq!(fx.rows(DB).len(), 3);
}

#[test]
fn a_waiting_runner_gives_up_after_its_timeout() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_a", 1000, b"SELECT 1;");
    let mut holder = fx.connect_as("app_migrator", DB);
    let key = fx.config(DB).table.lock_key();
    holder.query_one("SELECT pg_advisory_lock($1)", &[&key]).unwrap();
    let mut config = fx.config(DB);
    config.lock_wait = std::time::Duration::from_millis(600);
    struct Count(u32);
    impl drizzle::Progress for Count {
        fn waiting_for_lock(&mut self, holder: Option<i32>, _waited: std::time::Duration) {
            assert!(holder.is_some());
            self.0 += 1;
        }
    }
    let mut count = Count(0);
    let message = format!("{:#}", drizzle::migrate_builtin(&config, &folder.read(), false, &mut count).unwrap_err());
    assert!(message.contains("another migration run held the lock"), "{message}");
    assert!(count.0 >= 1, "the wait was visible");
    assert!(fx.rows(DB).is_empty());
}

#[test]
fn a_dry_run_lists_and_writes_nothing() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_a", 1000, b"CREATE TABLE a (id int);");
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &folder.read(), true, &mut drizzle::Silent).unwrap();
    assert!(outcome.dry_run);
    assert_eq!(outcome.applied, ["0000_a"]);
    let exists: bool =
        fx.admin(DB).query_one("SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL", &[]).unwrap().get(0);
    assert!(!exists);
}

#[test]
fn a_legacy_database_migrated_by_drizzle_kit_then_converted_re_applies_nothing() {
    let Some(kit) = crate::common::drizzle_kit() else { return };
    let fx = Fixture::bare();
    // Upstream's shape: app_user owns the database and runs drizzle-kit.
    testkit::legacy::roles_and_database(&fx.kit, DB);
    let output =
        crate::common::run_drizzle_kit(&kit, &fx.dsn("app_user", "password", DB), &crate::common::app_migrations());
    assert!(output.status.success(), "{}", crate::common::output_text(&output));
    let rows = fx.rows(DB);
    assert_eq!(rows.len(), 9);

    fx.provision(DB);
    let folder = drizzle::folder::read(&crate::common::app_migrations()).unwrap();
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &folder, false, &mut drizzle::Silent).unwrap();
    assert!(outcome.applied.is_empty());
    assert_eq!(fx.rows(DB), rows);
}
