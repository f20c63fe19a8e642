//! Passwords reach the server only as SCRAM verifiers, rotate only when they
//! change, and never show up in the server log or the tool's output.

use crate::common::{Fixture, Recorder};

const HOSTILE: [&str; 3] =
    ["it's \"quoted\" \\ back$lash", "pa$word with spaces ünïcödé €", "'; DROP ROLE x; -- $1 \\n"];

fn verifiers(fx: &Fixture) -> Vec<String> {
    fx.admin("postgres")
        .query("SELECT rolpassword FROM pg_authid WHERE rolname IN ('app_migrator', 'app_user', 'app_service')", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn hostile_passwords_rotate_log_in_and_never_reach_the_log() {
    let mut fx = Fixture::with_settings(&[("log_statement", "all"), ("log_min_error_statement", "debug5")]);
    fx.passwords = HOSTILE.map(String::from);
    let recorder = Recorder::default();
    let outcome = roles::provision(&fx.settings(), &roles::Options::default(), &mut recorder.clone()).unwrap();
    assert!(outcome.applied);
    // Each role logs in with its password.
    fx.migrator().batch_execute("SELECT 1").unwrap();
    fx.runtime().batch_execute("SELECT 1").unwrap();
    fx.service().batch_execute("SELECT 1").unwrap();

    let stored = verifiers(&fx);
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|v| v.starts_with("SCRAM-SHA-256$4096:")));
    let server_log = fx.kit.server.log();
    assert!(server_log.contains("SET log_statement = 'none'"), "the log is on, and shows the session silencing it");
    let printed = format!("{}\n{:?}", recorder.text(), outcome.plan);
    for secret in HOSTILE.iter().map(|s| s.to_string()).chain(stored.iter().cloned()) {
        assert!(!server_log.contains(&secret), "the server log holds a secret");
        assert!(!printed.contains(&secret), "the output holds a secret");
    }
    // Not even a piece of a verifier (salt or keys).
    for verifier in &stored {
        let salt = verifier.split(['$', ':']).nth(2).unwrap();
        assert!(!server_log.contains(salt) && !printed.contains(salt));
    }

    // Unchanged passwords are not rewritten.
    let again = fx.provision();
    assert!(again.plan.is_empty(), "{:#?}", again.plan.steps);
    assert_eq!(verifiers(&fx), stored);

    // A changed password rotates, and only that one.
    fx.passwords[1] = "a brand new password".into();
    let rotated = fx.provision();
    let summaries: Vec<&str> = rotated.plan.steps.iter().map(|s| s.summary.as_str()).collect();
    assert_eq!(summaries, ["`app_user`: password changed"]);
    fx.runtime().batch_execute("SELECT 1").unwrap();
    let old = dbenv::connect(&fx.dsn("app_user", HOSTILE[1], crate::common::DB), "APP_DB_PASSWORD").err().unwrap();
    assert!(format!("{old:#}").contains("the password for `app_user` is wrong"), "{old:#}");
    assert!(!fx.kit.server.log().contains("a brand new password"));
}

#[test]
fn an_md5_hash_becomes_a_scram_verifier_once() {
    let fx = Fixture::new();
    fx.provision();
    // What PostgreSQL 13 (password_encryption = md5) left behind. The hash
    // is computed here, so no plaintext reaches the server.
    let md5 = postgres_protocol::password::md5(fx.passwords[2].as_bytes(), "app_service");
    fx.admin("postgres").batch_execute(&format!("ALTER ROLE app_service PASSWORD '{md5}'")).unwrap();
    let outcome = fx.provision();
    let summaries: Vec<&str> = outcome.plan.steps.iter().map(|s| s.summary.as_str()).collect();
    assert_eq!(summaries, ["`app_service`: md5 hash replaced by a SCRAM verifier"]);
    let stored: String = fx
        .admin("postgres")
        .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_service'", &[])
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"));
    fx.service().batch_execute("SELECT 1").unwrap();
    assert!(fx.provision().plan.is_empty());
}
