//! The runner's grants follow intent: DML only on tables (and views that run
//! as their caller), nothing on what the policy file keeps from a role
//! (`[[private]]`), and a revoke a migration made stays.

use crate::common::{sqlstate, Fixture, TestFolder};

fn holds(fx: &Fixture, db: &str, role: &str, relation: &str) -> Vec<&'static str> {
    let mut admin = fx.admin(db);
    ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .into_iter()
        .filter(|p| admin.query_one("SELECT has_table_privilege($1, $2, $3)", &[&role, &relation, p]).unwrap().get(0))
        .collect()
}

const DML: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];
const NOTHING: [&str; 0] = [];

#[test]
fn the_runner_grants_tables_keeps_private_relations_private_and_leaves_owner_rights_relations_alone() {
    let fx = Fixture::bare();
    let extra = [("APP_DB_SCHEMAS", "public,app")];
    fx.provision_with("db", &extra);
    let mut folder = TestFolder::new();
    // A schema the migration creates has no default privileges yet: the
    // runner grants what is missing after the batch.
    folder.add(
        "0000_app",
        1_700_000_000_000,
        b"CREATE SCHEMA app;\n--> statement-breakpoint\n\
          CREATE TABLE app.notes (id int PRIMARY KEY, body text);\n--> statement-breakpoint\n\
          CREATE TABLE app.audit_log (id int PRIMARY KEY, body text);\n--> statement-breakpoint\n\
          CREATE MATERIALIZED VIEW app.counts AS SELECT count(*) AS n FROM app.notes;\n--> statement-breakpoint\n\
          CREATE VIEW app.bodies AS SELECT body FROM app.notes;",
    );
    // In `public` the migrator's default privileges grant at CREATE time:
    // the runner takes back what the policy file keeps private, and a
    // migration's own revoke on a materialized view stays.
    folder.add(
        "0001_public",
        1_700_000_000_001,
        b"CREATE TABLE public.secrets (id int PRIMARY KEY);\n--> statement-breakpoint\n\
          CREATE TABLE public.posts (id int PRIMARY KEY);\n--> statement-breakpoint\n\
          CREATE TABLE public.secrets_log (at date NOT NULL) PARTITION BY RANGE (at);\n--> statement-breakpoint\n\
          CREATE TABLE public.secrets_log_2026 PARTITION OF public.secrets_log \
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');\n--> statement-breakpoint\n\
          CREATE MATERIALIZED VIEW public.post_count AS SELECT count(*) AS n FROM public.posts;\n--> statement-breakpoint\n\
          REVOKE ALL ON public.post_count FROM app_user, app_service;",
    );
    let mut config = fx.config_with("db", &extra);
    config.policy = roles::Exemptions::parse(
        "[[private]]\nname = \"app.audit_log\"\nroles = [\"app_user\"]\nreason = \"operators only\"\n\n\
         [[private]]\nname = \"public.secrets\"\nroles = [\"app_user\", \"app_service\"]\nreason = \"migrator only\"\n\n\
         [[private]]\nname = \"public.secrets_log\"\nroles = [\"app_user\"]\nreason = \"migrator only\"\n",
    )
    .unwrap();
    let outcome = drizzle::migrate_builtin(&config, &folder.read(), false, &mut drizzle::Silent).unwrap();
    assert!(
        outcome.granted.iter().any(|g| g.starts_with("REVOKE ALL ON TABLE public.secrets FROM")),
        "{:?}",
        outcome.granted
    );
    assert_eq!(holds(&fx, "db", "app_user", "app.notes"), DML);
    assert_eq!(holds(&fx, "db", "app_user", "app.audit_log"), NOTHING, "private for app_user");
    assert_eq!(holds(&fx, "db", "app_service", "app.audit_log"), DML);
    assert_eq!(holds(&fx, "db", "app_user", "app.counts"), NOTHING, "no grant on a materialized view");
    assert_eq!(holds(&fx, "db", "app_user", "app.bodies"), NOTHING, "no grant on a view that runs as its owner");
    assert_eq!(holds(&fx, "db", "app_user", "public.secrets"), NOTHING);
    assert_eq!(holds(&fx, "db", "app_service", "public.secrets"), NOTHING);
    assert_eq!(holds(&fx, "db", "app_user", "public.posts"), DML);
    assert_eq!(holds(&fx, "db", "app_user", "public.secrets_log_2026"), NOTHING, "a partition of a private table");
    assert_eq!(holds(&fx, "db", "app_service", "public.secrets_log_2026"), DML);
    assert_eq!(holds(&fx, "db", "app_user", "public.post_count"), NOTHING, "the migration's revoke stays");
    let mut app = fx.connect_as("app_user", "db");
    assert_eq!(sqlstate(&mut app, "SELECT * FROM app.audit_log").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut app, "SELECT * FROM public.secrets").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut app, "SELECT * FROM app.notes"), None);

    // A second run has nothing to apply and nothing to grant.
    let again = drizzle::migrate_builtin(&config, &folder.read(), false, &mut drizzle::Silent).unwrap();
    assert!(again.granted.is_empty(), "{:?}", again.granted);
}
