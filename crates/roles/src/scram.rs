//! SCRAM-SHA-256 verifiers: new ones for `ALTER ROLE … PASSWORD`, and checking
//! a stored one against a password without changing it.
//!
//! New verifiers come from `postgres-protocol` (random salt, 4096 rounds,
//! SASLprep as libpq does). Checking needs the stored salt and iteration
//! count, which that crate does not expose, so the derivation is redone here
//! with the same `hmac`/`sha2` crates it uses.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dbenv::Secret;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// What `pg_authid.rolpassword` holds for a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredPassword {
    /// The admin cannot read `pg_authid` (not a superuser).
    Unknown,
    /// No password (NULL).
    Absent,
    /// A legacy `md5…` hash: replaced by SCRAM once.
    Md5,
    /// A SCRAM-SHA-256 verifier.
    Scram(Secret),
    /// Anything else (a plaintext password from PostgreSQL < 10).
    Other,
}

impl StoredPassword {
    pub fn from_catalog(rolpassword: Option<&str>) -> StoredPassword {
        match rolpassword {
            None => StoredPassword::Absent,
            Some(text) if text.starts_with("SCRAM-SHA-256$") => StoredPassword::Scram(Secret::new(text)),
            Some(text) if text.starts_with("md5") && text.len() == 35 => StoredPassword::Md5,
            Some(_) => StoredPassword::Other,
        }
    }
}

/// A new verifier for `password` with a random salt.
pub fn new_verifier(password: &Secret) -> Secret {
    Secret::new(postgres_protocol::password::scram_sha_256(password.expose().as_bytes()))
}

/// Whether `verifier` (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`)
/// was made from `password`. A malformed verifier never matches.
pub fn verifier_matches(verifier: &Secret, password: &Secret) -> bool {
    let Some(parsed) = parse(verifier.expose()) else { return false };
    let salted = salted_password(&prepare(password.expose().as_bytes()), &parsed.salt, parsed.iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    // Not constant-time: both sides are local, there is no oracle to time.
    stored_key.as_slice() == parsed.stored_key.as_slice() && server_key.as_slice() == parsed.server_key.as_slice()
}

struct Parsed {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn parse(text: &str) -> Option<Parsed> {
    let rest = text.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let parsed = Parsed {
        iterations: iterations.parse().ok().filter(|n| *n > 0)?,
        salt: STANDARD.decode(salt).ok()?,
        stored_key: STANDARD.decode(stored_key).ok()?,
        server_key: STANDARD.decode(server_key).ok()?,
    };
    (parsed.stored_key.len() == 32 && parsed.server_key.len() == 32).then_some(parsed)
}

/// SASLprep when the password is valid UTF-8 and prepares cleanly, the raw
/// bytes otherwise: what the server and libpq do.
fn prepare(password: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(password) {
        Ok(text) => match stringprep::saslprep(text) {
            Ok(prepared) => prepared.into_owned().into_bytes(),
            Err(_) => password.to_vec(),
        },
        Err(_) => password.to_vec(),
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block: RFC 5802's `Hi()`.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut previous = hmac(password, &block);
    let mut result = previous;
    for _ in 1..iterations {
        previous = hmac(password, &previous);
        for (r, p) in result.iter_mut().zip(previous.iter()) {
            *r ^= p;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_verifiers_made_by_postgres_protocol() {
        for password in ["password", "it's a \"quote\" \\ $HOME", "pässwörd", "\u{00A0}nbsp", ""] {
            let password = Secret::new(password);
            let verifier = new_verifier(&password);
            assert!(verifier.expose().starts_with("SCRAM-SHA-256$4096:"));
            assert!(verifier_matches(&verifier, &password), "{:?}", password.expose());
            assert!(!verifier_matches(&verifier, &Secret::new("other")));
        }
    }

    #[test]
    fn matches_a_verifier_made_by_the_server() {
        // `CREATE ROLE x PASSWORD '…'` with scram-sha-256 on PostgreSQL 15,
        // read back from pg_authid.
        let verifier = Secret::new(
            "SCRAM-SHA-256$4096:EFwqmIJ7qZTiAxLybdFzfw==$l7OpHvZxYGiWnF71ZB389heiGneeuke+2B1N3DBmRjg=:\
             C+nASkWmpehLLjslZo4fPBk9iLz37n9YXCDK9b2bhMA=",
        );
        assert!(verifier_matches(&verifier, &Secret::new("password")));
        // Non-ASCII goes through SASLprep on both sides.
        let verifier = Secret::new(
            "SCRAM-SHA-256$4096:BXs7qn5c4oNXPDhc+2cb7g==$WjwmLoDYstf6JQOyxUNBmLTJ4SuCo9+cVqEgswT/j0A=:\
             Zk6fesT1F3yVt8JpM4qTXwG2mYemKn8XPOrTbo/yOaU=",
        );
        assert!(verifier_matches(&verifier, &Secret::new("pässwörd")));
        assert!(!verifier_matches(&verifier, &Secret::new("Password")));
    }

    #[test]
    fn malformed_verifiers_never_match() {
        for text in ["", "SCRAM-SHA-256$", "SCRAM-SHA-256$0:AA==$AA==:AA==", "md5abc", "SCRAM-SHA-256$4096:!!$x:y"] {
            assert!(!verifier_matches(&Secret::new(text), &Secret::new("password")), "{text}");
        }
    }

    #[test]
    fn classifies_catalog_values() {
        assert_eq!(StoredPassword::from_catalog(None), StoredPassword::Absent);
        assert_eq!(StoredPassword::from_catalog(Some("md5d7d880f96044b72d0bba108ace96d1e4")), StoredPassword::Md5);
        assert!(matches!(StoredPassword::from_catalog(Some("SCRAM-SHA-256$4096:x$y:z")), StoredPassword::Scram(_)));
        assert_eq!(StoredPassword::from_catalog(Some("plain")), StoredPassword::Other);
    }
}
