//! The holes in the proof, one class per test: each plant goes into a
//! database the check passed just before, and the check must then fail
//! naming it. Owner's-rights paths (rules, definer functions in any schema,
//! materialized views through functions, children without RLS), powers
//! outside the app schemas, policy content and role settings.

use audit::checks::CheckId;
use audit::{Exemptions, Report, Verdict};
use roles::drift::Check;

use crate::common::{assert_caught, catalog_failures, probe_failures, Fixture};

/// A migrated database that holds, then `sql` run as `who`, then the check.
fn planted_as(who: Who, sql: &str) -> (Fixture, Report) {
    let fx = Fixture::migrated();
    let before = fx.check();
    assert!(before.holds(), "the database must hold before the plant:\n{}", before.to_text());
    match who {
        Who::Admin => fx.admin().batch_execute(sql).unwrap(),
        Who::Migrator => fx.migrator().batch_execute(sql).unwrap(),
    }
    let report = fx.check();
    (fx, report)
}

#[derive(Clone, Copy)]
enum Who {
    Admin,
    Migrator,
}

fn server_version(fx: &Fixture) -> dbenv::ServerVersion {
    dbenv::ServerVersion::read(&mut fx.admin()).unwrap()
}

fn probe_observed(report: &Report, id: &str, role: &str) -> String {
    report.probes.iter().find(|p| p.id == id && p.role == role).map(|p| p.observed.clone()).unwrap_or_default()
}

// Owner's-rights paths.

#[test]
fn a_rule_that_copies_rows_through_the_tables_owner() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE TABLE public.outbox (payload text); \
         CREATE RULE spill AS ON UPDATE TO public.schedules DO ALSO \
           INSERT INTO public.outbox SELECT name FROM public.users",
    );
    assert_caught(
        &report,
        CheckId::Rules,
        "public.schedules.spill: rule `spill` on `public.schedules` reaches RLS table `public.users`",
    );
}

#[test]
fn a_rule_that_calls_a_function() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE FUNCTION public.note_change() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
         CREATE RULE notify AS ON DELETE TO public.ai_threads DO ALSO SELECT public.note_change()",
    );
    assert_caught(&report, CheckId::Rules, "public.ai_threads.notify");
}

#[test]
fn a_definer_function_outside_the_app_schemas_owned_by_a_superuser() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE SCHEMA maintenance; \
         CREATE FUNCTION maintenance.exec_sql(statement text) RETURNS void SECURITY DEFINER LANGUAGE plpgsql \
           AS $$ BEGIN EXECUTE statement; END $$",
    );
    assert_caught(
        &report,
        CheckId::SecurityDefiner,
        "maintenance.exec_sql(text): SECURITY DEFINER, owned by `postgres`, a superuser",
    );
}

#[test]
fn a_definer_procedure_granted_to_the_service_role_only() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE PROCEDURE public.purge(days int) SECURITY DEFINER LANGUAGE sql AS 'DELETE FROM public.users WHERE false'; \
         REVOKE EXECUTE ON PROCEDURE public.purge(int) FROM PUBLIC; GRANT EXECUTE ON PROCEDURE public.purge(int) TO app_service",
    );
    assert_caught(&report, CheckId::SecurityDefiner, "public.purge(integer)");
}

#[test]
fn a_definer_function_nobody_may_call_outside_the_app_schemas_is_fine() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE SCHEMA ops; CREATE FUNCTION ops.rotate() RETURNS void SECURITY DEFINER LANGUAGE sql AS 'SELECT'; \
         REVOKE EXECUTE ON FUNCTION ops.rotate() FROM PUBLIC",
    );
    assert!(report.holds(), "{}", report.to_text());
}

#[test]
fn a_materialized_view_reaching_an_rls_table_through_a_function() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE FUNCTION public.tenant_emails() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT name FROM public.users'; \
         CREATE MATERIALIZED VIEW public.mailing_list AS SELECT e AS name FROM public.tenant_emails() e",
    );
    assert_caught(
        &report,
        CheckId::ViewsOverRls,
        "public.mailing_list: materialized view over function `public.tenant_emails()` (whose body may read any table)",
    );
}

#[test]
fn a_materialized_view_that_runs_sql_text_through_a_built_in() {
    // query_to_xml runs its text as the refreshing owner; pg_depend records
    // no built-in, and the text is a string.
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE MATERIALIZED VIEW public.export AS \
           SELECT query_to_xml('SELECT * FROM public.users', true, false, '') AS doc",
    );
    assert_caught(
        &report,
        CheckId::ViewsOverRls,
        "public.export: materialized view over `query_to_xml()`, which runs SQL text (it may read any table)",
    );
}

#[test]
fn a_materialized_view_over_a_function_the_migrator_added_to_an_extension() {
    // Extension members are trusted as the extension's script made them;
    // one the migrator added (and owns) is any other function.
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE EXTENSION pg_trgm SCHEMA public; \
         CREATE FUNCTION public.tenant_names() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT name FROM public.users'; \
         ALTER EXTENSION pg_trgm ADD FUNCTION public.tenant_names(); \
         CREATE MATERIALIZED VIEW public.names AS SELECT n FROM public.tenant_names() n",
    );
    assert_caught(
        &report,
        CheckId::ViewsOverRls,
        "public.names: materialized view over function `public.tenant_names()`",
    );
}

#[test]
fn a_view_over_the_bookkeeping_is_an_owners_rights_path() {
    // The runtime roles may not read the bookkeeping; a view the migrator
    // owns in an app schema reads it for them.
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE VIEW public.schema_version AS SELECT hash, created_at FROM drizzle.__drizzle_migrations",
    );
    assert_caught(
        &report,
        CheckId::ViewsOverRls,
        "public.schema_version: view reads `drizzle.__drizzle_migrations`, outside the app schemas, with its owner's \
         rights (`app_migrator`)",
    );
}

#[test]
fn a_materialized_view_over_another_schemas_table_is_an_owners_rights_path() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE SCHEMA auth; CREATE TABLE auth.accounts (email text); INSERT INTO auth.accounts VALUES ('a@b.c'); \
         CREATE MATERIALIZED VIEW public.emails AS SELECT email FROM auth.accounts; \
         ALTER MATERIALIZED VIEW public.emails OWNER TO app_migrator; \
         GRANT SELECT ON public.emails TO app_user",
    );
    assert_caught(&report, CheckId::ViewsOverRls, "public.emails: materialized view reads `auth.accounts`");
}

#[test]
fn a_rule_that_runs_sql_text_through_a_built_in_runs_it_as_the_invoker() {
    // Unlike a materialized view's refresh, a built-in in a rule's action
    // runs its text as the role whose statement fired the rule: RLS applies.
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE TABLE public.audit_log (doc xml); \
         CREATE RULE copy_all AS ON INSERT TO public.ai_invocation_summaries DO ALSO \
           INSERT INTO public.audit_log SELECT query_to_xml('SELECT * FROM public.users', true, false, '')",
    );
    let found = catalog_failures(&report, CheckId::Rules);
    assert!(!found.iter().any(|f| f.contains("query_to_xml")), "{found:?}");
}

#[test]
fn a_definer_function_an_event_trigger_runs_needs_no_execute() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE SCHEMA ops; \
         CREATE FUNCTION ops.on_ddl() RETURNS event_trigger SECURITY DEFINER LANGUAGE plpgsql AS $$ BEGIN NULL; END $$; \
         REVOKE EXECUTE ON FUNCTION ops.on_ddl() FROM PUBLIC; \
         CREATE EVENT TRIGGER on_ddl ON ddl_command_start EXECUTE FUNCTION ops.on_ddl()",
    );
    assert_caught(&report, CheckId::SecurityDefiner, "ops.on_ddl(): SECURITY DEFINER, owned by `postgres`");
    assert_caught(&report, CheckId::SecurityDefiner, "an event trigger runs it on any DDL attempt");
}

#[test]
fn a_definer_support_function_of_an_aggregate_the_runtime_role_may_call() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE SCHEMA ops; \
         CREATE FUNCTION ops.add_up(int, int) RETURNS int SECURITY DEFINER LANGUAGE sql AS 'SELECT $1 + $2'; \
         REVOKE EXECUTE ON FUNCTION ops.add_up(int, int) FROM PUBLIC; \
         CREATE AGGREGATE ops.total(int) (SFUNC = ops.add_up, STYPE = int)",
    );
    assert_caught(
        &report,
        CheckId::SecurityDefiner,
        "the aggregate ops.total(integer), which a runtime role may call, runs it",
    );
}

#[test]
fn a_definer_function_someone_put_in_pg_catalog() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE FUNCTION pg_catalog.run_sql(statement text) RETURNS void SECURITY DEFINER LANGUAGE plpgsql \
           AS $$ BEGIN EXECUTE statement; END $$",
    );
    assert_caught(
        &report,
        CheckId::SecurityDefiner,
        "pg_catalog.run_sql(text): SECURITY DEFINER, owned by `postgres`, a superuser",
    );
}

#[test]
fn a_view_in_another_schema_granted_to_the_runtime_role() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE SCHEMA reporting; CREATE VIEW reporting.all_accounts AS SELECT * FROM public.billing_accounts; \
         GRANT USAGE ON SCHEMA reporting TO app_user; GRANT SELECT ON reporting.all_accounts TO app_user",
    );
    assert_caught(
        &report,
        CheckId::ViewsOverRls,
        "reporting.all_accounts: view over RLS table `public.billing_accounts`",
    );
}

#[test]
fn a_partition_without_rls_of_an_rls_table() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE TABLE public.usage_events (id bigint, owner_user_id uuid) PARTITION BY HASH (id); \
         ALTER TABLE public.usage_events ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY own ON public.usage_events \
           USING (owner_user_id = nullif(current_setting('app.current_user_id', true), '')::uuid); \
         CREATE TABLE public.usage_events_even PARTITION OF public.usage_events FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
    );
    assert_caught(
        &report,
        CheckId::RlsChildren,
        "public.usage_events_even: inherits from RLS table `public.usage_events`",
    );
}

#[test]
fn an_inheritance_child_of_the_tenant_root() {
    let (_, report) = planted_as(Who::Migrator, "CREATE TABLE public.users_retired () INHERITS (public.users)");
    assert_caught(&report, CheckId::RlsChildren, "public.users_retired: inherits from RLS table `public.users`");
}

// Powers outside the app schemas.

#[test]
fn set_on_a_superuser_parameter() {
    let fx = Fixture::migrated();
    if !server_version(&fx).has_parameter_privileges() {
        return; // parameter privileges exist from PostgreSQL 15 on
    }
    fx.admin().batch_execute("GRANT SET ON PARAMETER session_replication_role TO app_service").unwrap();
    let report = fx.check();
    assert!(!report.holds());
    assert_eq!(probe_failures(&report, "parameters"), ["app_service HELD: session_replication_role (SET)"]);
}

#[test]
fn alter_system_on_a_parameter() {
    let fx = Fixture::migrated();
    if !server_version(&fx).has_parameter_privileges() {
        return;
    }
    fx.admin().batch_execute("GRANT ALTER SYSTEM ON PARAMETER shared_preload_libraries TO app_user").unwrap();
    let report = fx.check();
    assert!(!report.holds());
    assert!(probe_observed(&report, "parameters", "app_user").contains("shared_preload_libraries (ALTER SYSTEM)"));
}

#[test]
fn execute_on_a_superuser_only_function() {
    let (_, report) = planted_as(Who::Admin, "GRANT EXECUTE ON FUNCTION pg_stat_file(text) TO app_user");
    assert!(!report.holds());
    assert_eq!(probe_failures(&report, "superuser-functions"), ["app_user HELD: pg_stat_file(text)"]);
}

#[test]
fn server_side_large_object_export_for_public() {
    let (_, report) = planted_as(Who::Admin, "GRANT EXECUTE ON FUNCTION lo_export(oid, text) TO PUBLIC");
    assert_eq!(probe_failures(&report, "superuser-functions").len(), 2, "{}", report.to_text());
}

#[test]
fn select_on_a_protected_catalog() {
    let (_, report) = planted_as(Who::Admin, "GRANT SELECT ON pg_catalog.pg_authid TO app_service");
    assert_eq!(probe_failures(&report, "system-catalogs"), ["app_service HELD: pg_authid SELECT"]);
}

#[test]
fn create_on_a_schema_outside_the_app_schemas() {
    let (_, report) =
        planted_as(Who::Admin, "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO app_service");
    assert_caught(&report, CheckId::Model(Check::SchemaCreate), "schema scratch: app_service holds CREATE");
    assert_eq!(probe_failures(&report, "create-anywhere"), ["app_service HELD: scratch"]);
}

#[test]
fn usage_on_a_foreign_data_wrapper_and_a_server() {
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE FOREIGN DATA WRAPPER loopback_fdw; CREATE SERVER elsewhere FOREIGN DATA WRAPPER loopback_fdw; \
         GRANT USAGE ON FOREIGN DATA WRAPPER loopback_fdw TO app_user; GRANT USAGE ON FOREIGN SERVER elsewhere TO app_service",
    );
    assert_caught(
        &report,
        CheckId::Model(Check::ForeignData),
        "foreign-data wrapper loopback_fdw: app_user holds USAGE",
    );
    assert_caught(&report, CheckId::Model(Check::ForeignData), "server elsewhere: app_service holds USAGE");
    assert_eq!(probe_failures(&report, "foreign-data").len(), 2);
}

#[test]
fn a_foreign_table_whose_server_logs_in_as_another_role_for_everyone() {
    // A mapping FOR PUBLIC: whoever reads the foreign table acts on the
    // remote side as `postgres`.
    let (_, report) = planted_as(
        Who::Admin,
        "CREATE FOREIGN DATA WRAPPER loop_fdw; CREATE SERVER same_cluster FOREIGN DATA WRAPPER loop_fdw; \
         CREATE USER MAPPING FOR PUBLIC SERVER same_cluster OPTIONS (user 'postgres'); \
         CREATE SCHEMA remote; CREATE FOREIGN TABLE remote.users (id uuid) SERVER same_cluster; \
         GRANT USAGE ON SCHEMA remote TO app_user; GRANT SELECT ON remote.users TO app_user",
    );
    assert_caught(&report, CheckId::ForeignLogins, "remote.users: foreign table on server `same_cluster`");
}

#[test]
fn default_privileges_of_another_role_for_a_runtime_role() {
    let (_, report) = planted_as(
        Who::Admin,
        "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT, TRUNCATE ON TABLES TO app_service",
    );
    assert_caught(
        &report,
        CheckId::Model(Check::DefaultPrivileges),
        "FOR ROLE postgres in every schema: grants SELECT, TRUNCATE on every new table to app_service",
    );
}

#[test]
fn a_database_and_objects_the_runtime_role_owns_elsewhere() {
    let fx = Fixture::migrated();
    assert!(fx.check().holds());
    fx.admin().batch_execute("CREATE DATABASE side_project OWNER app_user").unwrap();
    let report = fx.check();
    assert_caught(&report, CheckId::Model(Check::OtherDatabases), "database side_project: owned by `app_user`");
    assert!(probe_observed(&report, "owned-elsewhere", "app_user").contains("the cluster: 1 objects"));
}

// Policies and role settings.

#[test]
fn a_permissive_insert_policy_lets_app_user_write_for_another_tenant() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE POLICY anyone_may_add ON public.billing_accounts FOR INSERT WITH CHECK (true)",
    );
    assert_caught(
        &report,
        CheckId::RlsPolicyContent,
        "public.billing_accounts: policy `anyone_may_add` (FOR INSERT) has WITH CHECK (true)",
    );
    let observed = probe_observed(&report, "cross-tenant-insert", "app_user");
    assert!(observed.starts_with("ALLOWED on public.billing_accounts"), "{observed}\n{}", report.to_text());
}

#[test]
fn using_true_on_an_empty_table_is_seen_without_rows() {
    let (_, report) = planted_as(Who::Migrator, "CREATE POLICY peek ON public.schedule_runs FOR SELECT USING (true)");
    assert_caught(
        &report,
        CheckId::RlsPolicyContent,
        "public.schedule_runs: policy `peek` (FOR SELECT) has USING (true)",
    );
}

#[test]
fn an_extra_permissive_policy_widens_the_tenant_one() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE POLICY by_slug ON public.billing_accounts FOR UPDATE USING (slug IS NOT NULL)",
    );
    assert_caught(&report, CheckId::RlsPolicyContent, "2 permissive policies allow UPDATE");
}

#[test]
fn a_reviewed_policy_set_is_exempt() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute("CREATE POLICY by_slug ON public.billing_accounts FOR UPDATE USING (slug IS NOT NULL)")
        .unwrap();
    let exemptions =
        Exemptions::parse("[[policy]]\nname = \"public.billing_accounts\"\nreason = \"slug owners may rename\"\n")
            .unwrap();
    let report = fx.check_with(&fx.migrations, exemptions);
    assert!(catalog_failures(&report, CheckId::RlsPolicyContent).is_empty(), "{}", report.to_text());
}

#[test]
fn row_security_off_for_app_user_is_named_not_a_crash() {
    let (_, report) = planted_as(Who::Admin, "ALTER ROLE app_user SET row_security = off");
    assert_caught(
        &report,
        CheckId::Model(Check::RoleSettings),
        "ALTER ROLE app_user SET row_security: row_security = off",
    );
    assert_eq!(report.rls.verdict, Verdict::Fail);
    assert!(report.rls.message.contains("row_security is off"), "{}", report.rls.message);
}

#[test]
fn a_default_tenant_for_app_user_is_named() {
    let (_, report) = planted_as(
        Who::Admin,
        "ALTER ROLE app_user IN DATABASE cogni_template_test SET app.current_user_id = '00000000-0000-4000-a000-000000000001'",
    );
    assert_caught(
        &report,
        CheckId::Model(Check::RoleSettings),
        "ALTER ROLE app_user IN DATABASE cogni_template_test SET app.current_user_id",
    );
}

#[test]
fn a_default_tenant_for_every_role_everywhere_is_named() {
    // The fixture's cluster is its own: ALTER ROLE ALL reaches no other test.
    let (_, report) =
        planted_as(Who::Admin, "ALTER ROLE ALL SET app.current_user_id = '00000000-0000-4000-a000-000000000001'");
    assert_caught(&report, CheckId::Model(Check::RoleSettings), "ALTER ROLE ALL SET app.current_user_id");
}

#[test]
fn a_database_default_that_switches_off_triggers() {
    let (_, report) =
        planted_as(Who::Admin, "ALTER DATABASE cogni_template_test SET session_replication_role = replica");
    assert_caught(&report, CheckId::Model(Check::RoleSettings), "session_replication_role = replica");
}

// No false "violated".

#[test]
fn security_invoker_spelled_as_the_server_accepts_it_holds() {
    let fx = Fixture::migrated();
    if !server_version(&fx).has_security_invoker_views() {
        return;
    }
    fx.migrator()
        .batch_execute(
            "CREATE VIEW public.my_threads WITH (security_invoker = 'TRUE') AS SELECT state_key FROM public.ai_threads; \
             CREATE VIEW public.my_accounts WITH (security_invoker = yes) AS SELECT id FROM public.billing_accounts; \
             CREATE VIEW public.my_keys WITH (security_invoker = t) AS SELECT id FROM public.virtual_keys",
        )
        .unwrap();
    let report = fx.check();
    assert!(report.holds(), "{}", report.to_text());
}

#[test]
fn installed_trusted_extensions_do_not_break_the_create_extension_probe() {
    let fx = Fixture::migrated();
    let available: i64 = fx
        .admin()
        .query_one("SELECT count(*) FROM pg_available_extensions WHERE name IN ('pg_trgm', 'citext', 'hstore')", &[])
        .unwrap()
        .get(0);
    if available < 3 {
        return; // a server without contrib
    }
    fx.admin().batch_execute("CREATE EXTENSION pg_trgm; CREATE EXTENSION citext; CREATE EXTENSION hstore").unwrap();
    let report = fx.check();
    assert!(report.holds(), "{}", report.to_text());
    let observed = probe_observed(&report, "create-extension", "app_user");
    assert_eq!(observed, "denied (42501)", "{}", report.to_text());
}

#[test]
fn a_rule_that_writes_the_bookkeeping_through_the_tables_owner() {
    // No RLS table involved: the rule's action runs as the migrator, which
    // owns the bookkeeping, whenever app_user writes an app table.
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE RULE forge AS ON INSERT TO public.execution_requests DO ALSO \
           INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('forged', 0)",
    );
    assert_caught(
        &report,
        CheckId::Rules,
        "public.execution_requests.forge: rule `forge` on `public.execution_requests` reaches \
         `drizzle.__drizzle_migrations`, which the runtime roles may not touch themselves",
    );
}

#[test]
fn a_rule_that_resets_a_sequence_or_writes_a_private_table_through_the_tables_owner() {
    let (_, report) = planted_as(
        Who::Migrator,
        "CREATE TABLE public.ops_log (id int, body text); \
         REVOKE ALL ON public.ops_log FROM app_user, app_service; \
         CREATE RULE wipe AS ON INSERT TO public.execution_requests DO ALSO DELETE FROM public.ops_log; \
         CREATE RULE rewind AS ON UPDATE TO public.execution_requests DO ALSO \
           SELECT setval('public.payment_events_id_seq', 1)",
    );
    assert_caught(
        &report,
        CheckId::Rules,
        "public.execution_requests.wipe: rule `wipe` on `public.execution_requests` reaches `public.ops_log`",
    );
    assert_caught(
        &report,
        CheckId::Rules,
        "public.execution_requests.rewind: rule `rewind` on `public.execution_requests` reaches `public.payment_events_id_seq`",
    );
}
