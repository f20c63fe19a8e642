//! Grants follow intent: what the policy file keeps from a runtime role
//! (`[[private]]`) and what the migrations revoked on a relation the writers
//! do not grant (a materialized view, a view that runs as its owner) stay so
//! through `db-provision`; a conversion never widens a runtime role's access
//! to an existing relation without being told.

use crate::common::{sqlstate, Fixture, DB};
use roles::Refusal;

const PRIVATE: &str =
    "[[private]]\nname = \"public.audit_log\"\nroles = [\"app_user\"]\nreason = \"operators only\"\n\n\
                       [[private]]\nname = \"public.events\"\nroles = [\"app_user\"]\nreason = \"operators only\"\n";

fn options(policy: &str) -> roles::Options {
    roles::Options { exemptions: roles::Exemptions::parse(policy).unwrap(), ..Default::default() }
}

fn provision_with(fx: &Fixture, options: &roles::Options) -> Result<roles::Outcome, String> {
    roles::provision(&fx.settings(), options, &mut roles::Quiet).map_err(|e| format!("{e:#}"))
}

/// `role`'s privileges on `relation`, as the server answers them.
fn holds(fx: &Fixture, role: &str, relation: &str) -> Vec<&'static str> {
    let mut admin = fx.admin(DB);
    ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .into_iter()
        .filter(|privilege| {
            admin.query_one("SELECT has_table_privilege($1, $2, $3)", &[&role, &relation, privilege]).unwrap().get(0)
        })
        .collect()
}

const DML: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

#[test]
fn a_private_table_and_a_revoked_materialized_view_stay_as_declared() {
    let fx = Fixture::new();
    fx.provision();
    // What migrations create gets the migrator's default privileges: DML on
    // every kind of relation, PostgreSQL's TABLES covering them all.
    fx.migrator()
        .batch_execute(
            "CREATE TABLE notes (id serial PRIMARY KEY, body text); \
             CREATE TABLE audit_log (id serial PRIMARY KEY, body text); \
             CREATE TABLE events (at date NOT NULL, body text) PARTITION BY RANGE (at); \
             CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); \
             CREATE MATERIALIZED VIEW note_counts AS SELECT count(*) AS n FROM notes; \
             CREATE VIEW note_bodies AS SELECT body FROM notes; \
             REVOKE ALL ON note_counts FROM app_user, app_service; \
             REVOKE INSERT, UPDATE, DELETE ON note_bodies FROM app_user",
        )
        .unwrap();
    let policy = options(PRIVATE);
    let outcome = provision_with(&fx, &policy).unwrap();
    assert!(!outcome.plan.is_empty(), "the private table's default grant is taken back");
    assert_eq!(holds(&fx, "app_user", "audit_log"), Vec::<&str>::new(), "private for app_user");
    assert_eq!(holds(&fx, "app_service", "audit_log"), DML, "not private for app_service");
    assert_eq!(holds(&fx, "app_user", "events"), Vec::<&str>::new());
    assert_eq!(holds(&fx, "app_user", "events_2026"), Vec::<&str>::new(), "a partition of a private table");
    assert_eq!(holds(&fx, "app_service", "events_2026"), DML);
    assert_eq!(holds(&fx, "app_user", "note_counts"), Vec::<&str>::new(), "the revoke on the matview stays");
    assert_eq!(holds(&fx, "app_service", "note_counts"), Vec::<&str>::new());
    assert_eq!(holds(&fx, "app_user", "note_bodies"), ["SELECT"], "the owner-rights view keeps what was left");
    assert_eq!(holds(&fx, "app_user", "notes"), DML);
    let mut runtime = fx.runtime();
    assert_eq!(sqlstate(&mut runtime, "SELECT * FROM audit_log").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut runtime, "SELECT * FROM events_2026").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut runtime, "SELECT * FROM note_counts").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut runtime, "INSERT INTO note_bodies VALUES ('x')").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut runtime, "SELECT * FROM note_bodies"), None);
    assert!(provision_with(&fx, &policy).unwrap().plan.is_empty(), "a re-run converges");

    // Without the declaration the table is an app table like any other.
    provision_with(&fx, &roles::Options::default()).unwrap();
    assert_eq!(holds(&fx, "app_user", "audit_log"), DML);
    assert_eq!(holds(&fx, "app_user", "note_counts"), Vec::<&str>::new(), "never granted on a matview");

    // A typo in the roles is an error before any change, not a silent grant.
    let typo = options(&PRIVATE.replace("\"app_user\"", "\"app_usr\""));
    let message = provision_with(&fx, &typo).unwrap_err();
    assert!(message.contains("names `app_usr`, which is not a runtime role"), "{message}");
}

/// A legacy database: `app_user` owns everything, `app_service` exists and
/// was given SELECT on the materialized view alone.
fn legacy(fx: &Fixture) {
    let mut root = fx.admin("postgres");
    root.batch_execute(
        "CREATE ROLE app_user LOGIN PASSWORD 'password'; \
         CREATE ROLE app_service LOGIN BYPASSRLS PASSWORD 'service_password'",
    )
    .unwrap();
    root.batch_execute(&format!("CREATE DATABASE {DB} OWNER app_user")).unwrap();
    fx.admin(DB).batch_execute("ALTER SCHEMA public OWNER TO app_user").unwrap();
    fx.runtime()
        .batch_execute(
            "CREATE TABLE internal (id int PRIMARY KEY, body text); INSERT INTO internal VALUES (1, 'kept'); \
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM internal; \
             GRANT SELECT ON totals TO app_service",
        )
        .unwrap();
}

#[test]
fn a_conversion_never_widens_silently() {
    let fx = Fixture::new();
    legacy(&fx);
    let error = roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let refusals = testkit::refusals(&error);
    assert_eq!(
        refusals,
        [Refusal::Widening {
            gains: vec!["`app_service` gains SELECT, INSERT, UPDATE, DELETE on `public.internal`".into()]
        }],
        "SELECT on the matview `public.totals` is not widened"
    );
    assert_eq!(holds(&fx, "app_service", "internal"), Vec::<&str>::new());

    // The policy file keeps the table from app_service: converted, with no
    // grant for it; the former owner keeps its reads of the matview.
    let kept = "[[private]]\nname = \"public.internal\"\nroles = [\"app_service\"]\nreason = \"app only\"\n";
    provision_with(&fx, &options(kept)).unwrap();
    assert_eq!(holds(&fx, "app_service", "internal"), Vec::<&str>::new());
    assert_eq!(holds(&fx, "app_user", "internal"), DML);
    assert_eq!(holds(&fx, "app_user", "totals"), DML, "the former owner keeps its access to the matview");
    assert_eq!(holds(&fx, "app_service", "totals"), ["SELECT"], "nothing added to what it had");
    assert_eq!(sqlstate(&mut fx.service(), "SELECT * FROM internal").as_deref(), Some("42501"));
    assert_eq!(sqlstate(&mut fx.runtime(), "SELECT * FROM totals"), None);
    assert!(provision_with(&fx, &options(kept)).unwrap().plan.is_empty(), "a re-run converges");
}

#[test]
fn a_widening_is_applied_when_accepted_and_says_so() {
    let fx = Fixture::new();
    legacy(&fx);
    let accepted = roles::Options {
        confirmed: roles::Confirmations { widening: true, ..Default::default() },
        ..Default::default()
    };
    let outcome = provision_with(&fx, &accepted).unwrap();
    let summaries: Vec<&str> = outcome.plan.steps.iter().map(|s| s.summary.as_str()).collect();
    assert!(
        summaries.iter().any(|s| s.contains("widens, accepted: `app_service` gains SELECT, INSERT, UPDATE, DELETE")),
        "{summaries:#?}"
    );
    assert_eq!(holds(&fx, "app_service", "internal"), DML);
    assert!(provision_with(&fx, &roles::Options::default()).unwrap().plan.is_empty(), "converged");
}

#[test]
fn a_resumed_conversion_does_not_ask_about_roles_it_created() {
    let fx = Fixture::new();
    // Legacy with the runtime role alone: the conversion creates app_service
    // (marked as made here) and gives it its DML.
    let mut root = fx.admin("postgres");
    root.batch_execute("CREATE ROLE app_user LOGIN PASSWORD 'password'").unwrap();
    root.batch_execute(&format!("CREATE DATABASE {DB} OWNER app_user")).unwrap();
    fx.admin(DB).batch_execute("ALTER SCHEMA public OWNER TO app_user").unwrap();
    fx.runtime().batch_execute("CREATE TABLE notes (id int PRIMARY KEY)").unwrap();
    provision_with(&fx, &roles::Options::default()).unwrap();
    let marker: Option<String> = fx
        .admin("postgres")
        .query_one("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'app_service'", &[])
        .unwrap()
        .get(0);
    assert_eq!(marker.as_deref(), Some("created by cargo xtask db-provision"));
    // What an interrupted run leaves: a table still owned by app_user.
    fx.admin(DB).batch_execute("CREATE TABLE later (id int PRIMARY KEY); ALTER TABLE later OWNER TO app_user").unwrap();
    let outcome = provision_with(&fx, &roles::Options::default()).unwrap();
    assert!(!outcome.plan.is_empty());
    assert_eq!(holds(&fx, "app_service", "later"), DML, "the role the tool made gets its model access");
    assert_eq!(holds(&fx, "app_user", "later"), DML);
}
