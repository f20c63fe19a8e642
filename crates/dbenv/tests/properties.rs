//! Properties of the parsers over arbitrary input: they never panic, DSNs
//! round-trip, and what `cargo xtask env` writes reads back as it was.

use dbenv::envfile::quote_value;
use dbenv::{Dsn, EnvVars, Secret, Settings};
use proptest::prelude::*;

/// Keys of the env contract, so arbitrary maps hit the real code paths.
const KEYS: &[&str] = dbenv::CONTRACT_KEYS;

/// Strings that look like DSNs often enough to reach deep into the parser.
fn dsn_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(postgres|postgresql)://[a-z%@:/?&=#\\[\\]0-9.,_-]{0,40}",
        ("[a-z_]{0,8}", ".{0,12}", "[a-z0-9.\\[\\]:]{0,12}", "[0-9]{0,6}", "[a-z_%]{0,8}", "[a-z=&%_-]{0,20}")
            .prop_map(|(u, p, h, port, db, q)| format!("postgresql://{u}:{p}@{h}:{port}/{db}?{q}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn dsn_parsing_never_panics(text in dsn_like()) {
        if let Ok(dsn) = Dsn::parse("DATABASE_URL", &text) {
            // Whatever parses prints without its password and re-parses the same.
            if let Some(password) = &dsn.password {
                if password.expose().len() > 3 {
                    prop_assert!(!dsn.to_string().contains(password.expose()));
                }
            }
            prop_assert_eq!(Dsn::parse("DATABASE_URL", &dsn.expose_url()).unwrap(), dsn);
        }
    }

    #[test]
    fn dsns_round_trip_any_credentials(user in ".{1,20}", password in ".{0,30}", db in ".{1,20}", port in 1u16..) {
        let dsn = Dsn::new(&user, &Secret::new(password.clone()), "localhost", port, &db);
        let back = Dsn::parse("DATABASE_URL", &dsn.expose_url()).unwrap();
        prop_assert_eq!(back.user.as_deref(), Some(user.as_str()));
        prop_assert_eq!(back.password.as_ref().map(|p| p.expose().to_string()), Some(password));
        prop_assert_eq!(back.dbname.as_deref(), Some(db.as_str()));
        prop_assert_eq!(back.port, Some(port));
    }

    #[test]
    fn settings_never_panic(values in proptest::collection::vec((0..KEYS.len(), dsn_like()), 0..14)) {
        let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (KEYS[*k], v.as_str())).collect();
        let vars = EnvVars::from_pairs(pairs);
        let _ = Settings::from_env(&vars);
        let _ = dbenv::invariants::check(&vars, dbenv::invariants::Context::Runtime);
        let _ = dbenv::role_passwords(&vars);
    }

    #[test]
    fn written_values_read_back_identically(value in ".{0,40}") {
        if let Ok(quoted) = quote_value("KEY", &value) {
            let line = format!("KEY={quoted}\n");
            let parsed: Vec<(String, String)> =
                dotenvy::from_read_iter(line.as_bytes()).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed, vec![("KEY".to_string(), value)]);
        }
    }
}
