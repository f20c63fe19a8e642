//! Opening connections from a [`Dsn`], with errors that say what to do, and
//! TLS as libpq's `sslmode` means it (through `native-tls`, i.e. the system's
//! OpenSSL): `prefer` (the default) and `require` encrypt without checking
//! the certificate (`require` checks the CA when `sslrootcert` is given;
//! `prefer` stays plain on loopback), `verify-ca` checks the chain,
//! `verify-full` also the host name.

use std::time::{Duration, Instant};

use anyhow::{bail, format_err, Context, Result};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use postgres_native_tls::MakeTlsConnector;

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
pub fn tls_connector(dsn: &Dsn, var: &str) -> Result<Option<MakeTlsConnector>> {
    let mode = dsn.sslmode.unwrap_or(SslMode::Prefer);
    let local = dsn.host.as_ref().is_none_or(Host::is_local);
    // On loopback `prefer` (the default) encrypts nothing worth encrypting,
    // and setting OpenSSL up loads the system's CA bundle: ~30 ms a connection.
    if mode == SslMode::Disable || matches!(dsn.host, Some(Host::Socket(_))) || (local && mode <= SslMode::Prefer) {
        return Ok(None);
    }
    let mut builder = native_tls::TlsConnector::builder();
    let root = dsn.param("sslrootcert");
    let verify_ca = mode >= SslMode::VerifyCa || (mode == SslMode::Require && root.is_some());
    match root {
        Some("system") => {}
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("{var}: cannot read sslrootcert `{path}`"))?;
            let certificate = native_tls::Certificate::from_pem(&pem)
                .map_err(|e| format_err!("{var}: sslrootcert `{path}` is not a PEM certificate: {e}"))?;
            builder.add_root_certificate(certificate).disable_built_in_roots(true);
        }
        None if verify_ca => bail!(
            "{var} asks for sslmode={} but names no sslrootcert: add `sslrootcert=/path/to/root.crt` \
             (or `sslrootcert=system` for the system's CAs)",
            mode.as_str()
        ),
        None => {}
    }
    if !verify_ca {
        builder.danger_accept_invalid_certs(true);
    }
    if mode != SslMode::VerifyFull {
        builder.danger_accept_invalid_hostnames(true);
    }
    if let (Some(cert), Some(key)) = (dsn.param("sslcert"), dsn.param("sslkey")) {
        let cert_pem = std::fs::read(cert).with_context(|| format!("{var}: cannot read sslcert `{cert}`"))?;
        let key_pem = std::fs::read(key).with_context(|| format!("{var}: cannot read sslkey `{key}`"))?;
        let identity = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem)
            .map_err(|e| format_err!("{var}: sslcert/sslkey are not a PEM certificate and PKCS#8 key: {e}"))?;
        builder.identity(identity);
    }
    let connector = builder.build().map_err(|e| format_err!("{var}: cannot set up TLS: {e}"))?;
    Ok(Some(MakeTlsConnector::new(connector)))
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

/// Connects `config` with the TLS `dsn` asks for, within the DSN's connect
/// timeout for the whole exchange (as libpq's `connect_timeout`): the
/// `postgres` crate bounds only the TCP connect, so a server that accepts
/// and never answers would hang it. The attempt runs on a helper thread;
/// past the deadline it is abandoned.
fn open(config: &Config, dsn: &Dsn, var: &str) -> Result<Result<Client, ConnectError>> {
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
            let _ = sender.send(result);
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

/// Connects, retrying while the server is not up yet, for at most `timeout`.
/// `on_wait` is told how long it has waited, once a second, so the caller
/// can show that it waits.
pub fn connect_waiting(dsn: &Dsn, var: &str, timeout: Duration, mut on_wait: impl FnMut(Duration)) -> Result<Client> {
    let start = Instant::now();
    let mut last_report = start;
    loop {
        match open(&pg_config(dsn), dsn, var)? {
            Ok(client) => return Ok(client),
            Err(error) if is_transient(&error) && start.elapsed() < timeout => {
                if last_report.elapsed() >= Duration::from_secs(1) {
                    on_wait(start.elapsed());
                    last_report = Instant::now();
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
