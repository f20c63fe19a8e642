//! Tenancy proven with probe rows: on empty tables, with a tenant that
//! exists and owns nothing, and for an UPDATE that would move a row into
//! another tenant. Each plant is on a database that held before it, and
//! passes every proof that reads only the rows already there.

use audit::{Report, Verdict};

use crate::common::Fixture;

/// The migrated app (which holds) with `sql` run as the migrator, checked.
fn planted(sql: &str) -> (Fixture, Report) {
    let fx = Fixture::migrated();
    assert!(fx.check().holds());
    fx.migrator().batch_execute(sql).unwrap();
    let report = fx.check();
    (fx, report)
}

fn probe<'r>(report: &'r Report, id: &str) -> &'r audit::report::Probe {
    report.probes.iter().find(|p| p.id == id && p.role == "app_user").unwrap_or_else(|| panic!("no {id}"))
}

/// An empty tenant table whose policy is `using` for every command.
fn empty_table(using: &str) -> String {
    format!(
        "CREATE TABLE public.notes (id bigserial PRIMARY KEY, owner_user_id uuid NOT NULL REFERENCES users(id), \
                                    body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()); \
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY tenant_isolation ON public.notes USING ({using}) WITH CHECK ({using})"
    )
}

#[test]
fn an_empty_table_whose_policy_is_true_for_any_tenant_fails() {
    let (_, report) = planted(&empty_table("current_setting('app.current_user_id', true) <> ''"));
    // The rows already there cannot tell: the table is empty.
    assert_ne!(report.rls.verdict, Verdict::Fail, "{}", report.rls.message);
    let read = probe(&report, "probe-rows-read");
    assert_eq!(read.verdict, Verdict::Fail, "{}", read.observed);
    assert!(
        read.observed.contains("with a tenant that exists and owns nothing, `app_user` sees rows of public.notes"),
        "{}",
        read.observed
    );
    assert!(!report.holds());
}

#[test]
fn a_policy_true_for_any_existing_tenant_fails() {
    // A tenant that does not exist sees nothing; one that exists sees all.
    let (_, report) = planted(&empty_table(
        "EXISTS (SELECT 1 FROM public.users u WHERE u.id::text = current_setting('app.current_user_id', true))",
    ));
    let read = probe(&report, "probe-rows-read");
    assert_eq!(read.verdict, Verdict::Fail, "{}", read.observed);
    assert!(read.observed.contains("sees rows of public.notes"), "{}", read.observed);
    let insert = probe(&report, "probe-rows-insert");
    assert_eq!(insert.verdict, Verdict::Fail, "{}", insert.observed);
    assert!(insert.observed.contains("ALLOWED on public.notes"), "{}", insert.observed);
}

#[test]
fn an_update_that_moves_a_row_to_another_tenant_fails() {
    // Reads, inserts and deletes are the tenant's own; an UPDATE's new row
    // may belong to anyone (the check reads the setting, so it looks scoped).
    let own = "owner_user_id::text = current_setting('app.current_user_id', true)";
    let (_, report) = planted(&format!(
        "DROP POLICY tenant_isolation ON public.billing_accounts; \
         CREATE POLICY read_own ON public.billing_accounts FOR SELECT USING ({own}); \
         CREATE POLICY insert_own ON public.billing_accounts FOR INSERT WITH CHECK ({own}); \
         CREATE POLICY delete_own ON public.billing_accounts FOR DELETE USING ({own}); \
         CREATE POLICY update_own ON public.billing_accounts FOR UPDATE USING ({own}) \
           WITH CHECK ({own} OR owner_user_id::text <> current_setting('app.current_user_id', true))"
    ));
    assert_eq!(report.rls.verdict, Verdict::Pass, "reads hold: {}", report.rls.message);
    assert_eq!(probe(&report, "cross-tenant-insert").verdict, Verdict::Pass, "inserts hold");
    let update = probe(&report, "update-moves-row");
    assert_eq!(update.verdict, Verdict::Fail, "{}", update.observed);
    assert!(update.observed.contains("ALLOWED on public.billing_accounts"), "{}", update.observed);
    assert!(!report.holds());
    assert!(
        report.checks.iter().filter(|c| c.verdict() == Verdict::Fail).count() == 0,
        "the catalog alone does not see it: {}",
        report.to_text()
    );
}

#[test]
fn a_table_whose_trigger_reaches_outside_the_transaction_is_untouched_and_unproven() {
    let (fx, report) = planted(&format!(
        "{}; CREATE SEQUENCE public.note_numbers; \
         CREATE FUNCTION public.number_note() RETURNS trigger LANGUAGE plpgsql AS \
           $$BEGIN NEW.body := NEW.body || nextval('public.note_numbers'); RETURN NEW; END$$; \
         CREATE TRIGGER number_note BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.number_note()",
        empty_table("owner_user_id::text = current_setting('app.current_user_id', true)")
    ));
    let read = probe(&report, "probe-rows-read");
    assert_eq!(read.verdict, Verdict::Unproven, "{}", read.observed);
    assert!(read.observed.contains("public.notes (not touched: trigger number_note"), "{}", read.observed);
    let called: bool = fx.admin().query_one("SELECT is_called FROM public.note_numbers", &[]).unwrap().get(0);
    assert!(!called, "the trigger never ran: its sequence did not move");
    assert!(report.unproven().iter().any(|p| p.contains("probe-rows-read")), "{:?}", report.unproven());
}

#[test]
fn probe_rows_move_no_sequence_and_leave_no_row() {
    // `payment_events.id` is a bigserial; an identity column too.
    let (fx, report) = planted(&format!(
        "{}; ALTER TABLE public.notes ADD COLUMN n int GENERATED ALWAYS AS IDENTITY; \
         CREATE SEQUENCE public.note_numbers; \
         CREATE FUNCTION public.next_note_no() RETURNS text LANGUAGE sql AS $$ SELECT 'N-' || nextval('public.note_numbers') $$; \
         ALTER TABLE public.notes ADD COLUMN number text NOT NULL DEFAULT public.next_note_no()",
        empty_table("owner_user_id::text = current_setting('app.current_user_id', true)")
    ));
    assert!(report.holds(), "{}", report.to_text());
    for id in ["probe-rows-read", "probe-rows-insert", "update-moves-row"] {
        assert_eq!(probe(&report, id).verdict, Verdict::Pass, "{id}: {}", probe(&report, id).observed);
    }
    let mut admin = fx.admin();
    let row = admin
        .query_one(
            "SELECT (SELECT is_called FROM public.notes_id_seq), (SELECT count(*) FROM public.notes), \
                    (SELECT count(*) FROM public.users WHERE name IS NULL AND wallet_address IS NULL)",
            &[],
        )
        .unwrap();
    assert!(!row.get::<_, bool>(0), "no sequence value was taken");
    assert_eq!(row.get::<_, i64>(1), 0, "no probe row stays");
    let identity: Option<i64> = admin
        .query_one("SELECT last_value FROM pg_sequences WHERE sequencename LIKE 'notes_n_seq%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(identity, None, "the identity sequence never moved");
    let called: bool = admin.query_one("SELECT is_called FROM public.note_numbers", &[]).unwrap().get(0);
    assert!(!called, "a default that calls the app's function got a value instead");
}

#[test]
fn a_table_whose_tenant_comes_from_a_default_is_unproven_not_proven_by_a_trigger() {
    // The tenant column is filled by a default from the setting and is of
    // another type than the root's key: the probe's rows cannot carry A's
    // tenant into B's session, so the write proofs must not count them.
    let (_, report) = planted(
        "CREATE TABLE public.notes (id uuid PRIMARY KEY, \
            owner_ref text NOT NULL DEFAULT current_setting('app.current_user_id', true), body text NOT NULL); \
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY s ON public.notes FOR SELECT USING (owner_ref = current_setting('app.current_user_id', true)); \
         CREATE POLICY i ON public.notes FOR INSERT WITH CHECK (owner_ref <> ''); \
         CREATE POLICY u ON public.notes FOR UPDATE USING (owner_ref = current_setting('app.current_user_id', true)) \
           WITH CHECK (owner_ref <> '')",
    );
    for id in ["probe-rows-insert", "update-moves-row"] {
        let probe = probe(&report, id);
        assert_eq!(probe.verdict, Verdict::Unproven, "{id}: {}", probe.observed);
        assert!(probe.observed.contains("public.notes (no column carries the tenant"), "{id}: {}", probe.observed);
        assert!(!probe.observed.contains("BEFORE trigger"), "{id}: {}", probe.observed);
    }
}

#[test]
fn a_tenant_root_named_in_mixed_case_is_found() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "CREATE TABLE public.\"Accounts\" (id uuid PRIMARY KEY); \
             ALTER TABLE public.\"Accounts\" ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY own ON public.\"Accounts\" USING (id::text = current_setting('app.current_user_id', true)); \
             CREATE TABLE public.\"Docs\" (id uuid PRIMARY KEY, account uuid NOT NULL REFERENCES public.\"Accounts\"); \
             ALTER TABLE public.\"Docs\" ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY own ON public.\"Docs\" USING (account::text = current_setting('app.current_user_id', true))",
        )
        .unwrap();
    let policy = "[rls]\ntenant_roots = [\"public.Accounts\"]\ntenant_setting = \"app.current_user_id\"\n\n\
                  [[table]]\nname = \"public.ai_invocation_summaries\"\nreason = \"telemetry\"\n\n\
                  [[table]]\nname = \"public.execution_requests\"\nreason = \"idempotency keys\"\n";
    let report = fx.check_with(&fx.migrations, audit::Exemptions::parse(policy).unwrap());
    // The declared root's tables are proven; the app's own, which hang from
    // `users`, not from this root, are named as unproven (never a crash).
    let read = probe(&report, "probe-rows-read");
    assert!(read.observed.starts_with("no row of another tenant on 2 tables"), "{}", read.observed);
    assert!(read.observed.contains("unproven on public.users"), "{}", read.observed);
    let update = probe(&report, "update-moves-row");
    assert!(update.observed.starts_with("denied (42501) on 2 tables"), "{}", update.observed);
}

#[test]
fn a_row_the_victim_still_sees_is_a_cross_tenant_write_whatever_the_trigger_did() {
    // A trigger stamps the writer as author; the row stays readable by the
    // tenant it belongs to (user_id): that tenant is the victim, and it still
    // sees the row, so this is no trigger's excuse.
    let t = "current_setting('app.current_user_id', true)";
    let (_, report) = planted(&format!(
        "CREATE TABLE public.notes (id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES users(id), \
                                    author uuid, body text NOT NULL); \
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY r ON public.notes FOR SELECT USING (user_id::text = {t} OR author::text = {t}); \
         CREATE POLICY w ON public.notes FOR INSERT WITH CHECK (author::text = {t}); \
         CREATE POLICY u ON public.notes FOR UPDATE USING (user_id::text = {t}) WITH CHECK (author::text = {t}); \
         CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS \
           $$BEGIN NEW.author := nullif({t}, '')::uuid; RETURN NEW; END$$; \
         CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON public.notes FOR EACH ROW EXECUTE FUNCTION public.stamp()"
    ));
    for id in ["probe-rows-insert", "update-moves-row"] {
        let probe = probe(&report, id);
        assert_eq!(probe.verdict, Verdict::Fail, "{id}: {}", probe.observed);
        assert!(probe.observed.contains("ALLOWED on public.notes"), "{id}: {}", probe.observed);
    }
}

#[test]
fn a_table_name_cannot_break_the_proofs_sql_without_standard_conforming_strings() {
    let fx = Fixture::migrated();
    fx.admin().batch_execute("ALTER DATABASE cogni_template_test SET standard_conforming_strings = off").unwrap();
    // A name that, in a literal read with backslash escapes, would end it.
    let name = dbenv::quote_ident("z\\'::text, false UNION ALL SELECT NULL, false --");
    fx.migrator()
        .batch_execute(&format!(
            "CREATE TABLE public.{name} (owner_user_id uuid REFERENCES users(id), body text); \
             ALTER TABLE public.{name} ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY leaky ON public.{name} USING (current_setting('app.current_user_id', true) <> '')"
        ))
        .unwrap();
    let report = fx.check();
    let read = probe(&report, "probe-rows-read");
    assert_eq!(read.verdict, Verdict::Fail, "{}", read.observed);
    assert!(read.observed.contains("sees rows of public.z\\'"), "{}", read.observed);
}

#[test]
fn an_insert_without_a_tenant_fails_on_a_fresh_and_on_a_pooled_session() {
    let own = "owner_user_id::text = current_setting('app.current_user_id', true)";
    // Reads are the tenant's own; a write with no tenant at all (NULL, a
    // fresh session) passes: an empty table shows it only with made-up rows.
    let (_, report) = planted(&format!(
        "CREATE TABLE public.notes (id uuid PRIMARY KEY, owner_user_id uuid NOT NULL REFERENCES users(id), body text); \
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY r ON public.notes FOR SELECT USING ({own}); \
         CREATE POLICY w ON public.notes FOR INSERT \
           WITH CHECK (current_setting('app.current_user_id', true) IS NULL OR {own})"
    ));
    let null = probe(&report, "no-tenant-insert");
    assert_eq!(null.verdict, Verdict::Fail, "{}", null.observed);
    assert!(null.observed.contains("ALLOWED on public.notes"), "{}", null.observed);
    assert_eq!(probe(&report, "pooled-insert").verdict, Verdict::Pass, "{}", probe(&report, "pooled-insert").observed);
    // The pooled session's '' instead.
    let (_, report) = planted(&format!(
        "CREATE TABLE public.notes (id uuid PRIMARY KEY, owner_user_id uuid NOT NULL REFERENCES users(id), body text); \
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY r ON public.notes FOR SELECT USING ({own}); \
         CREATE POLICY w ON public.notes FOR INSERT \
           WITH CHECK (current_setting('app.current_user_id', true) = '' OR {own})"
    ));
    let pooled = probe(&report, "pooled-insert");
    assert_eq!(pooled.verdict, Verdict::Fail, "{}", pooled.observed);
    assert!(pooled.observed.contains("ALLOWED on public.notes"), "{}", pooled.observed);
    assert_eq!(
        probe(&report, "no-tenant-insert").verdict,
        Verdict::Pass,
        "{}",
        probe(&report, "no-tenant-insert").observed
    );
}
