//! On a correct database the model holds, with a constant number of queries.

use audit::{Exemptions, Verdict};

use crate::common::{catalog_failures, Fixture};

#[test]
fn a_provisioned_and_migrated_database_holds() {
    let fx = Fixture::migrated();
    let report = fx.check();
    assert!(report.holds(), "{}", report.to_text());
    assert_eq!(report.rls.verdict, Verdict::Pass, "the seed's rows prove RLS: {}", report.rls.message);
    let denied = report.probes.iter().filter(|p| p.expected == "denied (42501)" && p.verdict == Verdict::Pass).count();
    assert!(denied >= 2 * 25, "at least 25 forbidden statements per role were refused: {denied}");
    assert!(report.residuals.iter().any(|r| r.id == "own-password"));
    // What one app_user session can do to another is listed, not judged.
    for id in ["read-own-role-queries", "terminate-own-role", "listen-notify"] {
        assert!(report.residuals.iter().any(|r| r.id == id && r.role == "app_user"), "{id}");
    }
    // Every exemption is shown.
    assert_eq!(report.exemptions.len(), 2);
    // The three renderings agree on the verdict.
    assert_eq!(report.to_json()["holds"], true);
    assert!(report.to_markdown().contains("✅ the model holds"));
    assert!(report.to_text().contains("the model holds"));
}

#[test]
fn the_same_number_of_queries_for_a_thousand_more_tables() {
    let fx = Fixture::migrated();
    let before = fx.check();
    let mut migrator = fx.migrator();
    let mut ddl = String::new();
    for i in 0..1000 {
        ddl.push_str(&format!(
            "CREATE TABLE public.extra_{i} (id serial PRIMARY KEY, owner_user_id uuid REFERENCES users(id)); \
                               ALTER TABLE public.extra_{i} ENABLE ROW LEVEL SECURITY;"
        ));
    }
    migrator.batch_execute(&ddl).unwrap();
    let after = fx.check();
    assert!(after.holds(), "{}", after.to_text());
    assert_eq!(after.catalog_queries, before.catalog_queries);
    assert_eq!(after.queries, before.queries);
    let tables = after.checks.iter().find(|c| c.id == "table-acl").unwrap().checked;
    assert_eq!(tables, before.checks.iter().find(|c| c.id == "table-acl").unwrap().checked + 1000);
}

#[test]
fn an_exempted_table_is_reported_as_exempted() {
    let fx = Fixture::migrated();
    fx.migrator().batch_execute("CREATE TABLE public.audit_trail (id int, user_id uuid REFERENCES users(id))").unwrap();
    let exemptions = Exemptions::parse(
        "[[table]]\nname = \"public.audit_trail\"\nreason = \"append-only, read by operators only\"\n",
    )
    .unwrap();
    let report = fx.check_with(&fx.migrations, exemptions);
    assert!(report.holds(), "{}", report.to_text());
    assert!(catalog_failures(&report, "rls-tenancy").is_empty());
    let tenancy = report.checks.iter().find(|c| c.id == "rls-tenancy").unwrap();
    let exempt: Vec<&str> =
        tenancy.findings.iter().filter(|f| f.verdict == Verdict::Exempt).map(|f| f.subject.as_str()).collect();
    assert_eq!(exempt, ["public.audit_trail"]);
    assert!(report.exemptions.iter().any(|(e, needed)| e.name == "public.audit_trail" && *needed));
    assert!(report.to_text().contains("~ public.audit_trail"), "{}", report.to_text());
}

#[test]
fn rls_without_rows_is_unproven_not_a_pass() {
    let fx = Fixture::provisioned();
    fx.migrator()
        .batch_execute(
            "CREATE TABLE public.users (id uuid PRIMARY KEY); ALTER TABLE public.users ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY own ON public.users USING (id = nullif(current_setting('app.current_user_id', true), '')::uuid);",
        )
        .unwrap();
    let report = fx.check_with(&fx.migrations, Exemptions::default());
    assert_eq!(report.rls.verdict, Verdict::Unproven, "{}", report.rls.message);
}
