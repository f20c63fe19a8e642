//! `db-check` on the real-world fixture sets, with the verdict a user would
//! expect: a singular `user` root in its own schema with public posts, an app
//! without RLS, migrations that end drizzle's transaction, an admin-only
//! extension.

use audit::checks::CheckId;
use std::path::PathBuf;

use audit::{Exemptions, Report, Verdict};

use crate::common::{catalog_failures, repo_root, Fixture};

fn set(name: &str) -> PathBuf {
    repo_root().join("crates/drizzle/tests/fixtures/realworld").join(name)
}

fn policy(name: &str) -> Exemptions {
    Exemptions::load(&set(name).join("rls-policy.toml")).unwrap()
}

fn tenancy_note(report: &Report) -> String {
    let check = report.checks.iter().find(|c| c.id == CheckId::RlsTenancy).unwrap();
    check
        .findings
        .iter()
        .map(|f| format!("{:?} {}: {}", f.verdict, f.subject, f.message))
        .collect::<Vec<_>>()
        .join("\n")
}

const ALICE: &str = "00000000-0000-4000-a000-0000000000a1";
const BOB: &str = "00000000-0000-4000-a000-0000000000b2";

/// The own-schema app with two users, a private post and a public one.
fn own_schema_with_rows() -> Fixture {
    let fx = Fixture::provisioned_with(&set("own-schema").join("migrations"), &[("APP_DB_SCHEMAS", "app")]);
    fx.migrate();
    fx.migrator()
        .batch_execute(&format!(
            "INSERT INTO app.\"user\" (id, email) VALUES ('{ALICE}', 'alice@example.com'), ('{BOB}', 'bob@example.com'); \
             INSERT INTO app.post (author_id, visibility, body) VALUES ('{ALICE}', 'private', 'diary'), ('{BOB}', 'public', 'hello'); \
             INSERT INTO app.session (user_id, token, expires_at) VALUES ('{ALICE}', 't1', now() + interval '1 day')"
        ))
        .unwrap();
    fx
}

#[test]
fn a_singular_user_root_in_its_own_schema_with_public_posts_holds_as_declared() {
    let fx = own_schema_with_rows();
    let report = fx.check_with(&fx.migrations, policy("own-schema"));
    assert!(report.holds(), "{}", report.to_text());
    assert!(tenancy_note(&report).contains("declared in the policy file: app.user"), "{}", tenancy_note(&report));
    assert_eq!(report.checks.iter().find(|c| c.id == CheckId::RlsTenancy).unwrap().checked, 3);
    assert_eq!(report.rls.verdict, Verdict::Pass, "{}", report.rls.message);
    assert!(report.rls.message.contains("app.post"), "the public rows are checked too: {}", report.rls.message);
    let insert = report.probes.iter().find(|p| p.id == "cross-tenant-insert").unwrap();
    assert_eq!(insert.verdict, Verdict::Pass, "{}", insert.observed);
    assert!(report.to_text().contains("rls-policy.toml"), "the report names the file it read");
}

#[test]
fn without_the_policy_file_the_root_is_found_and_the_public_rows_are_named() {
    let fx = own_schema_with_rows();
    let report = fx.check_with(&fx.migrations, Exemptions::default());
    let note = tenancy_note(&report);
    assert!(note.contains("took `app.user` as the tenant root"), "{note}");
    // Public posts are visible without a tenant: until the file says they
    // are public by design, that is a leak.
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.rls.message);
    assert!(report.rls.message.contains("app.post"), "{}", report.rls.message);
}

#[test]
fn public_rows_beyond_the_declared_predicate_are_a_leak() {
    let fx = own_schema_with_rows();
    fx.migrator().batch_execute("CREATE POLICY everything ON app.post FOR SELECT USING (true)").unwrap();
    let report = fx.check_with(&fx.migrations, policy("own-schema"));
    assert!(!report.holds());
    assert_eq!(report.rls.verdict, Verdict::Fail, "{}", report.rls.message);
    assert!(!catalog_failures(&report, CheckId::RlsPolicyContent).is_empty(), "{}", report.to_text());
}

#[test]
fn an_app_without_rls_holds_on_the_role_split_alone() {
    let fx = Fixture::provisioned_with(&set("no-rls").join("migrations"), &[]);
    fx.migrate();
    fx.migrator().batch_execute("INSERT INTO users (email) VALUES ('a@example.com')").unwrap();
    let report = fx.check_with(&fx.migrations, policy("no-rls"));
    assert!(report.holds(), "{}", report.to_text());
    assert!(tenancy_note(&report).contains("not applicable: the app declares no RLS"));
    assert_eq!(report.rls.verdict, Verdict::Unproven, "a declaration is not a proof");
    assert!(report.rls.message.contains("one deployment per customer"), "{}", report.rls.message);
    assert_eq!(report.unproven(), ["row-level security with rows"]);

    // Without the file: no dozens of failures, and no silent pass either.
    let report = fx.check_with(&fx.migrations, Exemptions::default());
    assert!(report.holds(), "{}", report.to_text());
    assert_eq!(report.unproven(), ["rls-tenancy", "row-level security with rows"], "{}", report.to_text());
    assert!(tenancy_note(&report).contains("no table of the app schemas uses RLS"));
    assert!(report.to_text().contains("the model holds, but unproven: rls-tenancy"), "{}", report.to_text());
}

#[test]
fn migrations_that_end_the_transaction_leave_a_database_that_holds() {
    let fx = Fixture::provisioned_with(&set("commit-batch").join("migrations"), &[]);
    let outcome = fx.migrate();
    assert_eq!(outcome.applied.len(), 5);
    let report = fx.check_with(&fx.migrations, Exemptions::default());
    assert!(report.holds(), "{}", report.to_text());
}

#[test]
fn pending_migrations_are_a_warning_not_a_violation() {
    let fx = Fixture::provisioned_with(&set("commit-batch").join("migrations"), &[]);
    let report = fx.check_with(&fx.migrations, Exemptions::default());
    assert!(report.holds(), "{}", report.to_text());
    assert!(report.notes.iter().any(|n| n.contains("5 migrations are pending")), "{:?}", report.notes);
}

#[test]
fn an_admin_only_extension_holds_with_app_db_extensions() {
    let fx = Fixture::provisioned_with(&set("extension").join("migrations"), &[("APP_DB_EXTENSIONS", "earthdistance")]);
    fx.migrate();
    let report = fx.check_with(&fx.migrations, Exemptions::default());
    assert!(report.holds(), "{}", report.to_text());
    let owner: String = fx
        .admin()
        .query_one("SELECT pg_get_userbyid(extowner)::text FROM pg_extension WHERE extname = 'earthdistance'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "postgres", "created by the admin during provisioning");
}

/// A declared root that does not exist (yet: a pending migration may
/// create it) leaves tenancy unproven and is named, never a pass.
#[test]
fn a_declared_root_that_does_not_exist_is_unproven_and_named() {
    let fx = Fixture::migrated();
    let exemptions = Exemptions::parse("[rls]\ntenant_roots = [\"public.tenants\"]\n").unwrap();
    let report = fx.check_with(&fx.migrations, exemptions);
    let tenancy = report.checks.iter().find(|c| c.id == CheckId::RlsTenancy).unwrap();
    assert_eq!(tenancy.verdict(), audit::Verdict::Unproven);
    assert!(tenancy.findings.iter().any(|f| f.subject == "public.tenants" && f.message.contains("declared")));
    assert!(
        report.notes.iter().any(|n| n.contains("the tenant root `public.tenants` names no relation")),
        "{:?}",
        report.notes
    );
}

/// After plain `drizzle-kit migrate` a schema the migrations created has
/// no grants for the runtime roles: db-check names the one cause and the one
/// fix once, not per object; `db-migrate` with nothing pending fixes it.
#[test]
fn missing_grants_are_one_cause_with_one_fix() {
    let fx = own_schema_with_rows();
    let revoke = "REVOKE ALL ON ALL TABLES IN SCHEMA app FROM app_user, app_service; \
                  REVOKE ALL ON ALL SEQUENCES IN SCHEMA app FROM app_user, app_service; \
                  REVOKE USAGE ON SCHEMA app FROM app_user, app_service; \
                  ALTER DEFAULT PRIVILEGES IN SCHEMA app REVOKE ALL ON TABLES FROM app_user, app_service; \
                  ALTER DEFAULT PRIVILEGES IN SCHEMA app REVOKE ALL ON SEQUENCES FROM app_user, app_service";
    fx.migrator().batch_execute(revoke).unwrap();
    let report = fx.check_with(&fx.migrations, policy("own-schema"));
    assert!(!report.holds());
    let groups = report.missing_grants_only().unwrap_or_else(|| panic!("{}", report.to_text()));
    let checks: Vec<&str> = groups.iter().map(|(check, _)| *check).collect();
    assert_eq!(checks, ["schema-acl", "table-acl", "default-privileges"], "{groups:?}");
    let text = report.to_text();
    assert!(text.contains("one cause: grants the model gives the runtime roles are missing"), "{text}");
    assert_eq!(text.matches("cargo xtask db-migrate").count(), 1, "{text}");
    assert!(text.contains("✗ table-acl: app.post, app.session, app.user"), "{text}");
    assert!(report.to_json()["cause"]["fix"].as_str().unwrap().contains("db-migrate"));

    // A grant beyond the model beside the missing ones is a cause of its own.
    fx.migrator().batch_execute("GRANT TRUNCATE ON app.post TO app_user").unwrap();
    let report = fx.check_with(&fx.migrations, policy("own-schema"));
    assert!(report.missing_grants_only().is_none(), "{}", report.to_text());

    // The fix: db-migrate with nothing pending.
    fx.migrator().batch_execute("REVOKE TRUNCATE ON app.post FROM app_user").unwrap();
    let outcome = fx.migrate();
    assert!(outcome.applied.is_empty() && !outcome.granted.is_empty(), "{outcome:?}");
    let report = fx.check_with(&fx.migrations, policy("own-schema"));
    assert!(report.holds(), "{}", report.to_text());
}
