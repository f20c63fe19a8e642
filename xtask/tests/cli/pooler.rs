//! A real PgBouncer (Debian's `pgbouncer`) in front of a throwaway cluster,
//! in session and transaction pool mode: DSNs may name the pooler, the
//! migration runner and provisioning refuse a transaction-mode pool (found
//! by behaviour), and a DSN that leads to another database is refused.

use pgcluster::{PoolMode, PoolerOptions, TestCluster, TestPooler};
use postgres::NoTls;

use crate::common::{have_tool, text, Project};

const AUTH_PASSWORD: &str = "pooler auth pw";

/// Debian's pgbouncer (in /usr/sbin, which a non-root PATH may lack); CI
/// (`XTASK_REQUIRE_TOOLS`) fails without it, elsewhere the test is skipped loudly.
fn pgbouncer() -> bool {
    std::path::Path::new("/usr/sbin/pgbouncer").exists() || have_tool("pgbouncer", &["--version"])
}

/// A provisioned cluster whose app database has the pooler's lookup function.
fn provisioned(db: &str) -> (TestCluster, Project) {
    let cluster = TestCluster::start().unwrap();
    let project = Project::for_cluster(&cluster, db);
    let output = project.run(&["db-provision"]);
    assert!(output.status.success(), "{}", text(&output));
    let mut admin = postgres::Client::connect(&cluster.admin_url("postgres"), NoTls).unwrap();
    admin.batch_execute(&format!("CREATE ROLE {} LOGIN PASSWORD '{AUTH_PASSWORD}'", pgcluster::AUTH_USER)).unwrap();
    let mut app = postgres::Client::connect(&cluster.admin_url(db), NoTls).unwrap();
    app.batch_execute(&pgcluster::auth_setup(db)).unwrap();
    (cluster, project)
}

/// `.env.local` with `var`'s DSN on `port` (of 127.0.0.1).
fn point(project: &Project, var: &str, port: u16) {
    let path = project.path(".env.local");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: String = text
        .lines()
        .map(|line| match line.strip_prefix(&format!("{var}=")) {
            Some(value) => {
                let (head, rest) = value.split_once("@127.0.0.1:").unwrap();
                let tail = &rest[rest.find('/').unwrap()..];
                format!("{var}={head}@127.0.0.1:{port}{tail}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn bookkeeping_rows(cluster: &TestCluster, db: &str) -> Option<i64> {
    let mut admin = postgres::Client::connect(&cluster.admin_url(db), NoTls).unwrap();
    let exists: bool =
        admin.query_one("SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL", &[]).unwrap().get(0);
    exists.then(|| admin.query_one("SELECT count(*) FROM drizzle.__drizzle_migrations", &[]).unwrap().get(0))
}

#[test]
fn migrations_refuse_a_transaction_pool_and_run_through_a_session_pool() {
    if !pgbouncer() {
        return;
    }
    let (cluster, project) = provisioned("pooled_app");
    let transaction = TestPooler::start(&cluster, PoolMode::Transaction, AUTH_PASSWORD).unwrap();
    point(&project, "DATABASE_MIGRATOR_URL", transaction.port());
    for engine in ["builtin", "drizzle-kit"] {
        let output = project.run(&["db-migrate", "--engine", engine]);
        let said = text(&output);
        assert_eq!(output.status.code(), Some(1), "{engine}: {said}\n{}", transaction.log());
        assert!(
            said.contains("transaction-mode pooler") && said.contains("pool_mode = session"),
            "{engine}: {said}\n{}",
            transaction.log()
        );
        assert!(!said.contains("migrator_password"), "{said}");
        assert_eq!(bookkeeping_rows(&cluster, "pooled_app"), None, "{engine}: something ran");
    }
    // Nothing the refused runs set stays on the pool's shared backends
    // (PgBouncer pools per database and user), where the migrator's next
    // client would find it.
    let app_url = format!("postgresql://app_migrator:migrator_password@127.0.0.1:{}/pooled_app", transaction.port());
    let mut app = postgres::Client::connect(&app_url, NoTls).unwrap();
    for _ in 0..4 {
        let path: String = app.query_one("SHOW search_path", &[]).unwrap().get(0);
        let timeout: String = app.query_one("SHOW lock_timeout", &[]).unwrap().get(0);
        assert_eq!((path.as_str(), timeout.as_str()), ("\"$user\", public", "0"), "a refused run left its settings");
    }
    // Provisioning logs in through a routed DSN to check its database, as
    // app_user through the app's transaction pool: it leaves nothing set there.
    point(&project, "DATABASE_URL", transaction.port());
    let provisioned = project.run(&["db-provision"]);
    assert!(provisioned.status.success(), "{}", text(&provisioned));
    let runtime_url = format!("postgresql://app_user:password@127.0.0.1:{}/pooled_app", transaction.port());
    let mut runtime = postgres::Client::connect(&runtime_url, NoTls).unwrap();
    let path: String = runtime.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(path, "\"$user\", public", "provisioning left its search path on the app's pool");
    let status = project.run(&["db-status"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(text(&status).contains("db-status needs one server session"), "{}", text(&status));
    let session = TestPooler::start(&cluster, PoolMode::Session, AUTH_PASSWORD).unwrap();
    point(&project, "DATABASE_MIGRATOR_URL", session.port());
    let output = project.run(&["db-migrate"]);
    assert!(output.status.success(), "{}\n{}", text(&output), session.log());
    assert_eq!(bookkeeping_rows(&cluster, "pooled_app"), Some(9));
    let output = project.run(&["db-status"]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn a_dsn_that_leads_to_another_database_is_refused() {
    let (_cluster, project) = provisioned("routed_app");
    // Another server with the same database and roles: the migrator's DSN
    // names it instead of DB_HOST/DB_PORT's.
    let other = TestCluster::start().unwrap();
    let twin = Project::for_cluster(&other, "routed_app");
    assert!(twin.run(&["db-provision"]).status.success());
    point(&project, "DATABASE_MIGRATOR_URL", other.port());
    let output = project.run(&["db-migrate"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("not the same database"), "{said}");
    assert_eq!(bookkeeping_rows(&other, "routed_app"), None, "it migrated the other server");
    // Provisioning says so too, after converging the database it was asked to.
    let output = project.run(&["db-provision"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("DATABASE_MIGRATOR_URL reaches database `routed_app`"), "{}", text(&output));
}

#[test]
fn provisioning_refuses_a_transaction_pool_in_front_of_the_server() {
    if !pgbouncer() {
        return;
    }
    let (cluster, project) = provisioned("pooled_admin");
    // The admin through the pooler (listed in its auth_file): DB_HOST/DB_PORT
    // name the pooler, as a deployment that pools everything would.
    let pooler = TestPooler::start_with(
        &cluster,
        PoolMode::Transaction,
        AUTH_PASSWORD,
        &PoolerOptions { users: &[("postgres", cluster.password())], ..Default::default() },
    )
    .unwrap();
    let path = project.path(".env.local");
    let text_before = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text_before.replace(&cluster.port().to_string(), &pooler.port().to_string())).unwrap();
    let output = project.run(&["db-provision"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}\n{}", pooler.log());
    assert!(
        said.contains("transaction-mode pooler") && said.contains("db-provision needs one server session"),
        "{said}"
    );
    assert!(!said.contains(cluster.password()), "{said}");
}

/// `.env.local` without `DB_HOST`/`DB_PORT` (a runtime env file: DSNs only).
fn drop_server_vars(project: &Project) {
    let path = project.path(".env.local");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("DB_HOST=") && !l.starts_with("DB_PORT="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).unwrap();
}

#[test]
fn db_check_proves_the_runtime_roles_through_a_session_pool_and_says_what_a_transaction_pool_changes() {
    if !pgbouncer() {
        return;
    }
    let (cluster, project) = provisioned("pooled_check");
    assert!(project.run(&["db-migrate"]).status.success());
    // The app's DSNs through a session-mode pool: the probes run through it,
    // and the pooler's auth_query function passes the proof.
    let session = TestPooler::start(&cluster, PoolMode::Session, AUTH_PASSWORD).unwrap();
    for var in ["DATABASE_URL", "DATABASE_SERVICE_URL"] {
        point(&project, var, session.port());
    }
    let output = project.run(&["db-check"]);
    assert_eq!(output.status.code(), Some(0), "{}\n{}", text(&output), session.log());
    // The route check logs in twice through each DSN; the probes' own
    // sessions are more logins through the pooler.
    for user in ["app_user", "app_service"] {
        let logins = session.log().matches(&format!("login attempt: db=pooled_check user={user} ")).count();
        assert!(logins > 2, "the probes as {user} bypassed the pooler ({logins} logins)");
    }
    assert!(!text(&output).contains("transaction-mode pooler"), "{}", text(&output));
    // Through a transaction-mode pool: proven on a direct session, and said.
    let transaction = TestPooler::start(&cluster, PoolMode::Transaction, AUTH_PASSWORD).unwrap();
    for var in ["DATABASE_URL", "DATABASE_SERVICE_URL"] {
        point(&project, var, transaction.port());
    }
    let output = project.run(&["db-check"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("DATABASE_URL") && said.contains("proven on a direct session"), "{said}");
    // Without the server's own address there is nowhere to prove it: said, exit 1.
    drop_server_vars(&project);
    let output = project.run(&["db-check"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("db-check cannot keep a session") && said.contains("session-mode pool"), "{said}");
    // The auth_query function is the pooler's alone: no runtime role may call it.
    let mut app = postgres::Client::connect(
        &format!("postgresql://app_user:password@127.0.0.1:{}/pooled_check", cluster.port()),
        NoTls,
    )
    .unwrap();
    let denied = app.query("SELECT * FROM pgbouncer.user_lookup('app_migrator')", &[]).unwrap_err();
    assert_eq!(denied.code().map(|c| c.code()), Some("42501"));
    // Granted to the runtime role, it fails the proof.
    let mut admin = postgres::Client::connect(&cluster.admin_url("pooled_check"), NoTls).unwrap();
    admin
        .batch_execute(
            "GRANT USAGE ON SCHEMA pgbouncer TO app_user; GRANT EXECUTE ON FUNCTION pgbouncer.user_lookup(text) TO app_user",
        )
        .unwrap();
    let direct = Project::for_cluster(&cluster, "pooled_check");
    let output = direct.run(&["db-check"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("user_lookup"), "{}", text(&output));
}

#[test]
fn a_round_robin_transaction_pool_is_found_and_a_forced_user_is_refused() {
    if !pgbouncer() {
        return;
    }
    let (cluster, project) = provisioned("pooled_edges");
    assert!(project.run(&["db-migrate"]).status.success());
    // Two idle backends handed out in turn: a session that asks twice in a
    // row meets both.
    let settings = [("server_round_robin", "1"), ("min_pool_size", "2")];
    let round_robin = TestPooler::start_with(
        &cluster,
        PoolMode::Transaction,
        AUTH_PASSWORD,
        &PoolerOptions { settings: &settings, ..Default::default() },
    )
    .unwrap();
    point(&project, "DATABASE_MIGRATOR_URL", round_robin.port());
    let output = project.run(&["db-status"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("transaction-mode pooler"), "{}", text(&output));
    point(&project, "DATABASE_MIGRATOR_URL", cluster.port());

    // A pooler whose entry logs the app in as the service role (BYPASSRLS):
    // the session probe, run through it, fails; through a transaction pool
    // (where a direct session would stand in) the check stops.
    let forced = [format!(
        "pooled_edges = host=127.0.0.1 port={} dbname=pooled_edges user=app_service password=service_password",
        cluster.port()
    )];
    let forcing = |mode| {
        // Plain passwords from its auth_file: PgBouncer logs in to the server as the forced user with its own.
        let users = [("app_user", "password"), ("app_service", "service_password")];
        let options = PoolerOptions { databases: &forced, users: &users, settings: &[("auth_type", "plain")] };
        TestPooler::start_with(&cluster, mode, AUTH_PASSWORD, &options).unwrap()
    };
    let pooler = forcing(PoolMode::Session);
    point(&project, "DATABASE_URL", pooler.port());
    let output = project.run(&["db-check"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(2), "{said}\n{}", pooler.log());
    assert!(said.contains("NOT app_user as app_user"), "{said}");
    let forced_transaction = forcing(PoolMode::Transaction);
    point(&project, "DATABASE_URL", forced_transaction.port());
    let output = project.run(&["db-check"]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("logs in as `app_service`") && said.contains("not as `app_user`"), "{said}");
}

#[test]
fn a_role_with_its_own_time_zone_is_still_the_same_database() {
    let (cluster, project) = provisioned("zoned");
    assert!(project.run(&["db-migrate"]).status.success());
    let mut admin = postgres::Client::connect(&cluster.admin_url("postgres"), NoTls).unwrap();
    admin
        .batch_execute(
            "ALTER ROLE app_user SET timezone = 'Pacific/Auckland'; ALTER ROLE app_migrator SET datestyle = 'SQL, DMY'",
        )
        .unwrap();
    let output = project.run(&["db-check"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = project.run(&["db-provision"]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn db_rotate_through_a_transaction_pool_proves_the_login_directly_and_leaves_the_pool_clean() {
    if !pgbouncer() {
        return;
    }
    let (cluster, project) = provisioned("rotate_pooled");
    let transaction = TestPooler::start(&cluster, PoolMode::Transaction, AUTH_PASSWORD).unwrap();
    point(&project, "DATABASE_URL", transaction.port());
    let output = project.run(&["db-rotate", "app_user"]);
    let said = text(&output);
    assert!(output.status.success(), "{said}\n{}", transaction.log());
    assert!(said.contains("transaction-mode pooler") && said.contains("direct session"), "{said}");
    // Finishing logs in through the pool as the login that stays.
    let finished = project.run(&["db-rotate", "app_user", "--finish"]);
    assert!(finished.status.success(), "{}", text(&finished));
    // The app, switched to the published login, gets the pool's backends as
    // a fresh session would have them: nothing the proof or the finish set
    // stayed there.
    let password = dbenv::read_env_file(&project.path(".env.local")).unwrap().remove("APP_DB_PASSWORD").unwrap();
    let url = format!("postgresql://app_user_alt:{password}@127.0.0.1:{}/rotate_pooled", transaction.port());
    let mut app = postgres::Client::connect(&url, NoTls).unwrap();
    for _ in 0..4 {
        let path: String = app.query_one("SHOW search_path", &[]).unwrap().get(0);
        assert_eq!(path, "\"$user\", public", "the rotation left its search path on the app's pool");
    }
}
