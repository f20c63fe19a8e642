//! One test per violation class: plant it in a correct database and the
//! check names it (and does not hold).

use audit::checks::CheckId;
use audit::Exemptions;
use roles::drift::Check;

use crate::common::{assert_caught, probe_failures, Fixture};

fn planted(sql: &str) -> audit::Report {
    let fx = Fixture::migrated();
    fx.admin().batch_execute(sql).unwrap();
    fx.check()
}

#[test]
fn create_on_an_app_schema_for_app_user() {
    let report = planted("GRANT CREATE ON SCHEMA public TO app_user");
    assert_caught(&report, CheckId::Model(Check::SchemaAcl), "app_user holds USAGE, CREATE (expected USAGE)");
    assert_eq!(probe_failures(&report, "create-table"), ["app_user ALLOWED"]);
}

#[test]
fn create_for_public() {
    let report = planted("GRANT CREATE ON SCHEMA public TO PUBLIC");
    assert_caught(&report, CheckId::Model(Check::SchemaAcl), "PUBLIC holds CREATE");
    assert_eq!(probe_failures(&report, "create-table").len(), 2);
}

#[test]
fn app_user_owning_a_table() {
    let report = planted("ALTER TABLE public.users OWNER TO app_user");
    assert_caught(&report, CheckId::Model(Check::Owners), "public.users: table owned by `app_user`");
}

#[test]
fn app_user_owning_a_function() {
    let report = planted(
        "CREATE FUNCTION public.tenant() RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid'; \
                          ALTER FUNCTION public.tenant() OWNER TO app_user",
    );
    assert_caught(&report, CheckId::Model(Check::Owners), "public.tenant(): function owned by `app_user`");
}

#[test]
fn app_user_a_member_of_the_migrator() {
    let report = planted("GRANT app_migrator TO app_user");
    assert_caught(&report, CheckId::Model(Check::Memberships), "app_user: is a member of `app_migrator`");
    assert_eq!(probe_failures(&report, "set-role-migrator"), ["app_user ALLOWED"]);
}

#[test]
fn bypassrls_on_app_user() {
    let report = planted("ALTER ROLE app_user BYPASSRLS");
    assert_caught(&report, CheckId::Model(Check::Roles), "app_user: has BYPASSRLS");
    assert_eq!(report.rls.verdict, audit::Verdict::Fail, "{}", report.rls.message);
}

#[test]
fn truncate_for_app_service() {
    let report = planted("GRANT TRUNCATE ON public.users TO app_service");
    assert_caught(
        &report,
        CheckId::Model(Check::TableAcl),
        "app_service holds SELECT, INSERT, UPDATE, DELETE, TRUNCATE",
    );
    assert_eq!(probe_failures(&report, "no-extra-table-privileges"), ["app_service HELD on public.users"]);
}

#[test]
fn a_column_grant_beyond_dml() {
    let report = planted("GRANT REFERENCES (id) ON public.users TO app_user");
    assert_caught(&report, CheckId::Model(Check::ColumnAcl), "public.users.id: app_user holds REFERENCES");
}

#[test]
fn a_table_with_a_policy_but_rls_disabled() {
    let report = planted("ALTER TABLE public.ai_threads DISABLE ROW LEVEL SECURITY");
    assert_caught(&report, CheckId::RlsPolicies, "public.ai_threads: has 1 policies but RLS is disabled");
}

#[test]
fn a_table_reaching_users_through_two_foreign_keys_without_rls() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute("CREATE TABLE public.account_notes (id int, account uuid REFERENCES billing_accounts(id))")
        .unwrap();
    assert_caught(
        &fx.check(),
        CheckId::RlsTenancy,
        "public.account_notes: reaches `users` (references `public.billing_accounts`)",
    );
}

#[test]
fn a_plain_view_over_an_rls_table() {
    let fx = Fixture::migrated();
    fx.migrator().batch_execute("CREATE VIEW public.all_users AS SELECT id, name FROM users").unwrap();
    assert_caught(&fx.check(), CheckId::ViewsOverRls, "public.all_users: view over RLS table `public.users`");
}

#[test]
fn a_materialized_view_over_an_rls_table() {
    let fx = Fixture::migrated();
    fx.migrator().batch_execute("CREATE MATERIALIZED VIEW public.user_count AS SELECT count(*) FROM users").unwrap();
    assert_caught(
        &fx.check(),
        CheckId::ViewsOverRls,
        "public.user_count: materialized view over RLS table `public.users`",
    );
}

#[test]
fn a_security_definer_function_owned_by_the_migrator() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute("CREATE FUNCTION public.count_users() RETURNS bigint SECURITY DEFINER LANGUAGE sql AS 'SELECT count(*) FROM users'")
        .unwrap();
    assert_caught(
        &fx.check(),
        CheckId::SecurityDefiner,
        "public.count_users(): SECURITY DEFINER, owned by `app_migrator`",
    );
}

#[test]
fn missing_default_privileges() {
    let report =
        planted("ALTER DEFAULT PRIVILEGES FOR ROLE app_migrator IN SCHEMA public REVOKE ALL ON TABLES FROM app_user");
    assert_caught(
        &report,
        CheckId::Model(Check::DefaultPrivileges),
        "tables created by app_migrator in public: app_user holds nothing",
    );
}

#[test]
fn runtime_access_to_the_bookkeeping_table() {
    let report =
        planted("GRANT USAGE ON SCHEMA drizzle TO app_user; GRANT SELECT ON drizzle.__drizzle_migrations TO app_user");
    assert_caught(
        &report,
        CheckId::Model(Check::BookkeepingAccess),
        "drizzle.__drizzle_migrations: app_user holds SELECT",
    );
    assert_eq!(probe_failures(&report, "read-bookkeeping"), ["app_user ALLOWED"]);
}

#[test]
fn an_applied_migration_whose_file_changed() {
    let fx = Fixture::migrated();
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(&fx.migrations).arg(copy.path()).status().unwrap();
    assert!(status.success());
    let dir = copy.path().join("migrations");
    let file = dir.join("0004_rls_policies.sql");
    let text =
        std::fs::read_to_string(&file).unwrap().replace("FORCE ROW LEVEL SECURITY", "NO FORCE ROW LEVEL SECURITY");
    std::fs::write(&file, text).unwrap();
    let exemptions = Exemptions::load_default(&crate::common::repo_root()).unwrap();
    assert_caught(
        &fx.check_with(&dir, exemptions),
        CheckId::Bookkeeping,
        "applied migration `0004_rls_policies` was edited",
    );
}

#[test]
fn the_migrator_as_superuser() {
    let report = planted("ALTER ROLE app_migrator SUPERUSER");
    assert_caught(&report, CheckId::Model(Check::Roles), "app_migrator: has SUPERUSER");
}

#[test]
fn default_privileges_name_their_objects_in_words() {
    let report = planted("ALTER DEFAULT PRIVILEGES FOR ROLE app_migrator GRANT USAGE ON TYPES TO app_user");
    assert_caught(
        &report,
        CheckId::Model(Check::DefaultPrivileges),
        "types created by app_migrator in every schema: app_user holds USAGE",
    );
    assert!(!report.to_text().contains("objects (T)"), "{}", report.to_text());
}
