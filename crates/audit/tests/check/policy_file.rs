//! The policy file read the same way by every check: an entry exempts what
//! it names in the catalog checks and in the live probes alike, an entry
//! is "not needed" only when no check used it, and a file that contradicts
//! the database is refused.

use audit::checks::CheckId;
use audit::{Exemptions, Report, Verdict};

use crate::common::{repo_root, Fixture};

const SYSTEM_USER: &str = "00000000-0000-4000-a000-000000000001";

/// The app's own policy file with `more` appended.
fn app_policy_with(more: &str) -> Exemptions {
    let text = std::fs::read_to_string(repo_root().join(roles::exemptions::POLICY_FILE)).unwrap();
    Exemptions::parse(&format!("{text}\n{more}")).unwrap()
}

fn used(report: &Report, name: &str) -> bool {
    report.exemptions.iter().find(|(e, _)| e.name == name).map(|(_, used)| *used).unwrap_or_else(|| panic!("{name}"))
}

/// A `feedback` table with RLS, the policies `policies` (SQL), and one row
/// of the system user's.
fn feedback(fx: &Fixture, policies: &str) {
    fx.migrator()
        .batch_execute(&format!(
            "CREATE TABLE public.feedback (id serial PRIMARY KEY, user_id uuid REFERENCES public.users (id), \
                                           body text NOT NULL); \
             ALTER TABLE public.feedback ENABLE ROW LEVEL SECURITY; {policies} \
             INSERT INTO public.feedback (user_id, body) VALUES ('{SYSTEM_USER}', 'works')"
        ))
        .unwrap();
}

/// Anonymous feedback: anyone may insert (reviewed), each user reads their own.
#[test]
fn a_table_whose_policies_are_reviewed_is_exempt_in_the_live_probes_too() {
    let fx = Fixture::migrated();
    feedback(&fx, "CREATE POLICY own_read ON public.feedback FOR SELECT USING (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid); CREATE POLICY anyone_writes ON public.feedback FOR INSERT WITH CHECK (true);");
    let without = fx.check_with(&fx.migrations, app_policy_with(""));
    assert!(!without.holds(), "the hole is real without the entry:\n{}", without.to_text());

    let entry = "[[policy]]\nname = \"public.feedback\"\nreason = \"anonymous feedback: anyone may write it\"\n";
    let report = fx.check_with(&fx.migrations, app_policy_with(entry));
    assert!(report.holds(), "{}", report.to_text());
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert_eq!(insert.verdict, Verdict::Pass, "{}", insert.observed);
    assert!(insert.observed.contains("public.feedback") && insert.observed.contains("exempt"), "{}", insert.observed);
    assert!(used(&report, "public.feedback"));
    // Every other table is still proven: the entry exempts one table only.
    assert!(insert.observed.starts_with("denied (42501) on "), "{}", insert.observed);
}

/// The entry exempts what the catalog check exempts for it (an always-true
/// `WITH CHECK` of `INSERT`): a read that leaks on the same table is still
/// a violation.
#[test]
fn a_policy_reviewed_for_inserts_does_not_exempt_reads() {
    let fx = Fixture::migrated();
    feedback(&fx, "CREATE POLICY leaky_read ON public.feedback FOR SELECT USING (body IS NOT NULL); CREATE POLICY anyone_writes ON public.feedback FOR INSERT WITH CHECK (true);");
    let entry = "[[policy]]\nname = \"public.feedback\"\nreason = \"anonymous feedback: anyone may write it\"\n";
    let report = fx.check_with(&fx.migrations, app_policy_with(entry));
    assert!(!report.holds(), "{}", report.to_text());
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.rls.message);
    assert!(report.rls.message.contains("public.feedback"), "{}", report.rls.message);
}

/// A `[[public]]` entry the policy check and the RLS behaviour check rely
/// on is used; one that nothing relies on is "not needed".
#[test]
fn load_bearing_public_entries_are_marked_used() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(&format!(
            "CREATE TABLE public.plans (id serial PRIMARY KEY, owner uuid REFERENCES public.users (id), name text); \
             ALTER TABLE public.plans ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY everyone_reads ON public.plans FOR SELECT USING (true); \
             CREATE POLICY own_writes ON public.plans FOR INSERT \
               WITH CHECK (owner = nullif(current_setting('app.current_user_id', true), '')::uuid); \
             INSERT INTO public.plans (owner, name) VALUES ('{SYSTEM_USER}', 'free')"
        ))
        .unwrap();
    let entries = "[[public]]\nname = \"public.plans\"\nreason = \"the price list\"\n\
                   [[public]]\nname = \"public.users\"\nreason = \"not public at all: nothing relies on it\"\n";
    let report = fx.check_with(&fx.migrations, app_policy_with(entries));
    assert!(used(&report, "public.plans"), "{}", report.to_text());
    assert!(report.to_text().contains("~ public public.users: not public at all: nothing relies on it"));
}

#[test]
fn a_tenant_setting_no_policy_reads_is_refused() {
    let fx = Fixture::migrated();
    let file = app_policy_with("").rls;
    let mut exemptions = app_policy_with("");
    exemptions.rls = roles::exemptions::RlsDeclaration { tenant_setting: Some("app.tenant_id".into()), ..file };
    let config =
        audit::CheckConfig::new(fx.env().checking().unwrap(), Some(fx.migrations.clone()), exemptions).unwrap();
    let error = format!("{:#}", audit::check(&config).unwrap_err());
    assert!(error.contains("`[rls] tenant_setting = \"app.tenant_id\"`"), "{error}");
    assert!(error.contains("no RLS policy of the database reads it; they read `app.current_user_id`"), "{error}");
}

#[test]
fn no_rls_declared_on_a_database_with_rls_policies_is_refused() {
    let fx = Fixture::migrated();
    let exemptions = Exemptions::parse("[rls]\nenabled = false\nreason = \"one tenant per database\"\n").unwrap();
    let config =
        audit::CheckConfig::new(fx.env().checking().unwrap(), Some(fx.migrations.clone()), exemptions).unwrap();
    let error = format!("{:#}", audit::check(&config).unwrap_err());
    assert!(error.contains("`[rls] enabled = false`, but"), "{error}");
    assert!(error.contains("row-level security with policies (public."), "{error}");
}

#[test]
fn an_entry_that_names_nothing_is_a_warning() {
    let fx = Fixture::migrated();
    let entry = "[[public]]\nname = \"public.price_list\"\nreason = \"a later migration adds it\"\n";
    let report = fx.check_with(&fx.migrations, app_policy_with(entry));
    assert!(report.holds(), "{}", report.to_text());
    assert!(
        report.notes.iter().any(|n| n.contains("[[public]] `public.price_list` names no relation of the database")),
        "{:?}",
        report.notes
    );
}

/// An entry written to accept a policy that reads session state exempts
/// nothing in the live probes: the permissive `WITH CHECK` beside it, which
/// the catalog check never flagged, is still a cross-tenant write.
#[test]
fn a_policy_reviewed_for_its_session_state_exempts_no_probe() {
    let fx = Fixture::migrated();
    feedback(&fx, "CREATE POLICY own ON public.feedback USING (user_id = nullif(current_setting('app.current_user_id', true), '')::uuid OR current_setting('application_name') = 'admin') WITH CHECK (user_id IS NOT NULL);");
    let entry = "[[policy]]\nname = \"public.feedback\"\nreason = \"the admin console sets application_name\"\n";
    let report = fx.check_with(&fx.migrations, app_policy_with(entry));
    assert!(!report.holds(), "{}", report.to_text());
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert_eq!(insert.verdict, Verdict::Fail, "{}", insert.observed);
    assert!(insert.observed.contains("ALLOWED on public.feedback"), "{}", insert.observed);
}

/// A setting only a trigger reads is not what the policies read.
#[test]
fn a_tenant_setting_only_a_trigger_reads_is_refused() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN PERFORM CURRENT_SETTING('app.audit_user', true); RETURN NEW; END $$; \
             CREATE TRIGGER stamp BEFORE INSERT ON public.users FOR EACH ROW EXECUTE FUNCTION public.stamp()",
        )
        .unwrap();
    let mut exemptions = app_policy_with("");
    exemptions.rls.tenant_setting = Some("app.audit_user".into());
    let config =
        audit::CheckConfig::new(fx.env().checking().unwrap(), Some(fx.migrations.clone()), exemptions).unwrap();
    let error = format!("{:#}", audit::check(&config).unwrap_err());
    assert!(error.contains("no RLS policy of the database reads it; they read `app.current_user_id`"), "{error}");
}

/// One declared root missing (renamed, or not created yet) beside one that
/// exists: the existing one is still checked, and a table that reaches it
/// without RLS still fails.
#[test]
fn a_missing_root_beside_an_existing_one_leaves_the_existing_one_checked() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute("CREATE TABLE public.notes (id serial PRIMARY KEY, owner uuid REFERENCES public.users (id))")
        .unwrap();
    let mut exemptions = app_policy_with("");
    exemptions.rls.tenant_roots = vec!["public.users".into(), "public.workspaces".into()];
    let report = fx.check_with(&fx.migrations, exemptions);
    assert!(!report.holds(), "{}", report.to_text());
    let tenancy = report.checks.iter().find(|c| c.id == CheckId::RlsTenancy).unwrap();
    assert!(
        tenancy.findings.iter().any(|f| f.subject == "public.notes" && f.verdict == Verdict::Fail),
        "{}",
        report.to_text()
    );
    assert!(tenancy.findings.iter().any(|f| f.subject == "public.workspaces" && f.verdict == Verdict::Unproven));
}
