//! Throwaway clusters start, accept scram logins on loopback, and vanish.

use pgcluster::{ClusterOptions, TestCluster};

#[test]
fn a_cluster_starts_accepts_the_superuser_and_cleans_up() {
    let cluster = TestCluster::start().unwrap();
    let mut client = postgres::Client::connect(&cluster.admin_url("postgres"), postgres::NoTls).unwrap();
    let row = client
        .query_one("SELECT current_user::text, current_setting('listen_addresses'), current_setting('fsync')", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert_eq!(row.get::<_, String>(1), "127.0.0.1");
    assert_eq!(row.get::<_, String>(2), "off");
    // Every connection needs a password: scram-sha-256 in pg_hba.conf.
    let hba: String =
        client.query_one("SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules", &[]).unwrap().get(0);
    assert_eq!(hba, "scram-sha-256");
    let wrong = cluster.admin_url("postgres").replace(cluster.password(), "wrong");
    let error = postgres::Client::connect(&wrong, postgres::NoTls).err().expect("a wrong password is refused");
    assert_eq!(error.code(), Some(&postgres::error::SqlState::INVALID_PASSWORD));
    drop(client);
    let datadir = cluster.datadir();
    assert!(datadir.exists());
    drop(cluster);
    assert!(!datadir.exists());
}

#[test]
fn clusters_run_side_by_side_with_their_own_settings() {
    let options = ClusterOptions { settings: vec![("log_statement".into(), "all".into())], ..Default::default() };
    let a = TestCluster::start_with(options).unwrap();
    let b = TestCluster::start().unwrap();
    assert_ne!(a.port(), b.port());
    let mut client = postgres::Client::connect(&a.admin_url("postgres"), postgres::NoTls).unwrap();
    client.batch_execute("SELECT 'marker-1234'").unwrap();
    drop(client);
    assert!(a.log().contains("marker-1234"), "{}", a.log());
    assert!(!b.log().contains("marker-1234"));
}

#[test]
fn a_crashed_cluster_restarts_on_its_port() {
    let mut cluster = TestCluster::start().unwrap();
    let url = cluster.admin_url("postgres");
    postgres::Client::connect(&url, postgres::NoTls).unwrap().batch_execute("CREATE TABLE kept (x int)").unwrap();
    cluster.crash();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
    cluster.restart().unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.batch_execute("SELECT * FROM kept").unwrap();
}

#[test]
fn a_prepared_snapshot_is_made_once_per_key_and_each_cluster_is_a_copy_of_its_own() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PREPARED: AtomicU32 = AtomicU32::new(0);
    // A key of this run: another test run must not find this snapshot.
    let key = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let prepare = |cluster: TestCluster| {
        PREPARED.fetch_add(1, Ordering::SeqCst);
        let mut client = postgres::Client::connect(&cluster.admin_url("postgres"), postgres::NoTls)?;
        client.batch_execute("CREATE TABLE prepared (x int); INSERT INTO prepared VALUES (1)")?;
        Ok(cluster)
    };
    let rows = |cluster: &TestCluster| -> i64 {
        let mut client = postgres::Client::connect(&cluster.admin_url("postgres"), postgres::NoTls).unwrap();
        client.query_one("SELECT count(*) FROM prepared", &[]).unwrap().get(0)
    };
    let a = TestCluster::start_prepared(ClusterOptions::default(), "pgcluster-test", key, prepare).unwrap();
    let b = TestCluster::start_prepared(ClusterOptions::default(), "pgcluster-test", key, prepare).unwrap();
    assert_eq!(PREPARED.load(Ordering::SeqCst), 1, "one snapshot for one key");
    // Each is its own copy: a change in one is not in the other.
    postgres::Client::connect(&a.admin_url("postgres"), postgres::NoTls)
        .unwrap()
        .batch_execute("INSERT INTO prepared VALUES (2)")
        .unwrap();
    assert_eq!((rows(&a), rows(&b)), (2, 1));
    let snapshot = |key: u64| {
        let parent = a.root().parent().unwrap().to_path_buf();
        std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(&format!("-pgcluster-test-{key:x}")))
    };
    assert!(snapshot(key));
    // Another key prepares again and removes the older snapshot.
    let c = TestCluster::start_prepared(ClusterOptions::default(), "pgcluster-test", key + 1, prepare).unwrap();
    assert_eq!(PREPARED.load(Ordering::SeqCst), 2);
    assert_eq!(rows(&c), 1);
    assert!(!snapshot(key) && snapshot(key + 1));
    drop(c);
    let parent = a.root().parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(parent).unwrap().flatten() {
        if entry.file_name().to_string_lossy().contains("-pgcluster-test-") {
            let _ = std::fs::remove_dir_all(entry.path()).or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
}

#[test]
fn a_throwaway_cluster_lives_in_memory_and_a_durable_one_on_disk() {
    let fast = TestCluster::start().unwrap();
    let durable = TestCluster::start_with(ClusterOptions { durable: true, ..Default::default() }).unwrap();
    if std::path::Path::new("/dev/shm").is_dir() {
        assert!(fast.root().starts_with("/dev/shm"), "{}", fast.root().display());
    }
    assert!(!durable.root().starts_with("/dev/shm"), "{}", durable.root().display());
}
