//! Rotation under load, on every major of the matrix: clients that
//! reconnect for every query with whatever the env file says see no failed
//! connection and no failed query while each of the three roles is rotated
//! (start, publish, "deploy", finish); the rotated migrator's objects are
//! the migrator's and usable at once; the rotated service role still
//! bypasses RLS; each old secret is refused afterwards; no password reaches
//! the server log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbenv::{keys, RoleKind};
use roles::rotate::{self, Finished, Rotation};

use crate::common::{Fixture, DB};

/// One client: its role's DSN variable, what it runs, and its counts.
struct Client {
    var: &'static str,
    sql: &'static str,
    /// The rotation epoch its current iteration started in.
    epoch: AtomicU64,
    connections: AtomicUsize,
    /// Connections refused (a login without LOGIN, a wrong password).
    connect_failures: AtomicUsize,
    /// Queries that failed on a connection that was made.
    query_failures: AtomicUsize,
}

fn env_file(fx: &Fixture, dir: &Path) -> PathBuf {
    let mut vars = fx.vars();
    for (role, password) in [("app_user", "password"), ("app_service", "service_password")] {
        let var = if role == "app_user" { keys::DATABASE_URL } else { keys::DATABASE_SERVICE_URL };
        vars.push((var.into(), fx.dsn(role, password, DB).expose_url()));
    }
    vars.push((keys::DATABASE_MIGRATOR_URL.into(), fx.dsn("app_migrator", "migrator_password", DB).expose_url()));
    let path = dir.join("app.env");
    let text: String = vars.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Reads the env file, connects, runs the query, disconnects: forever,
/// counting, until `stop`.
fn load(path: PathBuf, client: Arc<Client>, epoch: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        client.epoch.store(epoch.load(Ordering::SeqCst), Ordering::SeqCst);
        let dsn = dbenv::read_env_file(&path).unwrap().remove(client.var).unwrap();
        client.connections.fetch_add(1, Ordering::SeqCst);
        match postgres::Client::connect(&dsn, postgres::NoTls) {
            Err(_) => _ = client.connect_failures.fetch_add(1, Ordering::SeqCst),
            Ok(mut session) => {
                if session.simple_query(client.sql).is_err() {
                    client.query_failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

fn settings_of(path: &Path) -> dbenv::Settings {
    dbenv::EnvVars::load(path, true, &dbenv::ProcessEnv::none()).unwrap().provisioning().unwrap()
}

#[test]
fn rotating_each_role_under_load_fails_no_connection_and_no_query() {
    let fx = Fixture::with_settings(&[("log_statement", "all")]);
    roles::provision(&fx.settings(), &roles::Options::default(), &mut roles::Quiet).unwrap();
    fx.connect_as("app_migrator", "migrator_password")
        .batch_execute(
            "CREATE TABLE notes (id int, tenant text); ALTER TABLE notes ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY by_tenant ON notes USING (tenant = current_setting('app.tenant', true)); \
             INSERT INTO notes VALUES (1, 'a'), (2, 'b')",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = env_file(&fx, dir.path());

    let client = |var, sql| {
        Arc::new(Client {
            var,
            sql,
            epoch: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            connect_failures: AtomicUsize::new(0),
            query_failures: AtomicUsize::new(0),
        })
    };
    // Two clients per role, each reconnecting for every query.
    let vars = [keys::DATABASE_URL, keys::DATABASE_SERVICE_URL, keys::DATABASE_MIGRATOR_URL];
    let clients: Vec<Arc<Client>> =
        vars.iter().chain(vars.iter()).map(|var| client(var, "SELECT count(*) FROM notes")).collect();
    let (epoch, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let threads: Vec<_> = clients
        .iter()
        .map(|c| {
            let (path, c, epoch, stop) = (path.clone(), c.clone(), epoch.clone(), stop.clone());
            std::thread::spawn(move || load(path, c, epoch, stop))
        })
        .collect();

    let started = Instant::now();
    let mut old_secrets = Vec::new();
    for kind in [RoleKind::Runtime, RoleKind::Service, RoleKind::Migrator] {
        let settings = settings_of(&path);
        let rotation = Rotation::of(&settings, kind).unwrap();
        old_secrets.push((rotation.active.clone(), settings.role(kind).password.clone()));
        let mut admin = rotate::admin_session(&settings).unwrap();
        let password = rotate::new_password().unwrap();
        rotate::start(&mut admin, &settings, &rotation, &password).unwrap();
        rotate::prove(&settings, &rotation, &password).unwrap();
        dbenv::envfile::publish_login(&path, kind, &rotation.other, &password).unwrap();
        // "Deploy": every client has begun an iteration with the new file.
        let now = epoch.fetch_add(1, Ordering::SeqCst) + 1;
        while clients.iter().any(|c| c.epoch.load(Ordering::SeqCst) < now) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let settings = settings_of(&path);
        let rotation = Rotation::of(&settings, kind).unwrap();
        let finished = rotate::finish(&mut admin, &settings, &rotation, Duration::from_secs(30), false).unwrap();
        assert!(matches!(finished, Finished::Retired { terminated: 0, .. }), "{finished:?}");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    let connections: usize = clients.iter().map(|c| c.connections.load(Ordering::SeqCst)).sum();
    let refused: usize = clients.iter().map(|c| c.connect_failures.load(Ordering::SeqCst)).sum();
    let failed: usize = clients.iter().map(|c| c.query_failures.load(Ordering::SeqCst)).sum();
    println!(
        "rotation under load: {} clients, {connections} connections, {refused} failed connections, {failed} failed \
         queries, {elapsed:?} from the first start to the last finish",
        clients.len()
    );
    assert_eq!((refused, failed), (0, 0), "of {connections} connections");
    assert!(connections > 30, "the load ran: {connections}");

    // Afterwards: each old secret is refused; the new logins act as their roles.
    for (login, secret) in &old_secrets {
        let refused = fx.kit.connect_with_result(login, secret.expose(), DB).err().expect("refused");
        assert_eq!(refused.code().map(|c| c.code()), Some("28P01"), "{login}");
    }
    let settings = settings_of(&path);
    let dsn = |kind: RoleKind| settings.role(kind).dsn.clone();
    // The rotated migrator creates; the runtime role uses it at once.
    let mut migrator = dbenv::connect(&dsn(RoleKind::Migrator), "DATABASE_MIGRATOR_URL").unwrap();
    migrator
        .batch_execute("CREATE TABLE public.after_rotation (id int); INSERT INTO public.after_rotation VALUES (1)")
        .unwrap();
    let owner: String = migrator
        .query_one("SELECT relowner::regrole::text FROM pg_class WHERE relname = 'after_rotation'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_migrator");
    let mut runtime = dbenv::connect(&dsn(RoleKind::Runtime), "DATABASE_URL").unwrap();
    let rows: i64 = runtime.query_one("SELECT count(*) FROM public.after_rotation", &[]).unwrap().get(0);
    assert_eq!(rows, 1);
    let hidden: i64 = runtime.query_one("SELECT count(*) FROM public.notes", &[]).unwrap().get(0);
    assert_eq!(hidden, 0, "RLS still applies to the runtime role");
    let mut service = dbenv::connect(&dsn(RoleKind::Service), "DATABASE_SERVICE_URL").unwrap();
    let all: i64 = service.query_one("SELECT count(*) FROM public.notes", &[]).unwrap().get(0);
    assert_eq!(all, 2, "the rotated service role still bypasses RLS");
    for kind in RoleKind::ALL {
        let password = settings.role(kind).password.expose().to_string();
        assert!(!fx.kit.server.log().contains(&password), "a {kind} password reached the server log");
    }
}
