//! The real-world fixture sets (`tests/fixtures/realworld`), each applied by
//! this runner and by the real drizzle-kit with identical bookkeeping rows
//! and an identical schema, and switched between the two halfway through in
//! both directions.

use std::path::Path;

use crate::common::{drizzle_kit, output_text, realworld, run_drizzle_kit, Fixture, TestFolder};

/// Applies `set` four ways on one cluster: this runner alone, drizzle-kit
/// alone, drizzle-kit then this runner, this runner then drizzle-kit; all
/// four end with the same rows and schema.
fn four_ways(set: &str, extra: &[(&str, &str)]) {
    let Some(kit) = drizzle_kit() else { return };
    let dir = realworld(set);
    let all = drizzle::folder::read(&dir).unwrap();
    let half = all.migrations.len().div_ceil(2);
    let first_half = TestFolder::copy_of(&dir, Some(half));
    let fx = Fixture::bare();
    for db in ["ours", "theirs", "kit_first", "ours_first"] {
        fx.provision_with(db, extra);
    }
    let ours = |db: &str, folder: &drizzle::Folder| {
        drizzle::migrate_builtin(&fx.config_with(db, extra), folder, false, &mut drizzle::Silent)
            .unwrap_or_else(|e| panic!("{set} on {db}: {e:#}"))
    };
    let theirs = |db: &str, folder: &Path| {
        let output = run_drizzle_kit(&kit, &fx.config_with(db, extra).dsn, folder);
        assert!(output.status.success(), "{set}: drizzle-kit on {db}: {}", output_text(&output));
    };
    ours("ours", &all);
    theirs("theirs", &dir);
    theirs("kit_first", first_half.path());
    assert_eq!(fx.rows("kit_first").len(), half);
    assert_eq!(ours("kit_first", &all).applied.len(), all.migrations.len() - half);
    ours("ours_first", &first_half.read());
    theirs("ours_first", &dir);

    let reference = fx.rows("theirs");
    assert_eq!(reference.len(), all.migrations.len(), "{set}");
    let schema = fx.schema_fingerprint("theirs");
    for db in ["ours", "kit_first", "ours_first"] {
        assert_eq!(fx.rows(db), reference, "{set}: the rows of {db}");
        assert_eq!(fx.schema_fingerprint(db), schema, "{set}: the schema of {db}");
    }
    // Nothing is left for either tool.
    assert!(ours("ours", &all).applied.is_empty());
    theirs("ours", &dir);
    assert_eq!(fx.rows("ours"), reference);
}

#[test]
fn migrations_that_end_the_transaction_match_drizzle_kit_four_ways() {
    four_ways("commit-batch", &[]);
}

#[test]
fn a_set_that_creates_its_own_schema_matches_drizzle_kit_four_ways() {
    four_ways("own-schema", &[("APP_DB_SCHEMAS", "app")]);
}

#[test]
fn an_app_without_rls_matches_drizzle_kit_four_ways() {
    four_ways("no-rls", &[]);
}

#[test]
fn an_admin_only_extension_matches_drizzle_kit_once_provisioning_created_it() {
    four_ways("extension", &[("APP_DB_EXTENSIONS", "earthdistance")]);
}

#[test]
fn an_admin_only_extension_not_in_app_db_extensions_is_named_before_anything_runs() {
    let Some(kit) = drizzle_kit() else { return };
    let dir = realworld("extension");
    let fx = Fixture::bare();
    fx.provision("ours");
    fx.provision("theirs");
    let folder = drizzle::folder::read(&dir).unwrap();
    let refusals = crate::common::refused(&fx.config("ours"), &folder);
    assert!(
        matches!(&refusals[..], [drizzle::Refusal::UntrustedExtension { name, .. }] if name == "earthdistance"),
        "{refusals:?}"
    );
    assert!(refusals[0].to_string().contains("APP_DB_EXTENSIONS"), "the fix: {}", refusals[0]);
    assert!(fx.rows("ours").is_empty(), "nothing was applied");
    // drizzle-kit fails on it (and 0.31.10+ says nothing).
    let output = run_drizzle_kit(&kit, &fx.config("theirs").dsn, &dir);
    assert!(!output.status.success(), "{}", output_text(&output));
}

#[test]
fn the_schema_a_migration_creates_is_left_to_it_and_granted_after() {
    let fx = Fixture::bare();
    let extra = [("APP_DB_SCHEMAS", "app")];
    fx.provision_with("db", &extra);
    let exists: bool = fx.admin("db").query_one("SELECT to_regnamespace('app') IS NOT NULL", &[]).unwrap().get(0);
    assert!(!exists, "provisioning left the schema to the migrations");
    let folder = drizzle::folder::read(&realworld("own-schema")).unwrap();
    let outcome =
        drizzle::migrate_builtin(&fx.config_with("db", &extra), &folder, false, &mut drizzle::Silent).unwrap();
    assert!(outcome.granted.iter().any(|g| g.contains("GRANT USAGE ON SCHEMA app TO \"app_user\"")), "{outcome:?}");
    assert!(outcome.granted.iter().any(|g| g.starts_with("ALTER DEFAULT PRIVILEGES IN SCHEMA app ")), "{outcome:?}");
    let mut app = fx.connect_as("app_user", "db");
    app.batch_execute(
        "SELECT * FROM app.post WHERE false; INSERT INTO app.session SELECT * FROM app.session WHERE false",
    )
    .unwrap();
    // A table a later migration adds is reachable through the default privileges.
    fx.connect_as("app_migrator", "db").batch_execute("CREATE TABLE app.later (id int)").unwrap();
    app.batch_execute("SELECT * FROM app.later").unwrap();
    // Provisioning now finds the schema and nothing to change but what the
    // migrations already did.
    let settings = dbenv::Settings::from_env(&fx.env_with("db", &extra)).unwrap();
    let outcome = roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).unwrap();
    assert!(outcome.plan.is_empty(), "{:?}", outcome.plan.steps.iter().map(|s| &s.summary).collect::<Vec<_>>());
}

#[test]
fn an_enum_value_added_after_a_commit_matches_drizzle_kit_four_ways() {
    four_ways("enum-after-commit", &[]);
}

/// After a migration's `COMMIT`, the rest runs outside a transaction, as
/// drizzle-kit runs it: even a later migration that adds an enum value and
/// uses it at once applies, with each row written after its last statement.
#[test]
fn after_a_commit_the_rest_runs_as_drizzle_kit_runs_it() {
    let Some(kit) = drizzle_kit() else { return };
    let source = realworld("enum-after-commit");
    let mut folder = TestFolder::copy_of(&source, None);
    folder.add(
        "0005_enterprise",
        1_900_000_000_000,
        b"ALTER TYPE \"public\".\"plan_tier\" ADD VALUE 'enterprise';--> statement-breakpoint\nUPDATE \"account\" SET \"tier\" = 'enterprise' WHERE \"email\" LIKE '%@corp.example';",
    );
    let fx = Fixture::bare();
    fx.provision("ours");
    fx.provision("theirs");
    let outcome = drizzle::migrate_builtin(&fx.config("ours"), &folder.read(), false, &mut drizzle::Silent)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let output = run_drizzle_kit(&kit, &fx.config("theirs").dsn, folder.path());
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(fx.rows("ours"), fx.rows("theirs"));
    assert_eq!(fx.rows("ours").len(), 6);
    assert_eq!(fx.schema_fingerprint("ours"), fx.schema_fingerprint("theirs"));
    // What the run says about it: one transaction (0000 and 0001 up to its
    // COMMIT), and the migrations from 0001 on outside any.
    assert_eq!(outcome.transactions, 1, "{outcome:?}");
    assert_eq!(
        outcome.outside,
        ["0001_email_index", "0002_team_tier", "0003_seat_tier", "0004_invoice", "0005_enterprise"]
    );
}

/// An enum value added in one migration and used by later ones of the same
/// batch, on a database where the type already exists: drizzle-kit fails
/// (55P04) and applies nothing; the runner commits after the migration that
/// adds the value and applies the set, ending where drizzle-kit ends when
/// it is run once per migration.
#[test]
fn an_enum_value_added_and_used_in_one_batch_applies_where_drizzle_kit_fails() {
    let Some(kit) = drizzle_kit() else { return };
    let dir = realworld("enum-batch");
    let all = drizzle::folder::read(&dir).unwrap();
    let first = TestFolder::copy_of(&dir, Some(1));
    let fx = Fixture::bare();
    for db in ["ours", "theirs", "steps"] {
        fx.provision(db);
    }
    for db in ["ours", "theirs"] {
        let output = run_drizzle_kit(&kit, &fx.config(db).dsn, first.path());
        assert!(output.status.success(), "{}", output_text(&output));
    }
    let output = run_drizzle_kit(&kit, &fx.config("theirs").dsn, &dir);
    assert!(!output.status.success(), "drizzle-kit applies the batch in one transaction: {}", output_text(&output));
    assert_eq!(fx.rows("theirs").len(), 1, "and none of it stays");

    let outcome = drizzle::migrate_builtin(&fx.config("ours"), &all, false, &mut drizzle::Silent)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(outcome.applied.len(), 4);
    assert_eq!(outcome.transactions, 2, "committed after 0001 adds the value: {outcome:?}");
    assert_eq!(outcome.committed_for_enum, ["0001_triaged"]);
    assert!(outcome.outside.is_empty());

    for count in 1..=all.migrations.len() {
        let step = TestFolder::copy_of(&dir, Some(count));
        let output = run_drizzle_kit(&kit, &fx.config("steps").dsn, step.path());
        assert!(output.status.success(), "step {count}: {}", output_text(&output));
    }
    assert_eq!(fx.rows("ours"), fx.rows("steps"));
    assert_eq!(fx.schema_fingerprint("ours"), fx.schema_fingerprint("steps"));
}

/// Plain `drizzle-kit migrate` (a project's own `db:migrate` script) applies
/// a set that creates its own schema: the next `db-migrate` has nothing to
/// apply and still grants the runtime roles their access there; a run after
/// that sends nothing, and so passes on a read-only session.
#[test]
fn grants_converge_after_drizzle_kit_applied_the_migrations() {
    let Some(kit) = drizzle_kit() else { return };
    let extra = [("APP_DB_SCHEMAS", "app")];
    let fx = Fixture::bare();
    fx.provision_with("db", &extra);
    let config = fx.config_with("db", &extra);
    let dir = realworld("own-schema");
    let output = run_drizzle_kit(&kit, &config.dsn, &dir);
    assert!(output.status.success(), "{}", output_text(&output));
    let mut app = fx.connect_as("app_user", "db");
    let denied = app.batch_execute("SELECT * FROM app.post WHERE false").unwrap_err();
    assert_eq!(denied.code().unwrap().code(), "42501", "drizzle-kit granted nothing");

    let folder = drizzle::folder::read(&dir).unwrap();
    let outcome = drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap();
    assert!(outcome.applied.is_empty());
    assert!(outcome.granted.iter().any(|g| g.contains("GRANT USAGE ON SCHEMA app TO \"app_user\"")), "{outcome:?}");
    app.batch_execute("SELECT * FROM app.post WHERE false").unwrap();

    fx.admin("db").batch_execute("ALTER ROLE app_migrator SET default_transaction_read_only = on").unwrap();
    let outcome =
        drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(outcome.granted.is_empty() && outcome.applied.is_empty(), "{outcome:?}");
    // The read-only session is real: a missing grant now cannot be sent.
    fx.admin("db").batch_execute("REVOKE SELECT ON app.post FROM app_user").unwrap();
    let error = format!("{:#}", drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap_err());
    assert!(error.contains("read-only transaction"), "{error}");
}

/// A batch drizzle-kit applies in one transaction although one of its
/// migrations adds an enum value (no later one uses it in the batch) stays
/// one transaction: a deferred foreign key that a later migration satisfies
/// is checked at the one commit, as under drizzle-kit.
#[test]
fn an_enum_value_nobody_uses_in_the_batch_keeps_it_one_transaction() {
    let Some(kit) = drizzle_kit() else { return };
    let mut first = TestFolder::new();
    first.add(
        "0000_init",
        1000,
        b"CREATE TYPE \"public\".\"kind\" AS ENUM('a');--> statement-breakpoint\nCREATE TABLE \"parent\" (\"id\" int PRIMARY KEY, \"kind\" \"kind\");--> statement-breakpoint\nCREATE TABLE \"child\" (\"parent_id\" int REFERENCES \"parent\" (\"id\") DEFERRABLE INITIALLY DEFERRED);",
    );
    let mut all = TestFolder::copy_of(first.path(), None);
    all.add("0001_child", 2000, b"INSERT INTO \"child\" VALUES (1);")
        .add("0002_kind", 3000, b"ALTER TYPE \"public\".\"kind\" ADD VALUE 'b';")
        .add("0003_parent", 4000, b"INSERT INTO \"parent\" VALUES (1, 'a');");
    let fx = Fixture::bare();
    fx.provision("ours");
    fx.provision("theirs");
    for db in ["ours", "theirs"] {
        let output = run_drizzle_kit(&kit, &fx.config(db).dsn, first.path());
        assert!(output.status.success(), "{}", output_text(&output));
    }
    let output = run_drizzle_kit(&kit, &fx.config("theirs").dsn, all.path());
    assert!(output.status.success(), "{}", output_text(&output));
    let outcome = drizzle::migrate_builtin(&fx.config("ours"), &all.read(), false, &mut drizzle::Silent)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(outcome.transactions, 1, "{outcome:?}");
    assert!(outcome.committed_for_enum.is_empty());
    assert_eq!(fx.rows("ours"), fx.rows("theirs"));
    assert_eq!(fx.schema_fingerprint("ours"), fx.schema_fingerprint("theirs"));
}
