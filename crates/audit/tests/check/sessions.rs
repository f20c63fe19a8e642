//! `db-check` cannot be made to lie by the migrator it watches: its
//! sessions are pinned to `pg_catalog, pg_temp`, and it names what could
//! steer anybody else's unpinned SQL (search_path defaults that put a schema
//! before pg_catalog, functions and operators named like built-ins).

use crate::common::{assert_caught, catalog_failures, probe_failures, Fixture};
use audit::checks::CheckId;

#[test]
fn a_search_path_default_and_a_lying_privilege_function_do_not_fool_the_check() {
    let fx = Fixture::migrated();
    assert!(fx.check().holds());
    let mut migrator = fx.migrator();
    // The lie: TRUNCATE granted, and a has_table_privilege(oid, text) that
    // admits to DML only, searched first by every session in the database.
    migrator
        .batch_execute(&format!(
            "GRANT TRUNCATE ON public.users TO app_user; \
             CREATE FUNCTION public.has_table_privilege(oid, text) RETURNS boolean LANGUAGE sql \
               AS $$ SELECT $2 = ANY (ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) $$; \
             ALTER DATABASE {} SET search_path = public, pg_catalog",
            crate::common::DB
        ))
        .unwrap();
    let report = fx.check();
    let extra = probe_failures(&report, "no-extra-table-privileges");
    assert!(
        extra.iter().any(|f| f.starts_with("app_user") && f.contains("public.users")),
        "the probe asked the real has_table_privilege: {extra:?}\n{}",
        report.to_text()
    );
    assert_caught(&report, CheckId::SearchPath, "search_path = public, pg_catalog searches public before pg_catalog");
    assert_caught(&report, CheckId::SearchPath, "public.has_table_privilege(oid,text)");
}

#[test]
fn functions_and_operators_named_like_built_ins_are_named() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$; \
             CREATE FUNCTION public.name_eq_text(name, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$; \
             CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.name_eq_text)",
        )
        .unwrap();
    let report = fx.check();
    assert_caught(&report, CheckId::SearchPath, "public.quote_ident(name): a function named like the built-in");
    assert_caught(&report, CheckId::SearchPath, "public.=(name, text): an operator named like the built-in");
    // A function of its own name is nobody's shadow.
    let found = catalog_failures(&report, CheckId::SearchPath);
    assert!(!found.iter().any(|f| f.contains("name_eq_text")), "{found:?}");
}

#[test]
fn a_shadow_the_migrator_adds_to_its_own_extension_is_still_named() {
    let fx = Fixture::migrated();
    // pg_trgm is trusted: the migrator (the database's owner) may create it,
    // owns the extension, and may add its own function to it.
    fx.migrator()
        .batch_execute(
            "CREATE EXTENSION pg_trgm SCHEMA public; \
             CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$; \
             ALTER EXTENSION pg_trgm ADD FUNCTION public.quote_ident(name)",
        )
        .unwrap();
    let report = fx.check();
    assert_caught(&report, CheckId::SearchPath, "public.quote_ident(name): a function named like the built-in");
    // The extension's own members (similarity, %, …) are not named.
    let found = catalog_failures(&report, CheckId::SearchPath);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn a_leakproof_function_that_is_not_built_in_is_named() {
    let fx = Fixture::migrated();
    // Only a superuser marks a function LEAKPROOF; this one would show every
    // value RLS hides, before the policy filters it.
    fx.admin()
        .batch_execute(
            "CREATE FUNCTION public.tell(text) RETURNS boolean LEAKPROOF LANGUAGE plpgsql \
               AS $$ BEGIN RAISE NOTICE '%', $1; RETURN true; END $$",
        )
        .unwrap();
    let report = fx.check();
    assert_caught(&report, CheckId::Leakproof, "public.tell(text): LEAKPROOF and not built in");
}
