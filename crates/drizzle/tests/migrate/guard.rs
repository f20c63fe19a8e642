//! The migration guard on live servers, with both engines: a pending
//! migration that would undo the model is refused before anything runs
//! (nothing applied, nothing recorded), naming the migration, the line,
//! the statement and the fix; a `[[migration]]` entry lets a reviewed
//! statement through; an entry that matches nothing is said; every
//! real-world fixture set still applies (the realworld tests).

use std::cell::RefCell;

use drizzle::guard::Problem;
use drizzle::Refusal;

use crate::common::{drizzle_kit, refused, repo_root, Fixture, TestFolder};

/// A folder: a harmless first migration, then `sql` as `0001_change`.
fn folder(sql: &str) -> TestFolder {
    let mut folder = TestFolder::new();
    folder.add("0000_notes", 1000, b"CREATE TABLE \"notes\" (\"id\" int);");
    folder.add("0001_change", 2000, sql.as_bytes());
    folder.write_journal();
    folder
}

fn problems(refusals: &[Refusal]) -> Vec<(usize, Problem)> {
    refusals
        .iter()
        .map(|r| match r {
            Refusal::Guarded(f) => {
                assert_eq!(f.tag, "0001_change");
                (f.line, f.problem.clone())
            }
            other => panic!("not the guard's: {other}"),
        })
        .collect()
}

/// A statement of each first class, and two that are none.
const EACH_CLASS: &str = "GRANT app_migrator TO app_user;\n--> statement-breakpoint\n\
    ALTER TABLE notes OWNER TO app_user;\n--> statement-breakpoint\n\
    SET ROLE app_user;\n--> statement-breakpoint\n\
    DO $$ BEGIN EXECUTE 'CREATE ROLE intruder'; END $$;\n--> statement-breakpoint\n\
    SELECT 'CREATE ROLE x' /* DROP ROLE y */;\n--> statement-breakpoint\n\
    DO $$ BEGIN EXECUTE 'ALTER ROLE ' || 'app_user BYPASSRLS'; END $$;";

fn assert_each_class(found: &[(usize, Problem)]) {
    assert_eq!(found.len(), 5, "{found:?}");
    assert_eq!(found[0], (1, Problem::Membership { grant: true }));
    assert_eq!(found[1], (3, Problem::Owner { statement: "OWNER TO", to: "app_user".into() }));
    assert_eq!(found[2], (5, Problem::ActAs { statement: "SET ROLE".into() }));
    assert_eq!(found[3], (7, Problem::RoleStatement { statement: "CREATE ROLE" }));
    assert!(matches!(&found[4], (11, Problem::Unverifiable { what }) if what.contains("dynamic SQL")), "{found:?}");
}

#[test]
fn each_class_is_refused_before_anything_runs() {
    let fx = Fixture::provisioned("app");
    let folder = folder(EACH_CLASS);
    let refusals = refused(&fx.config("app"), &folder.read());
    assert_each_class(&problems(&refusals));
    let text = refusals[0].to_string();
    assert!(text.starts_with("`0001_change` line 1: `GRANT app_migrator TO app_user`"), "{text}");
    assert!(text.contains("[[migration]] tag = \"0001_change\", fingerprint = \""), "{text}");
    assert!(fx.rows("app").is_empty(), "not even 0000 ran");
    let tables: i64 =
        fx.admin("app").query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'notes'", &[]).unwrap().get(0);
    assert_eq!(tables, 0);
}

/// The refusals of the drizzle-kit engine, which must not have started it.
fn kit_refusals(fx: &Fixture, folder: &TestFolder) -> Vec<Refusal> {
    let package = repo_root().join("platform/db");
    let node = drizzle::kit::Node { package: &package, search_path: std::env::var_os("PATH").unwrap_or_default() };
    let started = RefCell::new(false);
    let error = drizzle::kit::migrate_with_drizzle_kit(
        &fx.config("app"),
        &folder.read(),
        &node,
        &mut drizzle::Silent,
        &mut |_| *started.borrow_mut() = true,
    )
    .unwrap_err();
    assert!(!*started.borrow(), "drizzle-kit was not started");
    error.downcast_ref::<drizzle::Refused>().unwrap_or_else(|| panic!("{error:#}")).refusals.clone()
}

#[test]
fn the_drizzle_kit_engine_is_refused_the_same_and_never_started() {
    let Some(_kit) = drizzle_kit() else { return };
    let fx = Fixture::provisioned("app");
    let folder = folder(&format!("{EACH_CLASS}\n--> statement-breakpoint\nALTER TABLE notes OWNER TO SESSION_USER;"));
    let refusals = kit_refusals(&fx, &folder);
    let found = problems(&refusals);
    assert_each_class(&found[..5]);
    assert_eq!(found[5..], [(13, Problem::Owner { statement: "OWNER TO", to: "SESSION_USER".into() })]);
    assert!(fx.rows("app").is_empty());
}

/// The classes that need the live catalog or the whole migration, refused
/// by both engines before anything runs.
const MODEL_UNDONE: &str = "CREATE POLICY \"own\" ON \"notes\" TO app_user USING (true);\n--> statement-breakpoint\n\
    ALTER TABLE \"notes\" DISABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
    GRANT TRUNCATE ON \"notes\" TO app_user;\n--> statement-breakpoint\n\
    GRANT CREATE ON SCHEMA public TO PUBLIC;\n--> statement-breakpoint\n\
    CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;\n--> statement-breakpoint\n\
    CREATE FUNCTION public.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT current_user::text $$;\n\
    --> statement-breakpoint\n\
    ALTER DATABASE app SET search_path = public, pg_catalog;";

fn assert_model_undone(found: &[(usize, Problem)]) {
    let kinds: Vec<(usize, &str)> = found
        .iter()
        .map(|(line, p)| {
            let kind = match p {
                Problem::RlsOff { table, force: false } if table == "notes" => "rls",
                Problem::Grant { privileges, to, .. } if privileges == "TRUNCATE" && to == "app_user" => "truncate",
                Problem::Grant { privileges, on, to, .. }
                    if privileges == "CREATE" && on == "SCHEMA" && to == "PUBLIC" =>
                {
                    "create"
                }
                // The live catalog has pg_catalog.quote_ident(text).
                Problem::Shadow { what } if what.contains("public.quote_ident(name)") => "shadow",
                Problem::Definer { function } if function == "public.whoami" => "definer",
                Problem::SearchPath { first, .. } if first == "public" => "search_path",
                other => panic!("{other:?}"),
            };
            (*line, kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [(3, "rls"), (5, "truncate"), (7, "create"), (9, "shadow"), (11, "definer"), (13, "search_path")],
        "{found:?}"
    );
}

#[test]
fn what_needs_the_catalog_or_the_whole_migration_is_refused_by_the_builtin_engine() {
    let fx = Fixture::provisioned("app");
    let folder = folder(MODEL_UNDONE);
    assert_model_undone(&problems(&refused(&fx.config("app"), &folder.read())));
    assert!(fx.rows("app").is_empty(), "nothing ran");
}

#[test]
fn what_needs_the_catalog_or_the_whole_migration_is_refused_by_the_drizzle_kit_engine() {
    let Some(_kit) = drizzle_kit() else { return };
    let fx = Fixture::provisioned("app");
    let folder = folder(MODEL_UNDONE);
    let refusals = kit_refusals(&fx, &folder);
    assert_model_undone(&problems(&refusals));
    assert!(fx.rows("app").is_empty());
}

/// What an applied migration left in the catalog counts: a partition of a
/// table with policies (read directly, the parent's policies do not apply),
/// and the roles holding CONNECT as runtime roles when the env names none.
#[test]
fn the_catalogs_policies_partitions_and_runtime_roles_count() {
    let fx = Fixture::provisioned("app");
    let mut folder = TestFolder::new();
    folder.add(
        "0000_notes",
        1000,
        b"CREATE TABLE \"notes\" (\"id\" int, \"y\" int) PARTITION BY LIST (\"y\");\n--> statement-breakpoint\n\
          CREATE TABLE \"notes_2026\" PARTITION OF \"notes\" FOR VALUES IN (2026);\n--> statement-breakpoint\n\
          ALTER TABLE \"notes\" ENABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
          CREATE POLICY \"own\" ON \"notes\" TO app_user USING (true);",
    );
    folder.write_journal();
    let mut config = fx.config("app");
    drizzle::migrate_builtin(&config, &folder.read(), false, &mut drizzle::Silent).unwrap();
    folder.add(
        "0001_change",
        2000,
        b"ALTER TABLE \"notes_2026\" DISABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
          GRANT TRIGGER ON \"notes\" TO app_service;",
    );
    folder.write_journal();
    // A deploy whose env names the migrator alone.
    config.runtime_users.clear();
    let found = problems(&refused(&config, &folder.read()));
    assert_eq!(
        found,
        [
            (1, Problem::RlsOff { table: "notes_2026".into(), force: false }),
            (
                3,
                Problem::Grant {
                    statement: "GRANT",
                    privileges: "TRIGGER".into(),
                    on: "TABLE".into(),
                    to: "app_service".into()
                }
            ),
        ]
    );
}

/// What real projects write passes and runs: RLS off to seed rows and on
/// again, a definer function with its search_path, one kept from PUBLIC,
/// a function of pg_catalog's exact signature.
#[test]
fn seeding_with_rls_off_and_safe_definer_functions_run() {
    let fx = Fixture::provisioned("app");
    let folder = folder(
        "ALTER TABLE \"notes\" ENABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
         CREATE POLICY \"own\" ON \"notes\" TO app_user USING (true);\n--> statement-breakpoint\n\
         ALTER TABLE \"notes\" DISABLE ROW LEVEL SECURITY;\nINSERT INTO \"notes\" VALUES (1);\n\
         ALTER TABLE \"notes\" ENABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
         CREATE FUNCTION public.tenant() RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = '' \
         AS $$ SELECT current_setting('app.tenant', true) $$;\n--> statement-breakpoint\n\
         CREATE FUNCTION public.owner_only() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;\n\
         REVOKE EXECUTE ON FUNCTION public.owner_only() FROM PUBLIC;\n--> statement-breakpoint\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON \"notes\" TO app_user;",
    );
    let outcome = drizzle::migrate_builtin(&fx.config("app"), &folder.read(), false, &mut drizzle::Silent).unwrap();
    assert_eq!(outcome.applied, ["0000_notes", "0001_change"]);
    let enabled: bool =
        fx.admin("app").query_one("SELECT relrowsecurity FROM pg_class WHERE relname = 'notes'", &[]).unwrap().get(0);
    assert!(enabled);
}

/// Notes the run said.
#[derive(Default)]
struct Notes(Vec<String>);

impl drizzle::Progress for Notes {
    fn note(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
}

#[test]
fn a_reviewed_statement_runs_and_an_entry_that_matches_nothing_is_said() {
    let fx = Fixture::provisioned("app");
    // Runnable, and refused until reviewed: the migrator acting as itself.
    let folder = folder("CREATE TABLE \"extra\" (\"id\" int);\n--> statement-breakpoint\nSET LOCAL ROLE app_migrator;");
    let mut config = fx.config("app");
    let refusals = refused(&config, &folder.read());
    let Refusal::Guarded(finding) = &refusals[0] else { panic!("{refusals:?}") };
    assert_eq!(finding.line, 3);
    config.policy = roles::Exemptions::parse(&format!(
        "[[migration]]\ntag = \"0001_change\"\nfingerprint = \"{}\"\nreason = \"the migrator as itself\"\n\n\
         [[migration]]\ntag = \"0001_change\"\nline = 1\nreason = \"names a statement the guard lets through\"\n\n\
         [[migration]]\ntag = \"0099_gone\"\nline = 4\nreason = \"a migration that was removed\"\n",
        finding.fingerprint
    ))
    .unwrap();
    let mut notes = Notes::default();
    let outcome = drizzle::migrate_builtin(&config, &folder.read(), false, &mut notes).unwrap();
    assert_eq!(outcome.applied, ["0000_notes", "0001_change"]);
    assert_eq!(notes.0.len(), 2, "{:?}", notes.0);
    assert!(notes.0[0].contains("`0001_change` (line 1) matches no statement the guard refuses"), "{:?}", notes.0);
    assert!(notes.0[1].contains("`0099_gone` (line 4) names no migration of the folder"), "{:?}", notes.0);
}

#[test]
fn a_review_entry_without_a_statement_or_a_reason_is_an_error() {
    for (text, needle) in [
        ("[[migration]]\ntag = \"0001_x\"\nreason = \"r\"\n", "names no statement"),
        ("[[migration]]\ntag = \"0001_x\"\nline = 3\n", "has no `reason`"),
        ("[[migration]]\nline = 3\nreason = \"r\"\n", "has no `tag`"),
        ("[[migration]]\ntag = \"0001_x\"\nline = 0\nreason = \"r\"\n", "must be a line number"),
        ("[[migration]]\ntag = \"0001_x\"\nline = 3\nreason = \"r\"\nstatement = \"x\"\n", "unknown key `statement`"),
    ] {
        let error = format!("{:#}", roles::Exemptions::parse(text).unwrap_err());
        assert!(error.contains(needle), "{text}: {error}");
    }
}
