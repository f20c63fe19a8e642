//! The admin's sessions are not the migrator's to steer: whoever can ship a
//! migration must not become superuser at the next `db-provision` through a
//! function that shadows a built-in one (CVE-2018-1058's class).

use crate::common::{Fixture, DB};

/// A function that makes the migrator superuser when a superuser calls it,
/// then answers as the built-in would.
fn escalating(signature: &str, returns: &str, body: &str) -> String {
    format!(
        "CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS $$ BEGIN \
           IF pg_catalog.current_setting('is_superuser') = 'on' THEN EXECUTE 'ALTER ROLE app_migrator SUPERUSER'; END IF; \
           RETURN {body}; END $$"
    )
}

fn migrator_is_superuser(fx: &Fixture) -> bool {
    fx.admin("postgres").query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'app_migrator'", &[]).unwrap().get(0)
}

#[test]
fn a_quote_ident_for_names_never_runs_in_the_admins_session() {
    let fx = Fixture::new();
    fx.provision();
    // An exacter argument type wins even with pg_catalog searched first.
    fx.migrator().batch_execute(&escalating("quote_ident(name)", "text", "pg_catalog.quote_ident($1::text)")).unwrap();
    // An RLS table and a view over it that the runtime role owns: the
    // conversion reads the owner's-rights paths, whose query quotes the
    // names of the RLS tables a view reads.
    fx.admin(DB)
        .batch_execute(
            "CREATE TABLE public.legacy (id int); ALTER TABLE public.legacy ENABLE ROW LEVEL SECURITY; \
             CREATE VIEW public.legacy_view AS SELECT id FROM public.legacy; \
             ALTER TABLE public.legacy OWNER TO app_user; ALTER VIEW public.legacy_view OWNER TO app_user",
        )
        .unwrap();
    // PostgreSQL 13/14 refuse to convert the view (no security_invoker),
    // after reading the catalogs: the read is what matters here.
    let outcome = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet);
    assert!(!migrator_is_superuser(&fx), "db-provision ran the migrator's quote_ident as the admin");
    if outcome.is_ok() {
        let owner: String = fx
            .admin(DB)
            .query_one(
                "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.legacy'::regclass",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(owner, "app_migrator", "the conversion still happened");
    }
}

#[test]
fn a_database_search_path_default_never_steers_the_admins_session() {
    let fx = Fixture::new();
    fx.provision();
    // The migrator owns the database, so it may set the database's defaults:
    // public first, and a function of the very signature the snapshot calls.
    let mut migrator = fx.migrator();
    migrator.batch_execute(&format!("ALTER DATABASE {DB} SET search_path = public, pg_catalog")).unwrap();
    migrator.batch_execute(&escalating("pg_get_userbyid(oid)", "name", "pg_catalog.pg_get_userbyid($1)")).unwrap();
    fx.provision();
    assert!(!migrator_is_superuser(&fx), "db-provision ran the migrator's pg_get_userbyid as the admin");
    // Dry runs read the same catalogs.
    roles::provision(&fx.settings(), &roles::Options { dry_run: true, ..Default::default() }, &mut roles::Quiet)
        .unwrap();
    assert!(!migrator_is_superuser(&fx));
}

#[test]
fn scram_verifiers_stay_out_of_pg_stat_statements() {
    // Debian's PostgreSQL (the default run) ships the module; a build of the
    // version matrix may not, and a cluster that preloads a missing library
    // does not start.
    let shipped: bool = Fixture::new()
        .admin("postgres")
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')", &[])
        .unwrap()
        .get(0);
    if !shipped {
        eprintln!("pg_stat_statements is not part of this PostgreSQL build: nothing to keep verifiers out of");
        return;
    }
    let mut fx = Fixture::with_settings(&[("shared_preload_libraries", "pg_stat_statements")]);
    let mut admin = fx.admin("postgres");
    admin.batch_execute("CREATE EXTENSION pg_stat_statements").unwrap();
    fx.provision();
    // A rotation: the roles exist and get new verifiers.
    fx.passwords[1] = "a new runtime password".into();
    let outcome = fx.provision();
    let rotates = outcome
        .plan
        .steps_of(roles::Phase::Roles)
        .any(|s| s.statements.iter().any(|q| q.to_string().contains("PASSWORD")));
    assert!(rotates, "the plan rotates a password");
    let recorded: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_statements WHERE query ILIKE '%SCRAM-SHA-256$%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0, "a SCRAM verifier reached pg_stat_statements");
    // The check is not vacuous: statements of other sessions are recorded.
    admin.batch_execute("ALTER ROLE app_service CONNECTION LIMIT 7").unwrap();
    let others: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_statements WHERE query ILIKE '%CONNECTION LIMIT%'", &[])
        .unwrap()
        .get(0);
    assert!(others > 0);
}
