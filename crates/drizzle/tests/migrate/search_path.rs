//! The runner's own statements run with `search_path` pinned to
//! `pg_catalog, pg_temp`; the migrations run with the search_path the
//! migrator's role and the database configure, as under drizzle-kit.

use crate::common::{Fixture, TestFolder};

const DB: &str = "path_test";

#[test]
fn migrations_see_the_migrators_configured_search_path() {
    let fx = Fixture::provisioned(DB);
    fx.admin(DB)
        .batch_execute(&format!("ALTER ROLE app_migrator IN DATABASE {DB} SET search_path = public, \"$user\""))
        .unwrap();
    let mut folder = TestFolder::new();
    folder.add("0000_path", 1000, b"CREATE TABLE \"seen_path\" AS SELECT current_setting('search_path') AS path;");
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    let path: String = fx.admin(DB).query_one("SELECT path FROM public.seen_path", &[]).unwrap().get(0);
    assert_eq!(path, "public, \"$user\"", "the migration ran with the role's search_path, not the runner's pin");
    fx.admin(DB).batch_execute(&format!("ALTER ROLE app_migrator IN DATABASE {DB} RESET search_path")).unwrap();
}

#[test]
fn a_migration_that_puts_public_first_cannot_steer_the_runners_own_statements() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    // Functions with the signatures of those the runner calls between and
    // after the migrations (the batch marker, the lock's release), searched
    // first for the rest of the session.
    folder.add(
        "0000_hijack",
        1000,
        b"CREATE TABLE \"note\" (\"id\" serial PRIMARY KEY, \"body\" text);--> statement-breakpoint\n\
          CREATE FUNCTION public.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: unlock'; END $$;--> statement-breakpoint\n\
          CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: current_setting'; END $$;--> statement-breakpoint\n\
          SET search_path = public, pg_catalog;",
    );
    folder.add("0001_after", 2000, b"CREATE TABLE \"later\" (\"id\" int);");
    let outcome = drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent);
    let outcome = outcome.unwrap_or_else(|e| panic!("the runner ran a migrator's function: {e:#}"));
    assert_eq!(outcome.applied, ["0000_hijack", "0001_after"]);
    assert_eq!(fx.rows(DB).len(), 2, "both recorded");
    // The lock was released by the real function: another run takes it.
    assert!(drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent)
        .unwrap()
        .applied
        .is_empty());
}
