//! A session shows it talks to the server itself only when it does: direct,
//! yes; through a real PgBouncer on the same host (session or transaction
//! mode), no, so the behavioural pool watch runs there.

use pgcluster::{PoolMode, PoolerOptions, TestCluster, TestPooler};
use postgres::NoTls;

fn have_pgbouncer() -> bool {
    std::process::Command::new("pgbouncer").arg("--version").output().is_ok_and(|o| o.status.success())
        || std::path::Path::new("/usr/sbin/pgbouncer").exists()
}

#[test]
fn only_a_direct_session_shows_it_talks_to_the_server_itself() {
    let cluster = TestCluster::start().unwrap();
    let mut direct = postgres::Client::connect(&cluster.admin_url("postgres"), NoTls).unwrap();
    assert!(dbenv::peer::talks_to_us(&mut direct).unwrap());
    if !have_pgbouncer() {
        assert!(std::env::var_os("CI").is_none(), "CI installs pgbouncer");
        return;
    }
    let users = [("postgres", cluster.password())];
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let options = PoolerOptions { users: &users, ..Default::default() };
        let pooler = TestPooler::start_with(&cluster, mode, "auth-password", &options).unwrap();
        let url = cluster.admin_url("postgres").replace(&cluster.port().to_string(), &pooler.port().to_string());
        let mut pooled = postgres::Client::connect(&url, NoTls).unwrap();
        assert!(!dbenv::peer::talks_to_us(&mut pooled).unwrap(), "{mode:?}: the pooler's backend saw us");
    }
}
