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
