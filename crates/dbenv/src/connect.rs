//! Opening connections from a [`Dsn`], with errors that say what to do, and
//! TLS as libpq's `sslmode` means it, through rustls (pure Rust, the `ring`
//! provider: no OpenSSL at build or run time): `prefer` (the default) and
//! `require` encrypt without checking the certificate (`require` checks the
//! CA when `sslrootcert` is given; `prefer` stays plain on loopback),
//! `verify-ca` checks the chain, `verify-full` also the host name;
//! `sslrootcert=system` trusts the system's CA store, `sslcert`/`sslkey`
//! present a client certificate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, format_err, Context, Result};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::dsn::{Dsn, Host, SslMode};

/// The `postgres` crate configuration for `dsn` (without TLS settings).
pub fn pg_config(dsn: &Dsn) -> Config {
    let mut config = Config::new();
    if let Some(user) = &dsn.user {
        config.user(user);
    }
    if let Some(password) = &dsn.password {
        config.password(password.expose());
    }
    match &dsn.host {
        Some(Host::Tcp(name)) => {
            config.host(name);
        }
        Some(Host::Socket(dir)) => {
            config.host_path(dir);
        }
        None => {
            config.host("localhost");
        }
    }
    config.port(dsn.port_or_default());
    if let Some(dbname) = &dsn.dbname {
        config.dbname(dbname);
    }
    if let Some(options) = dsn.param("options") {
        config.options(options);
    }
    config.application_name(dsn.param("application_name").unwrap_or("cargo-xtask"));
    config.connect_timeout(dsn.connect_timeout());
    config.ssl_mode(match dsn.sslmode {
        Some(SslMode::Disable) => postgres::config::SslMode::Disable,
        Some(SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => postgres::config::SslMode::Require,
        // libpq's default is `prefer`.
        _ => postgres::config::SslMode::Prefer,
    });
    config
}

/// The TLS connector `dsn` asks for, or `None` for plain TCP.
pub fn tls_connector(dsn: &Dsn, var: &str) -> Result<Option<MakeRustlsConnect>> {
    let mode = dsn.sslmode.unwrap_or(SslMode::Prefer);
    let local = dsn.host.as_ref().is_none_or(Host::is_local);
    // On loopback `prefer` (the default) encrypts nothing worth encrypting,
    // and loading a trust store costs time on every connection.
    if mode == SslMode::Disable || matches!(dsn.host, Some(Host::Socket(_))) || (local && mode <= SslMode::Prefer) {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let root = dsn.param("sslrootcert");
    let verify_ca = mode >= SslMode::VerifyCa || (mode == SslMode::Require && root.is_some());
    let roots = match root {
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!("{var}: sslrootcert=system, but the system has no CA certificates (install ca-certificates)");
            }
            Some(store)
        }
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format_err!("{var}: cannot read sslrootcert `{path}`: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format_err!("{var}: sslrootcert `{path}` is not a PEM certificate: {e}"))?;
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(certificates);
            if added == 0 {
                bail!("{var}: sslrootcert `{path}` holds no usable certificate");
            }
            Some(store)
        }
        None if verify_ca => bail!(
            "{var} asks for sslmode={} but names no sslrootcert: add `sslrootcert=/path/to/root.crt` \
             (or `sslrootcert=system` for the system's CAs)",
            mode.as_str()
        ),
        None => None,
    };
    let chain = match roots.filter(|_| verify_ca) {
        Some(store) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| format_err!("{var}: cannot set up certificate checks: {e}"))?,
        ),
        None => None,
    };
    let verifier =
        Arc::new(SslModeVerifier { chain, check_name: mode == SslMode::VerifyFull, provider: provider.clone() });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format_err!("{var}: cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (dsn.param("sslcert"), dsn.param("sslkey")) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format_err!("{var}: cannot read sslcert `{cert}`: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format_err!("{var}: sslcert `{cert}` is not a PEM certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format_err!("{var}: cannot read sslkey `{key}` as a PEM private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format_err!("{var}: sslcert and sslkey do not make a client certificate: {e}"))?
        }
        (Some(_), None) | (None, Some(_)) => bail!("{var}: sslcert and sslkey go together; give both or neither"),
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The server-certificate check each `sslmode` asks for: none (`prefer`,
/// `require` without a root: encrypted, unauthenticated, as libpq), the
/// chain (`verify-ca`, `require` with a root), or the chain and the host
/// name (`verify-full`). Handshake signatures are always checked.
#[derive(Debug)]
struct SslModeVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

/// A handshake signature's check (`m`essage, `c`ertificate, `d`igitally signed struct).
type Signature = Result<HandshakeSignatureValid, rustls::Error>;

impl ServerCertVerifier for SslModeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The chain is checked before the name: a name error means the
            // chain held, which is all verify-ca asks.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Signature {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Signature {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server (or the socket) said no.
    Server(postgres::Error),
    /// Nothing complete came back within the connect timeout: a server that
    /// accepts TCP and then stays silent, or a black hole.
    NoAnswer(Duration),
}

impl ConnectError {
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            ConnectError::Server(error) => error.code(),
            ConnectError::NoAnswer(_) => None,
        }
    }
}

/// Connects as `dsn` says and returns the failure itself, for callers that
/// look at its SQLSTATE. The outer error is a TLS setup problem.
pub fn connect_raw(dsn: &Dsn, var: &str) -> Result<Result<Client, ConnectError>> {
    open(&pg_config(dsn), dsn, var)
}

/// The `search_path` of every session the tool opens, set before its first
/// query. A migrator that defines `public.quote_ident(name)` or sets its
/// own (or the database's) `search_path` to `public, pg_catalog` would
/// otherwise have its functions and operators chosen over the built-in
/// ones in the tool's catalog SQL, run with the admin's rights during
/// `db-provision` or made to lie to `db-check` (CVE-2018-1058's class).
/// With `pg_catalog` first and `pg_temp` named last, an unqualified name in
/// the tool's SQL can only mean a built-in: functions and operators are
/// never looked up in `pg_temp`. `SET` resolves no function, so the pin
/// itself cannot be hijacked. `RESET search_path` gives back the value the
/// role and database configure (the runner does, for migrations).
/// `standard_conforming_strings` is pinned on too: with it off (a database
/// default the migrator may set) a backslash in a name would end the
/// literal the tool's `quote_literal` built around it.
pub const PINNED_SEARCH_PATH: &str = "SET search_path = pg_catalog, pg_temp; SET standard_conforming_strings = on";

/// Pins the session's `search_path` (see [`PINNED_SEARCH_PATH`]).
fn pin_search_path(mut client: Client) -> Result<Client, postgres::Error> {
    client.batch_execute(PINNED_SEARCH_PATH)?;
    Ok(client)
}

/// Connects `config` with the TLS `dsn` asks for, within the DSN's connect
/// timeout for the whole exchange (as libpq's `connect_timeout`): the
/// `postgres` crate bounds only the TCP connect, so a server that accepts
/// and never answers would hang it. The attempt runs on a helper thread;
/// past the deadline it is abandoned.
fn open(config: &Config, dsn: &Dsn, var: &str) -> Result<Result<Client, ConnectError>> {
    open_as(config, dsn, var, true)
}

/// [`open`], pinning the search path or not: a session that must first
/// learn whether it has a server backend of its own sets nothing before
/// (a `SET` through a transaction-mode pooler stays on a shared backend,
/// where the app's next transaction would find it).
fn open_as(config: &Config, dsn: &Dsn, var: &str, pin: bool) -> Result<Result<Client, ConnectError>> {
    let tls = tls_connector(dsn, var)?;
    let config = config.clone();
    let deadline = dsn.connect_timeout();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pg-connect".into())
        .spawn(move || {
            let result = match tls {
                Some(tls) => config.connect(tls),
                None => config.connect(NoTls),
            };
            let _ = sender.send(if pin { result.and_then(pin_search_path) } else { result });
        })
        .context("start a connection thread")?;
    Ok(match receiver.recv_timeout(deadline + Duration::from_millis(250)) {
        Ok(result) => result.map_err(ConnectError::Server),
        Err(_) => Err(ConnectError::NoAnswer(deadline)),
    })
}

/// Connects as the DSN says. `var` names where the DSN came from, for the
/// error message.
pub fn connect(dsn: &Dsn, var: &str) -> Result<Client> {
    connect_with(dsn, var, pg_config(dsn))
}

/// Like [`connect_with`], setting nothing in the session: only for learning
/// how the DSN reaches the server (`pooling`) before any `SET`. Pin it with
/// [`pin`] before any other query.
pub fn connect_unpinned(dsn: &Dsn, var: &str, config: Config) -> Result<Client> {
    open_as(&config, dsn, var, false)?.map_err(|error| describe_connect_error(&error, dsn, var))
}

/// [`connect_raw`] setting nothing in the session, as [`connect_unpinned`]:
/// for a session through a DSN that may lead to a transaction-mode pool,
/// where a `SET` would stay on a backend the app's sessions share.
pub fn connect_raw_unpinned(dsn: &Dsn, var: &str) -> Result<Result<Client, ConnectError>> {
    open_as(&pg_config(dsn), dsn, var, false)
}

/// Pins a session [`connect_unpinned`] opened (see [`PINNED_SEARCH_PATH`]).
pub fn pin(client: Client) -> Result<Client> {
    Ok(pin_search_path(client)?)
}

/// Like [`connect`], with a configuration the caller adjusted (a notice
/// callback, say).
pub fn connect_with(dsn: &Dsn, var: &str, config: Config) -> Result<Client> {
    open(&config, dsn, var)?.map_err(|error| describe_connect_error(&error, dsn, var))
}

/// Whether a failed connection may succeed later (the server is starting or
/// not yet listening) rather than being refused for good.
pub fn is_transient(error: &ConnectError) -> bool {
    match error.code() {
        Some(code) => *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::TOO_MANY_CONNECTIONS,
        // No SQLSTATE: the socket itself failed (refused, reset, timed out).
        None => true,
    }
}

/// What [`connect_waiting`] tells its caller while it waits.
#[derive(Clone, Debug)]
pub struct Wait {
    /// `host:port`.
    pub address: String,
    pub elapsed: Duration,
    pub timeout: Duration,
    /// The address is this machine's and the connection was refused:
    /// no server runs there (yet), which deserves saying at once.
    pub nothing_listens_locally: bool,
}

/// Connects, retrying while the server is not up yet, for at most `timeout`.
/// `on_wait` hears at the first failed attempt (so the caller can say at
/// once that nothing listens) and then once a second.
pub fn connect_waiting(dsn: &Dsn, var: &str, timeout: Duration, on_wait: impl FnMut(&Wait)) -> Result<Client> {
    connect_waiting_as(dsn, var, timeout, on_wait, true)
}

/// [`connect_waiting`] setting nothing in the session, as [`connect_unpinned`].
pub fn connect_waiting_unpinned(dsn: &Dsn, var: &str, timeout: Duration, on_wait: impl FnMut(&Wait)) -> Result<Client> {
    connect_waiting_as(dsn, var, timeout, on_wait, false)
}

fn connect_waiting_as(
    dsn: &Dsn,
    var: &str,
    timeout: Duration,
    mut on_wait: impl FnMut(&Wait),
    pin: bool,
) -> Result<Client> {
    let start = Instant::now();
    let mut last_report: Option<Instant> = None;
    loop {
        match open_as(&pg_config(dsn), dsn, var, pin)? {
            Ok(client) => return Ok(client),
            Err(error) if is_transient(&error) && start.elapsed() < timeout => {
                if last_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    on_wait(&Wait {
                        address: dsn.address(),
                        elapsed: start.elapsed(),
                        timeout,
                        nothing_listens_locally: refused(&error) && dsn.host.as_ref().is_none_or(Host::is_local),
                    });
                    last_report = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) if is_transient(&error) => {
                return Err(describe_connect_error(&error, dsn, var).context(format!(
                    "the server at {} did not accept connections within {} s (PG_TIMEOUT)",
                    dsn.address(),
                    timeout.as_secs()
                )))
            }
            Err(error) => return Err(describe_connect_error(&error, dsn, var)),
        }
    }
}

/// The socket was refused: nothing listens on the address.
fn refused(error: &ConnectError) -> bool {
    let ConnectError::Server(error) = error else { return false };
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound);
        }
        source = current.source();
    }
    false
}

/// Turns a connection failure into a sentence with the fix.
pub fn describe_connect_error(error: &ConnectError, dsn: &Dsn, var: &str) -> anyhow::Error {
    let user = dsn.user.as_deref().unwrap_or("?");
    let db = dsn.dbname.as_deref().unwrap_or(user);
    let address = dsn.address();
    let what = format!("cannot connect to {address} as `{user}` ({var})");
    let error = match error {
        ConnectError::NoAnswer(deadline) => {
            return format_err!(
                "{what}: no answer within {} s: the server did not answer in time; check the host, port and \
                 firewall, or raise connect_timeout in the DSN",
                deadline.as_secs()
            )
        }
        ConnectError::Server(error) => error,
    };
    let Some(db_error) = error.as_db_error() else {
        let text = error.to_string();
        let cause = std::error::Error::source(error).map(|s| s.to_string()).unwrap_or_default();
        let detail = format!("{text} {cause}");
        let fix = if detail.contains("refused") {
            if dsn.host.as_ref().is_some_and(Host::is_local) {
                "nothing listens there; start the local server with `cargo xtask db-up`, or fix DB_HOST/DB_PORT"
            } else {
                "nothing listens there; check the host and port"
            }
        } else if detail.contains("timed out") || detail.contains("timeout") {
            "the server did not answer in time; check the host, port and firewall (connect_timeout)"
        } else if detail.contains("lookup") || detail.contains("resolve") || detail.contains("Name or service") {
            "the host name does not resolve; check the host"
        } else {
            "check that the server runs and the address is right"
        };
        return format_err!("{what}: {}: {fix}", detail.trim());
    };
    let code = db_error.code();
    let fix = if *code == SqlState::INVALID_PASSWORD {
        format!("the password for `{user}` is wrong; check {var}")
    } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        format!(
            "the server refuses `{user}` (no such role, not allowed to log in, or no pg_hba.conf entry); check {var}"
        )
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        format!("database `{db}` does not exist; create it with `cargo xtask db-provision`")
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        format!("`{user}` may not connect to `{db}`; run `cargo xtask db-provision` to grant CONNECT")
    } else if *code == SqlState::CANNOT_CONNECT_NOW {
        "the server is starting or shutting down; try again".to_string()
    } else {
        "see the server's message above".to_string()
    };
    format_err!("{what}: {} (SQLSTATE {}): {fix}", db_error.message(), code.code())
}
