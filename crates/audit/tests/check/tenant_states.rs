//! Tenancy proven in every state a runtime session is in: fresh (no tenant),
//! with a tenant that owns nothing, and pooled (an earlier transaction
//! committed a `SET LOCAL` of the tenant, which then reads '' rather than
//! NULL). Each plant passes the no-tenant read alone.

use audit::checks::CheckId;
use audit::Verdict;

use crate::common::Fixture;

/// The migrated app with `billing_accounts`' policy replaced by `using`.
fn with_policy(using: &str) -> audit::Report {
    replaced(&format!("CREATE POLICY tenant_isolation ON public.billing_accounts USING ({using}) WITH CHECK ({using})"))
}

/// The migrated app (which holds) with `billing_accounts`' policy dropped
/// and `sql` run as the migrator, checked.
fn replaced(sql: &str) -> audit::Report {
    let fx = Fixture::migrated();
    assert!(fx.check().holds());
    fx.migrator().batch_execute(&format!("DROP POLICY tenant_isolation ON public.billing_accounts; {sql}")).unwrap();
    fx.check()
}

#[test]
fn a_policy_true_whenever_any_tenant_is_set_fails() {
    let report = with_policy("current_setting('app.current_user_id', true) <> ''");
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.to_text());
    assert!(
        report.rls.message.contains(
            "with app.current_user_id set to a tenant that owns nothing, `app_user` sees rows of public.billing_accounts"
        ),
        "{}",
        report.rls.message
    );
}

#[test]
fn a_policy_that_lets_the_pooled_empty_setting_through_fails() {
    let report = with_policy(
        "current_setting('app.current_user_id', true) = '' \
         OR owner_user_id = nullif(current_setting('app.current_user_id', true), '')::uuid",
    );
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.to_text());
    assert!(
        report.rls.message.contains("after an earlier transaction set app.current_user_id locally (it reads '')"),
        "{}",
        report.rls.message
    );
    assert!(!report.rls.message.contains("without app.current_user_id,"), "{}", report.rls.message);
}

#[test]
fn the_apps_policies_hold_in_every_state() {
    let fx = Fixture::migrated();
    let report = fx.check();
    assert_eq!(report.rls.verdict, Verdict::Pass, "{}", report.to_text());
    assert!(
        report.rls.message.contains("with a tenant that owns nothing and on a pooled session"),
        "{}",
        report.rls.message
    );
}

#[test]
fn a_decoy_table_whose_read_fails_hides_no_other_tables_leak() {
    let fx = Fixture::migrated();
    // The decoy: a table with a row whose policy casts the setting to int,
    // which fails for a uuid tenant and for ''; beside it, the leak.
    fx.migrator()
        .batch_execute(
            "CREATE TABLE public.decoy (id int PRIMARY KEY); INSERT INTO public.decoy VALUES (1); \
             ALTER TABLE public.decoy ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY decoy ON public.decoy USING (id = current_setting('app.current_user_id', true)::int); \
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.decoy TO app_user, app_service; \
             DROP POLICY tenant_isolation ON public.billing_accounts; \
             CREATE POLICY tenant_isolation ON public.billing_accounts \
               USING (current_setting('app.current_user_id', true) <> '')",
        )
        .unwrap();
    let report = fx.check();
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.to_text());
    assert!(report.rls.message.contains("sees rows of public.billing_accounts"), "{}", report.rls.message);
}

#[test]
fn a_trigger_that_imitates_the_policys_refusal_for_the_probe_is_not_a_denial() {
    // The policy lets any tenant write; a trigger refuses, in RLS's words,
    // only the sessions that look like db-check's probe.
    let report = replaced(
        "CREATE POLICY tenant_isolation ON public.billing_accounts \
               USING (owner_user_id = nullif(current_setting('app.current_user_id', true), '')::uuid) WITH CHECK (true); \
             CREATE FUNCTION public.looks_like_rls() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               RAISE EXCEPTION 'new row violates row-level security policy for table \"billing_accounts\"' \
                 USING ERRCODE = '42501'; END $$; \
             CREATE TRIGGER looks_like_rls BEFORE INSERT ON public.billing_accounts \
               FOR EACH ROW EXECUTE FUNCTION public.looks_like_rls()",
    );
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert!(
        insert.observed.contains("billing_accounts (42501 from `exec_stmt_raise`, not the policies' WITH CHECK)"),
        "{}",
        insert.observed
    );
    assert!(!report.holds(), "{}", report.to_text());
}

#[test]
fn a_policy_that_reads_the_probes_lock_timeout_is_named() {
    let report = replaced(
        "CREATE POLICY tenant_isolation ON public.billing_accounts \
               USING (owner_user_id = nullif(current_setting('app.current_user_id', true), '')::uuid \
                      OR current_setting('lock_timeout') <> '50ms')",
    );
    crate::common::assert_caught(
        &report,
        CheckId::RlsPolicyContent,
        "reads session state that is not the tenant (setting lock_timeout)",
    );
}

#[test]
fn a_permissive_true_narrowed_by_a_restrictive_tenant_policy_isolates() {
    // A common shape: everything permitted, then narrowed per tenant.
    let report = replaced(
        "CREATE POLICY everything ON public.billing_accounts USING (true) WITH CHECK (true); \
             CREATE POLICY tenant_only ON public.billing_accounts AS RESTRICTIVE \
               USING (owner_user_id = nullif(current_setting('app.current_user_id', true), '')::uuid)",
    );
    let found = crate::common::catalog_failures(&report, CheckId::RlsPolicyContent);
    assert!(found.is_empty(), "{found:?}\n{}", report.to_text());
    assert!(report.holds(), "{}", report.to_text());
}

#[test]
fn a_tautology_in_disguise_is_treated_as_true() {
    let report = replaced(
        "CREATE POLICY tenant_isolation ON public.billing_accounts \
               USING (owner_user_id = nullif(current_setting('app.current_user_id', true), '')::uuid OR 1 = 1)",
    );
    crate::common::assert_caught(&report, CheckId::RlsPolicyContent, "which is always true");
}

#[test]
fn a_restrictive_policy_that_does_not_read_the_tenant_narrows_nothing() {
    let report = replaced(
        "CREATE POLICY everything ON public.billing_accounts USING (true) WITH CHECK (true); \
             CREATE POLICY looks_strict ON public.billing_accounts AS RESTRICTIVE USING (id IS NOT NULL)",
    );
    crate::common::assert_caught(&report, CheckId::RlsPolicyContent, "policy `everything` (FOR ALL) has USING (true)");
}

#[test]
fn a_policy_whose_function_reads_the_probes_lock_timeout_is_named() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "CREATE FUNCTION public.current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ \
               SELECT CASE WHEN current_setting('lock_timeout') = '50ms' \
                 THEN nullif(current_setting('app.current_user_id', true), '')::uuid END $$; \
             DROP POLICY tenant_isolation ON public.billing_accounts; \
             CREATE POLICY tenant_isolation ON public.billing_accounts USING (owner_user_id = public.current_tenant())",
        )
        .unwrap();
    let report = fx.check();
    crate::common::assert_caught(
        &report,
        CheckId::RlsPolicyContent,
        "reads session state that is not the tenant (setting lock_timeout)",
    );
}

#[test]
fn a_table_the_runtime_role_may_not_insert_into_counts_as_denied() {
    let fx = Fixture::migrated();
    fx.migrator().batch_execute("REVOKE INSERT ON public.billing_accounts FROM app_user").unwrap();
    let report = fx.check();
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert_eq!(insert.verdict, Verdict::Pass, "{}", insert.observed);
}

#[test]
fn a_before_trigger_that_sets_the_tenant_is_not_a_cross_tenant_write() {
    let fx = Fixture::migrated();
    // A common shape: the app never names the tenant, a trigger fills it in
    // from the setting, and the policy checks it. The copy of a row collides
    // with its original on the key once the policy passed it: the key gets
    // fresh values and the copy is tried again; and the copy is written with
    // a tenant that exists, so the tenant's foreign key holds.
    fx.migrator()
        .batch_execute(
            "CREATE TABLE public.notes (id int PRIMARY KEY, owner uuid NOT NULL REFERENCES public.users(id), \
                                        slug text UNIQUE, body text); \
             ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY tenant_isolation ON public.notes \
               USING (owner = nullif(current_setting('app.current_user_id', true), '')::uuid); \
             CREATE FUNCTION public.set_owner() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               NEW.owner := nullif(current_setting('app.current_user_id', true), '')::uuid; RETURN NEW; END $$; \
             CREATE TRIGGER set_owner BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.set_owner(); \
             ALTER TABLE public.notes DISABLE TRIGGER set_owner; \
             INSERT INTO public.notes VALUES (1, '00000000-0000-4000-a000-000000000001', 'first', 'system note'); \
             ALTER TABLE public.notes ENABLE TRIGGER set_owner",
        )
        .unwrap();
    let report = fx.check();
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert_eq!(insert.verdict, Verdict::Pass, "{}", insert.observed);
    assert!(
        insert
            .observed
            .contains("proven by a BEFORE trigger that put the row in the probe's own tenant on public.notes"),
        "{}",
        insert.observed
    );
    let rows = report.probes.iter().find(|p| p.id == "probe-rows-insert").unwrap();
    assert_eq!(rows.verdict, Verdict::Pass, "{}", rows.observed);
    assert!(rows.observed.contains("kept the row in the writer's tenant on public.notes"), "{}", rows.observed);
    assert!(report.holds(), "{}", report.to_text());
}

#[test]
fn a_tenant_table_outside_the_app_schemas_is_proven_too() {
    let fx = Fixture::migrated();
    // A schema APP_DB_SCHEMAS does not name, whose table the runtime role
    // uses: its policy leaks with any tenant set.
    fx.admin()
        .batch_execute(
            "CREATE SCHEMA crm; CREATE TABLE crm.contacts (owner uuid, email text); \
             INSERT INTO crm.contacts VALUES ('00000000-0000-4000-a000-000000000001', 'a@example.com'); \
             ALTER TABLE crm.contacts ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY leaky ON crm.contacts USING (current_setting('app.current_user_id', true) <> ''); \
             GRANT USAGE ON SCHEMA crm TO app_user, app_service; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON crm.contacts TO app_user, app_service",
        )
        .unwrap();
    let report = fx.check();
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.to_text());
    assert!(report.rls.message.contains("sees rows of crm.contacts"), "{}", report.rls.message);
}

#[test]
fn a_trigger_is_no_excuse_when_every_tenant_sees_the_row() {
    let fx = Fixture::migrated();
    // The trigger fills in the writer's tenant, but the policy lets any
    // tenant see and write any row: the copy is visible to a third tenant
    // too, so it is a leak, not the trigger's doing.
    fx.migrator()
        .batch_execute(
            "CREATE TABLE public.notes (id int PRIMARY KEY, owner uuid NOT NULL REFERENCES public.users(id), body text); \
             ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY tenant_isolation ON public.notes \
               USING (current_setting('app.current_user_id', true) <> ''); \
             CREATE FUNCTION public.set_owner() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               NEW.owner := nullif(current_setting('app.current_user_id', true), '')::uuid; RETURN NEW; END $$; \
             CREATE TRIGGER set_owner BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.set_owner(); \
             ALTER TABLE public.notes DISABLE TRIGGER set_owner; \
             INSERT INTO public.notes VALUES (1, '00000000-0000-4000-a000-000000000001', 'system note'); \
             ALTER TABLE public.notes ENABLE TRIGGER set_owner",
        )
        .unwrap();
    let report = fx.check();
    for id in ["cross-tenant-insert", "probe-rows-insert"] {
        let probe = report.probes.iter().find(|p| p.id == id).unwrap();
        assert_eq!(probe.verdict, Verdict::Fail, "{id}: {}", probe.observed);
        assert!(probe.observed.contains("ALLOWED on public.notes"), "{id}: {}", probe.observed);
    }
}
