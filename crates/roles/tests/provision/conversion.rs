//! Converting legacy databases that hold what real apps leave behind: rules,
//! definer functions, foreign-data wrappers and user mappings, role
//! settings, other roles' default privileges, schemas the runtime role may
//! create in. After each run the app's own queries work, and the runtime
//! roles can do nothing they could not do before.

use roles::reach::PathClass;
use roles::Refusal;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::common::{sqlstate, Fixture, Recorder, DB};
use crate::legacy::{app_works, build_legacy, drop_leaking_view_before_15};
use roles::{Phase, Reporter, Step};

/// What `role` can do beyond DML that matters for the model, asked of the
/// server as the role: where it may create, what it owns, which foreign
/// objects it may use, which definer functions and rules run for it with
/// someone else's rights, and what defaults its sessions start with.
fn powers(fx: &Fixture, role: &str, password: &str) -> BTreeSet<String> {
    let mut client = fx.connect_as(role, password);
    let row = client
        .query_one(
            "SELECT ARRAY(SELECT 'create in schema ' || nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE') \
                            AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%') \
                 || ARRAY(SELECT 'temp in ' || datname FROM pg_database WHERE datname = current_database() \
                            AND has_database_privilege(oid, 'TEMP')) \
                 || ARRAY(SELECT 'owns objects' FROM pg_shdepend WHERE deptype = 'o' \
                            AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                            AND classid NOT IN ('pg_default_acl'::regclass, 'pg_user_mapping'::regclass) \
                            HAVING count(*) > 0) \
                 || ARRAY(SELECT 'usage on fdw ' || fdwname FROM pg_foreign_data_wrapper \
                            WHERE has_foreign_data_wrapper_privilege(oid, 'USAGE')) \
                 || ARRAY(SELECT 'usage on server ' || srvname FROM pg_foreign_server WHERE has_server_privilege(oid, 'USAGE')) \
                 || ARRAY(SELECT 'definer ' || p.oid::regprocedure || ' as ' || pg_get_userbyid(p.proowner) FROM pg_proc p \
                            WHERE p.prosecdef AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                              AND has_function_privilege(p.oid, 'EXECUTE')) \
                 || ARRAY(SELECT 'rule ' || w.rulename || ' as ' || pg_get_userbyid(c.relowner) FROM pg_rewrite w \
                            JOIN pg_class c ON c.oid = w.ev_class WHERE w.rulename <> '_RETURN' \
                              AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                              AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE')) \
                 || ARRAY(SELECT 'bypassrls' FROM pg_roles WHERE rolname = current_user AND rolbypassrls) \
                 || ARRAY(SELECT 'setting ' || name || '=' || setting FROM pg_settings \
                            WHERE source IN ('user', 'database') AND name IN ('row_security', 'app.current_user_id'))",
            &[],
        )
        .unwrap();
    row.get::<_, Vec<String>>(0).into_iter().collect()
}

/// Both runtime roles' powers.
fn runtime_powers(fx: &Fixture) -> (BTreeSet<String>, BTreeSet<String>) {
    (powers(fx, "app_user", "password"), powers(fx, "app_service", "service_password"))
}

/// After a conversion, neither runtime role can do anything it could not before.
fn assert_no_new_powers(before: &(BTreeSet<String>, BTreeSet<String>), fx: &Fixture) {
    let after = runtime_powers(fx);
    let gained_user: Vec<&String> = after.0.difference(&before.0).collect();
    let gained_service: Vec<&String> = after.1.difference(&before.1).collect();
    assert!(gained_user.is_empty(), "app_user gained {gained_user:?}");
    assert!(gained_service.is_empty(), "app_service gained {gained_service:?}");
}

fn refusal(fx: &Fixture, options: &roles::Options) -> Vec<Refusal> {
    let error = roles::provision(&fx.settings(), options, &mut roles::Quiet).unwrap_err();
    testkit::refusals(&error)
}

/// The one refusal is an owner's-rights path of `class` for `subject`;
/// its message and fix.
fn assert_path(refusals: &[Refusal], want_class: PathClass, want_subject: &str) -> (String, String) {
    match refusals {
        [Refusal::OwnersRights { subject, class, message, fix, .. }]
            if subject == want_subject && *class == want_class =>
        {
            (message.clone(), fix.clone())
        }
        _ => panic!("expected one {want_class:?} path for {want_subject}: {refusals:#?}"),
    }
}

/// Nothing changed: the database still belongs to `app_user`.
fn assert_untouched(fx: &Fixture) {
    let owner: String = fx
        .admin("postgres")
        .query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[&DB])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_user");
}

#[test]
fn a_legacy_view_over_the_bookkeeping_stops_the_conversion() {
    // app_user owned the bookkeeping and a view over it; converted, the view
    // would read the migrator's bookkeeping for the runtime roles.
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute("CREATE VIEW public.schema_version AS SELECT hash FROM drizzle.__drizzle_migrations")
        .unwrap();
    let refusals = refusal(&fx, &roles::Options::default());
    let (message, _) = assert_path(&refusals, PathClass::View, "public.schema_version");
    assert!(message.starts_with("view reads `drizzle.__drizzle_migrations`, outside the app schemas"), "{message}");
    assert_untouched(&fx);
}

#[test]
fn a_rule_on_a_legacy_table_stops_the_conversion_until_it_is_dropped() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute(
            "CREATE TABLE account_log (owner uuid); \
             CREATE RULE log_accounts AS ON INSERT TO billing_accounts DO ALSO \
               INSERT INTO account_log SELECT id FROM users",
        )
        .unwrap();
    let refusals = refusal(&fx, &roles::Options::default());
    let (message, fix) = assert_path(&refusals, PathClass::Rule, "public.billing_accounts.log_accounts");
    assert!(
        message.starts_with("rule `log_accounts` on `public.billing_accounts` reaches RLS table `public.users`"),
        "{message}"
    );
    assert!(fix.contains("DROP RULE \"log_accounts\""), "the fix names the statement: {fix}");
    assert_untouched(&fx);

    let before = runtime_powers(&fx);
    fx.connect_as("app_user", "password").batch_execute("DROP RULE log_accounts ON billing_accounts").unwrap();
    fx.provision();
    app_works(&fx);
    assert_no_new_powers(&before, &fx);
    assert!(fx.provision().plan.is_empty(), "a re-run converges");
}

#[test]
fn a_reviewed_rule_converts_when_exempted() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute(
            "CREATE TABLE account_log (owner uuid); \
             CREATE RULE log_accounts AS ON INSERT TO billing_accounts DO ALSO INSERT INTO account_log VALUES (NEW.owner_user_id)",
        )
        .unwrap();
    let exemptions = roles::Exemptions::parse(
        "[[rule]]\nname = \"public.billing_accounts.log_accounts\"\nreason = \"copies the new row's own owner only\"\n",
    )
    .unwrap();
    let options = roles::Options { exemptions, ..Default::default() };
    roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    app_works(&fx);
}

#[test]
fn a_public_definer_function_of_the_runtime_role_stops_the_conversion() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute(
            "CREATE FUNCTION account_count() RETURNS bigint SECURITY DEFINER LANGUAGE sql \
               AS 'SELECT count(*) FROM billing_accounts'",
        )
        .unwrap();
    let refusals = refusal(&fx, &roles::Options::default());
    let (message, fix) = assert_path(&refusals, PathClass::DefinerFunction, "public.account_count()");
    assert!(message.starts_with("SECURITY DEFINER, owned by `app_migrator`"), "{message}");
    assert!(fix.contains("make it SECURITY INVOKER"), "{fix}");
    assert_untouched(&fx);

    // Made SECURITY INVOKER (what the app meant), the conversion runs.
    let before = runtime_powers(&fx);
    fx.connect_as("app_user", "password").batch_execute("ALTER FUNCTION account_count() SECURITY INVOKER").unwrap();
    fx.provision();
    app_works(&fx);
    assert_no_new_powers(&before, &fx);
    let visible: i64 = fx.runtime().query_one("SELECT account_count()", &[]).unwrap().get(0);
    assert_eq!(visible, 0, "through the function RLS applies to app_user");
}

#[test]
fn foreign_data_usage_is_taken_and_a_user_mapping_does_not_block_convergence() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.admin(DB)
        .batch_execute(
            "CREATE FOREIGN DATA WRAPPER legacy_fdw; GRANT USAGE ON FOREIGN DATA WRAPPER legacy_fdw TO app_user",
        )
        .unwrap();
    fx.connect_as("app_user", "password")
        .batch_execute(
            "CREATE SERVER warehouse FOREIGN DATA WRAPPER legacy_fdw; \
             CREATE USER MAPPING FOR app_user SERVER warehouse OPTIONS (user 'remote', password 'remote-secret')",
        )
        .unwrap();
    let before = runtime_powers(&fx);
    let recorder = Recorder::default();
    roles::provision(&fx.settings(), &roles::Options::default(), &mut recorder.clone()).unwrap();
    let log = recorder.text();
    assert!(log.contains("user mapping for `app_user` on server `warehouse` stays"), "{log}");
    assert!(!log.contains("remote-secret"), "{log}");
    app_works(&fx);
    assert_no_new_powers(&before, &fx);
    let mut app = fx.runtime();
    assert_eq!(
        sqlstate(&mut app, "CREATE SERVER more FOREIGN DATA WRAPPER legacy_fdw").as_deref(),
        Some("42501"),
        "USAGE on the wrapper was taken"
    );
    assert_eq!(sqlstate(&mut app, "DROP SERVER warehouse CASCADE").as_deref(), Some("42501"));
    let owner: String = fx
        .admin(DB)
        .query_one("SELECT pg_get_userbyid(srvowner)::text FROM pg_foreign_server WHERE srvname = 'warehouse'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_migrator");
    assert!(fx.provision().plan.is_empty(), "a re-run converges despite the user mapping");
}

#[test]
fn role_settings_that_break_or_weaken_rls_are_removed() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.admin("postgres")
        .batch_execute(&format!(
            "ALTER ROLE app_user SET row_security = off; \
             ALTER ROLE app_user IN DATABASE {DB} SET app.current_user_id = '00000000-0000-4000-a000-00000000000a'; \
             ALTER ROLE app_service SET row_security = off; \
             ALTER ROLE app_user SET statement_timeout = '30s'"
        ))
        .unwrap();
    let recorder = Recorder::default();
    roles::provision(&fx.settings(), &roles::Options::default(), &mut recorder.clone()).unwrap();
    let log = recorder.text();
    assert!(log.contains("default of role `app_user` removed: row_security = off"), "{log}");
    assert!(log.contains(&format!("default of role `app_user` in `{DB}` removed: app.current_user_id")), "{log}");
    app_works(&fx);
    let settings: Vec<String> = fx
        .admin("postgres")
        .query(
            "SELECT pg_get_userbyid(setrole) || ' ' || array_to_string(setconfig, ',') FROM pg_db_role_setting ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // What does not weaken the model stays: the service role bypasses RLS
    // anyway, and a statement timeout is the app's business.
    assert_eq!(settings, ["app_service row_security=off", "app_user statement_timeout=30s"]);
    assert!(fx.provision().plan.is_empty(), "a re-run converges");
}

#[test]
fn another_roles_default_privileges_and_create_on_another_schema_are_taken() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.admin(DB)
        .batch_execute(
            "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT, TRUNCATE ON TABLES TO app_user; \
             CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO app_service",
        )
        .unwrap();
    let before = runtime_powers(&fx);
    fx.provision();
    app_works(&fx);
    assert_no_new_powers(&before, &fx);
    fx.admin(DB).batch_execute("CREATE TABLE scratch.secrets (v text)").unwrap();
    let mut app = fx.runtime();
    assert_eq!(sqlstate(&mut app, "SELECT * FROM scratch.secrets").as_deref(), Some("42501"));
    let mut service = fx.service();
    assert_eq!(sqlstate(&mut service, "CREATE TABLE scratch.mine (id int)").as_deref(), Some("42501"));
    assert!(fx.provision().plan.is_empty(), "a re-run converges");
}

#[test]
fn an_existing_superuser_named_as_a_model_role_is_refused_unless_taken_over() {
    let fx = Fixture::new();
    fx.admin("postgres").batch_execute("CREATE ROLE app_service LOGIN SUPERUSER REPLICATION PASSWORD 'x'").unwrap();
    let refusals = refusal(&fx, &roles::Options::default());
    assert_eq!(
        refusals,
        [Refusal::Demotion { role: "app_service".into(), taken: vec!["SUPERUSER".into(), "REPLICATION".into()] }]
    );
    let superuser: bool = fx
        .admin("postgres")
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'app_service'", &[])
        .unwrap()
        .get(0);
    assert!(superuser, "nothing was changed");

    let options = roles::Options {
        confirmed: roles::Confirmations { take_over: vec!["app_service".into()], ..Default::default() },
        ..Default::default()
    };
    roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    let row = fx
        .admin("postgres")
        .query_one("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = 'app_service'", &[])
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (false, false));
}

#[test]
fn the_maintenance_database_needs_a_confirmation() {
    let fx = Fixture::new();
    let mut vars = fx.vars();
    vars.retain(|(k, _)| k != "APP_DB_NAME");
    vars.push(("APP_DB_NAME".into(), "postgres".into()));
    let settings =
        dbenv::Settings::from_env(&dbenv::EnvVars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .unwrap();
    let error = roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("`postgres`, the cluster's maintenance database"), "{message}");
    assert!(message.contains("--allow-postgres-database"), "{message}");
    let options = roles::Options {
        confirmed: roles::Confirmations { maintenance_database: true, ..Default::default() },
        ..Default::default()
    };
    roles::provision(&settings, &options, &mut roles::Quiet).unwrap();
}

/// Records every progress report of the ownership phase.
#[derive(Clone, Default)]
struct Progress(Arc<Mutex<Vec<(usize, usize)>>>);

impl Reporter for Progress {
    fn progress(&mut self, phase: Phase, done: usize, total: usize) {
        if phase == Phase::Ownership {
            self.0.lock().unwrap().push((done, total));
        }
    }
    fn applied(&mut self, _step: &Step) {}
}

#[test]
fn progress_counts_changes_against_one_total() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    let progress = Progress::default();
    let options = roles::Options { lock_budget: 4, ..Default::default() };
    roles::provision(&fx.settings(), &options, &mut progress.clone()).unwrap();
    let reports = progress.0.lock().unwrap().clone();
    assert!(reports.len() > 1, "several transactions: {reports:?}");
    let totals: BTreeSet<usize> = reports.iter().map(|(_, total)| *total).collect();
    assert_eq!(totals.len(), 1, "one denominator: {reports:?}");
    assert!(reports.windows(2).all(|w| w[0].0 < w[1].0), "counts grow: {reports:?}");
    assert_eq!(reports.last().unwrap().0, *totals.iter().next().unwrap(), "ends at the total: {reports:?}");
}

#[test]
fn a_legacy_partition_without_rls_stops_the_conversion() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute(
            "CREATE TABLE ledger_archive (id int, billing_account_id int) PARTITION BY LIST (id); \
             ALTER TABLE ledger_archive ENABLE ROW LEVEL SECURITY; ALTER TABLE ledger_archive FORCE ROW LEVEL SECURITY; \
             CREATE TABLE ledger_archive_rest PARTITION OF ledger_archive DEFAULT",
        )
        .unwrap();
    let refusals = refusal(&fx, &roles::Options::default());
    let (message, fix) = assert_path(&refusals, PathClass::UnprotectedChild, "public.ledger_archive_rest");
    assert!(message.starts_with("inherits from RLS table `public.ledger_archive`"), "{message}");
    assert!(fix.contains("ENABLE ROW LEVEL SECURITY"), "{fix}");
    assert_untouched(&fx);
    fx.connect_as("app_user", "password")
        .batch_execute("ALTER TABLE ledger_archive_rest ENABLE ROW LEVEL SECURITY")
        .unwrap();
    let before = runtime_powers(&fx);
    fx.provision();
    app_works(&fx);
    assert_no_new_powers(&before, &fx);
}

/// The connection dies while the catalogs are read: the error says so and
/// that nothing was changed.
#[test]
fn losing_the_server_while_reading_the_catalogs_changes_nothing() {
    let fx = Fixture::new();
    build_legacy(&fx);
    let mut blocker = fx.admin(DB);
    // The owner's-rights read walks pg_inherits; holding it makes the read wait.
    blocker.batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_inherits IN ACCESS EXCLUSIVE MODE").unwrap();
    let settings = fx.settings();
    let run = std::thread::spawn(move || roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet));
    let mut watcher = fx.admin("postgres");
    let mut killed = false;
    for _ in 0..200 {
        let waiting: Vec<i32> = watcher
            .query("SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'pg_catalog.pg_inherits'::regclass", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(pid) = waiting.first() {
            watcher.execute("SELECT pg_terminate_backend($1)", &[pid]).unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    blocker.batch_execute("ROLLBACK").unwrap();
    assert!(killed, "the read never waited on the lock");
    let message = format!("{:#}", run.join().unwrap().unwrap_err());
    assert!(message.contains("reading the catalogs failed before any change; nothing was changed"), "{message}");
    assert_untouched(&fx);
}

#[test]
fn a_runtime_roles_defaults_for_every_schema_return_to_the_built_in_ones() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    // Only taken away, nothing granted: the row holds app_user's own rights
    // and differs from PostgreSQL's defaults by PUBLIC's EXECUTE.
    fx.admin(DB)
        .batch_execute("ALTER DEFAULT PRIVILEGES FOR ROLE app_user REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
        .unwrap();
    fx.provision();
    let rows: i64 = fx
        .admin(DB)
        .query_one("SELECT count(*) FROM pg_default_acl WHERE defaclrole = 'app_user'::regrole", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the runtime role's default privileges are PostgreSQL's own again");
    assert!(fx.provision().plan.is_empty(), "a re-run converges");
}

#[test]
fn a_foreign_table_that_logs_in_as_another_role_is_refused_unless_reviewed() {
    let fx = Fixture::new();
    build_legacy(&fx);
    drop_leaking_view_before_15(&fx);
    fx.admin(DB)
        .batch_execute(
            "CREATE FOREIGN DATA WRAPPER legacy_fdw; GRANT USAGE ON FOREIGN DATA WRAPPER legacy_fdw TO app_user",
        )
        .unwrap();
    fx.connect_as("app_user", "password")
        .batch_execute(
            "CREATE SERVER warehouse FOREIGN DATA WRAPPER legacy_fdw; \
             CREATE USER MAPPING FOR PUBLIC SERVER warehouse OPTIONS (user 'postgres'); \
             CREATE FOREIGN TABLE public.remote_users (id uuid) SERVER warehouse",
        )
        .unwrap();
    let refusals = refusal(&fx, &roles::Options::default());
    assert_eq!(refusals, [Refusal::ForeignLogin { table: "public.remote_users".into(), server: "warehouse".into() }]);
    assert_untouched(&fx);
    let reviewed = roles::Exemptions::parse(
        "[[view]]\nname = \"public.remote_users\"\nreason = \"read-only reference data, reviewed\"\n",
    )
    .unwrap();
    let options = roles::Options { exemptions: reviewed, ..Default::default() };
    roles::provision(&fx.settings(), &options, &mut roles::Quiet).unwrap();
    app_works(&fx);
}
