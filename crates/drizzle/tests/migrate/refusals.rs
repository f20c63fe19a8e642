//! What drizzle-kit gets silently wrong is refused, loudly and with the fix;
//! and the runner refuses to run as anyone but the migrator.

use drizzle::{Lack, NotTheMigrator, Refusal};
use roles::model::Attribute;

use crate::common::{Fixture, TestFolder};

const DB: &str = "app_test";

fn error(fx: &Fixture, folder: &TestFolder) -> String {
    let result = drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent);
    format!("{:#}", result.unwrap_err())
}

/// What the run stopped with before its first statement (nothing applied).
fn refused(fx: &Fixture, folder: &TestFolder) -> Vec<Refusal> {
    crate::common::refused(&fx.config(DB), &folder.read())
}

/// Why the run refused its DSN before anything ran.
fn not_the_migrator(config: &drizzle::Config, folder: &TestFolder) -> NotTheMigrator {
    let error = drizzle::migrate_builtin(config, &folder.read(), false, &mut drizzle::Silent).unwrap_err();
    match error.downcast_ref::<NotTheMigrator>() {
        Some(refused) => refused.clone(),
        None => panic!("not an identity refusal: {error:#}"),
    }
}

fn two_migrations() -> TestFolder {
    let mut folder = TestFolder::new();
    folder.add("0000_a", 1000, b"CREATE TABLE a (id int);\n").add("0001_b", 2000, b"CREATE TABLE b (id int);\n");
    folder
}

#[test]
fn an_edited_applied_migration_stops_the_run_unless_allowed() {
    let fx = Fixture::provisioned(DB);
    let mut folder = two_migrations();
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    std::fs::write(folder.path().join("0000_a.sql"), "CREATE TABLE a (id bigint);\n").unwrap();
    folder.add("0002_c", 3000, b"CREATE TABLE c (id int);");
    let refusals = refused(&fx, &folder);
    assert!(
        matches!(&refusals[..], [Refusal::Changed { tag, line_endings_only: false, .. }] if tag == "0000_a"),
        "{refusals:?}"
    );
    let mut config = fx.config(DB);
    config.allow_changed = true;
    let outcome = drizzle::migrate_builtin(&config, &folder.read(), false, &mut drizzle::Silent).unwrap();
    assert_eq!(outcome.applied, ["0002_c"]);
}

#[test]
fn a_line_ending_only_edit_is_named_as_such() {
    let fx = Fixture::provisioned(DB);
    let folder = two_migrations();
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    std::fs::write(folder.path().join("0001_b.sql"), "CREATE TABLE b (id int);\r\n").unwrap();
    let refusals = refused(&fx, &folder);
    assert!(
        matches!(&refusals[..], [Refusal::Changed { tag, line_endings_only: true, .. }] if tag == "0001_b"),
        "{refusals:?}"
    );
}

#[test]
fn an_out_of_order_entry_is_refused_not_skipped() {
    let fx = Fixture::provisioned(DB);
    let mut folder = two_migrations();
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    // A branch merged late: generated before 0001_b, listed after it.
    folder.add("0002_late", 1500, b"CREATE TABLE late (id int);");
    let refusals = refused(&fx, &folder);
    assert!(
        matches!(&refusals[..], [Refusal::OutOfOrder { tag, when: 1500, newest, .. }]
            if tag == "0002_late" && newest == "`0001_b`"),
        "{refusals:?}"
    );
    let missing: bool = fx.admin(DB).query_one("SELECT to_regclass('late') IS NULL", &[]).unwrap().get(0);
    assert!(missing);
}

#[test]
fn a_null_created_at_and_unknown_rows_are_refused() {
    let fx = Fixture::provisioned(DB);
    let folder = two_migrations();
    drizzle::migrate_builtin(&fx.config(DB), &folder.read(), false, &mut drizzle::Silent).unwrap();
    fx.connect_as("app_migrator", DB)
        .batch_execute(
            "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('deadbeef', NULL), ('cafe', 1700000000000)",
        )
        .unwrap();
    let refusals = refused(&fx, &folder);
    assert_eq!(
        refusals,
        [
            Refusal::NullCreatedAt { id: 3 },
            Refusal::UnknownRow { id: 4, created_at: 1_700_000_000_000, hash: "cafe".into() }
        ]
    );
}

#[test]
fn duplicate_tags_and_whens_are_refused() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_a", 1000, b"SELECT 1;").add("0001_b", 1000, b"SELECT 2;");
    let refusals = refused(&fx, &folder);
    assert_eq!(refusals, [Refusal::SameWhen { first: "0000_a".into(), second: "0001_b".into(), when: 1000 }]);
}

#[test]
fn the_runtime_dsn_is_refused_as_the_migrator_dsn() {
    let fx = Fixture::provisioned(DB);
    let folder = two_migrations();
    let runtime = fx.dsn("app_user", "password", DB).expose_url();

    // A full environment: the runtime role is named, so the mix-up is named.
    let mut vars = fx.vars(DB);
    vars.retain(|(k, _)| !k.starts_with("APP_DB_MIGRATOR") && k != "DATABASE_MIGRATOR_URL");
    vars.push(("DATABASE_MIGRATOR_URL".into(), runtime.clone()));
    let env = dbenv::EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let config = drizzle::Config::new(env.migration().unwrap());
    assert_eq!(
        not_the_migrator(&config, &folder),
        NotTheMigrator::RuntimeRole { user: "app_user".into(), var: "DATABASE_URL" }
    );

    // A migrator-only environment (the db-migrate container): the positive check.
    let env = dbenv::EnvVars::from_pairs([("DATABASE_MIGRATOR_URL", runtime.as_str())]);
    let config = drizzle::Config::new(env.migration().unwrap());
    let refused = not_the_migrator(&config, &folder);
    let NotTheMigrator::Lacks { user, lacks } = &refused else { panic!("{refused:?}") };
    assert_eq!(user, "app_user");
    assert_eq!(
        lacks[..3],
        [
            Lack::DatabaseOwner { database: "app_test".into() },
            Lack::SchemaOwner { schemas: vec!["public".into()] },
            Lack::Attribute(Attribute::BypassRls)
        ]
    );
    // The admin is refused too.
    let admin = fx.kit.server.admin_url(DB);
    let env = dbenv::EnvVars::from_pairs([("DATABASE_MIGRATOR_URL", admin.as_str())]);
    let config = drizzle::Config::new(env.migration().unwrap());
    assert!(matches!(not_the_migrator(&config, &folder), NotTheMigrator::Superuser { .. }));
    assert!(fx.rows(DB).is_empty());
}

#[test]
fn no_migrator_dsn_is_an_error_not_a_fallback() {
    let fx = Fixture::provisioned(DB);
    let mut vars = fx.vars(DB);
    vars.retain(|(k, _)| k != "DATABASE_MIGRATOR_URL");
    let env = dbenv::EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let message = format!("{:#}", env.migration().unwrap_err());
    assert!(
        message.contains(
            "DATABASE_MIGRATOR_URL is not set: migrations run only as the migrator role, never with DATABASE_URL"
        ),
        "{message}"
    );
}

#[test]
fn drizzle_kit_1_layouts_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("20260101000000_init")).unwrap();
    std::fs::write(dir.path().join("20260101000000_init/migration.sql"), "CREATE TABLE a (id int);").unwrap();
    let message = format!("{:#}", drizzle::folder::read(dir.path()).unwrap_err());
    assert!(message.contains("drizzle-kit 1.0's layout (one folder per migration"), "{message}");

    let fx = Fixture::provisioned(DB);
    fx.connect_as("app_migrator", DB)
        .batch_execute(
            "CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint, \
                                                        name text, applied_at timestamptz)",
        )
        .unwrap();
    let message = error(&fx, &two_migrations());
    assert!(message.contains("has drizzle-kit 1.0's columns (`name`)"), "{message}");
    assert!(fx.rows(DB).is_empty(), "no row without `name` was written");
}

#[test]
fn an_extension_the_server_does_not_have_is_refused_before_anything_runs() {
    let fx = Fixture::provisioned(DB);
    let mut folder = TestFolder::new();
    folder.add("0000_t", 500, b"CREATE TABLE t (id int);").add(
        "0001_ext",
        1000,
        b"-- needs a package\nCREATE EXTENSION IF NOT EXISTS \"no_such_extension\";",
    );
    let refusals = refused(&fx, &folder);
    let missing = Refusal::MissingExtension { tag: "0001_ext".into(), line: 2, name: "no_such_extension".into() };
    assert_eq!(refusals, [missing]);
    assert!(refusals[0].to_string().contains("install its package on the server"), "the fix: {}", refusals[0]);
    assert!(fx.rows(DB).is_empty(), "nothing was applied");
}
