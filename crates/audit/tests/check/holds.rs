//! On a correct database the model holds, with a constant number of queries.

use audit::checks::CheckId;
use audit::{Exemptions, Verdict};
use roles::drift::Check;

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
    // Tenancy with probe rows: every tenant table, empty ones included.
    for id in ["probe-rows-read", "probe-rows-insert", "update-moves-row", "no-tenant-insert", "pooled-insert"] {
        let probe = report.probes.iter().find(|p| p.id == id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(probe.verdict, Verdict::Pass, "{id}: {}", probe.observed);
        println!("{id}: {}", probe.observed);
    }
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
    let tables = after.checks.iter().find(|c| c.id == CheckId::Model(Check::TableAcl)).unwrap().checked;
    assert_eq!(tables, before.checks.iter().find(|c| c.id == CheckId::Model(Check::TableAcl)).unwrap().checked + 1000);
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
    assert!(catalog_failures(&report, CheckId::RlsTenancy).is_empty());
    let tenancy = report.checks.iter().find(|c| c.id == CheckId::RlsTenancy).unwrap();
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

#[test]
fn a_private_table_and_a_revoked_materialized_view_hold_as_declared() {
    let fx = Fixture::migrated();
    fx.migrator()
        .batch_execute(
            "CREATE TABLE public.ops_log (id int PRIMARY KEY, body text); \
             REVOKE ALL ON public.ops_log FROM app_user; \
             CREATE MATERIALIZED VIEW public.ops_count AS SELECT count(*) AS n FROM public.ops_log; \
             REVOKE ALL ON public.ops_count FROM app_user, app_service",
        )
        .unwrap();
    let policy = std::fs::read_to_string(crate::common::repo_root().join(roles::exemptions::POLICY_FILE)).unwrap();
    let undeclared = format!("{policy}\n[[table]]\nname = \"public.ops_log\"\nreason = \"operators' log\"\n");
    let private = format!(
        "{undeclared}\n[[private]]\nname = \"public.ops_log\"\nroles = [\"app_user\"]\nreason = \"operators only\"\n"
    );
    let with_private = Exemptions::parse(&private).unwrap();
    let report = fx.check_with(&fx.migrations, with_private.clone());
    assert!(report.holds(), "{}", report.to_text());
    assert!(report
        .exemptions
        .iter()
        .any(|(e, used)| e.name == "public.ops_log" && e.kind == roles::exemptions::Kind::Private && *used));

    // Without the declaration the revoke is drift, named with its fix.
    let undeclared = Exemptions::parse(&undeclared).unwrap();
    let report = fx.check_with(&fx.migrations, undeclared);
    assert!(!report.holds());
    let found = catalog_failures(&report, CheckId::Model(Check::TableAcl));
    assert!(found.iter().any(|f| f.contains("ops_log") && f.contains("app_user holds nothing")), "{found:?}");
    assert!(!found.iter().any(|f| f.contains("ops_count")), "a matview wants no grant: {found:?}");

    // Declared private but granted: named.
    fx.migrator().batch_execute("GRANT SELECT ON public.ops_log TO app_user").unwrap();
    let report = fx.check_with(&fx.migrations, with_private);
    let found = catalog_failures(&report, CheckId::Model(Check::TableAcl));
    assert!(
        found.iter().any(|f| f.contains("ops_log") && f.contains("app_user holds SELECT (expected nothing)")),
        "{found:?}"
    );
}

/// The logins the server logged for database `db` after `from` bytes of
/// its log: `(user, application_name)`.
fn logins_after(log: &str, from: usize, db: &str) -> Vec<String> {
    log[from..]
        .lines()
        .filter_map(|line| line.split("connection authorized: ").nth(1))
        .filter(|rest| rest.contains(&format!("database={db}")))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_check_logs_in_once_per_dsn_and_twice_more_for_the_tenancy_proofs() {
    let fx = Fixture::migrated();
    let mut admin = fx.kit.admin("postgres");
    admin.batch_execute("ALTER SYSTEM SET log_connections = on").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    // A session forked after the postmaster reloaded sees it on (18 shows
    // what it logs: `receipt,authentication,authorization`).
    let started = std::time::Instant::now();
    loop {
        let shown: String = fx.kit.admin("postgres").query_one("SHOW log_connections", &[]).unwrap().get(0);
        if shown == "on" || shown.contains("authorization") {
            break;
        }
        assert!(started.elapsed().as_secs() < 10, "log_connections is still `{shown}`");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let from = fx.kit.server.log().len();
    let report = fx.check();
    assert!(report.holds(), "{}", report.to_text());
    let mut logins = logins_after(&fx.kit.server.log(), from, crate::common::DB);
    logins.sort();
    // Each DSN's route session goes on to the catalog audit (the migrator's)
    // and the probes (the runtime roles'); the service role samples the
    // tenant tables on one more, and the tenancy proofs need a runtime
    // session that has never set the tenant.
    assert_eq!(
        logins,
        ["user=app_migrator", "user=app_service", "user=app_service", "user=app_user", "user=app_user"],
        "{}",
        &fx.kit.server.log()[from..]
    );
}
