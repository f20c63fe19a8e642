//! PostgreSQL connection URIs (`postgresql://` and `postgres://`), parsed here
//! rather than by the `postgres` crate.
//!
//! The crate's own parser rejects libpq's `sslmode=verify-ca|verify-full` and
//! `sslrootcert`, cannot tell which variable a mistake came from, and echoes
//! nothing useful for a wrong percent-escape. This parser follows libpq's URI
//! grammar for the single-host case, names the variable in every error,
//! never echoes the value (it may hold a password) and prints itself redacted.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, format_err, Context, Result};

use crate::Secret;

/// The port libpq assumes when a URI names none.
pub const DEFAULT_PORT: u16 = 5432;

/// How long a connection attempt may take when the DSN sets no
/// `connect_timeout`: long enough for a busy server, short enough that a
/// wrong host is an error rather than a hang.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The query parameters this tool understands (libpq's names). Anything else
/// is refused rather than silently ignored.
const SUPPORTED_PARAMS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "options",
    "application_name",
    "connect_timeout",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Postgresql,
    Postgres,
}

/// Where the server is: a TCP host name or address, or a unix socket directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    Socket(PathBuf),
}

impl Host {
    /// True for loopback addresses, `localhost` and unix sockets: traffic that
    /// never leaves the machine.
    pub fn is_local(&self) -> bool {
        match self {
            Host::Socket(_) => true,
            Host::Tcp(name) => {
                let name = name.trim_start_matches('[').trim_end_matches(']');
                name.eq_ignore_ascii_case("localhost")
                    || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(name) => f.write_str(name),
            Host::Socket(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// libpq's `sslmode` values, all six of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(variable: &str, text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => bail!("{variable}: sslmode is not one of disable, allow, prefer, require, verify-ca, verify-full"),
        })
    }
}

/// A parsed connection URI.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `postgresql://` or `postgres://`, kept as written.
    pub scheme: Scheme,
    /// The user and password, percent-decoded.
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// A TCP host or a socket directory, and the port.
    pub host: Option<Host>,
    pub port: Option<u16>,
    /// The database.
    pub dbname: Option<String>,
    /// `sslmode`, when given.
    pub sslmode: Option<SslMode>,
    /// The other supported parameters, in the order they appeared.
    pub params: Vec<(String, String)>,
}

impl Dsn {
    /// A DSN for `user` on `host:port/dbname`, in the `postgresql://` scheme.
    pub fn new(user: &str, password: &Secret, host: &str, port: u16, dbname: &str) -> Dsn {
        Dsn {
            scheme: Scheme::Postgresql,
            user: Some(user.to_string()),
            password: Some(password.clone()),
            host: Some(if host.starts_with('/') {
                Host::Socket(PathBuf::from(host))
            } else {
                Host::Tcp(host.to_string())
            }),
            port: Some(port),
            dbname: Some(dbname.to_string()),
            sslmode: None,
            params: Vec::new(),
        }
    }

    /// Parses `text`, the value of `variable`. Errors name the variable and
    /// never repeat the value.
    pub fn parse(variable: &str, text: &str) -> Result<Dsn> {
        let (scheme, rest) = scheme(variable, text.trim())?;
        let (authority, path, query) = split_uri(variable, rest)?;
        let mut dsn = Dsn {
            scheme,
            user: None,
            password: None,
            host: None,
            port: None,
            dbname: None,
            sslmode: None,
            params: Vec::new(),
        };
        dsn.read_authority(variable, authority)?;
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            dsn.dbname = Some(percent_decode(variable, "database name", path)?);
        }
        for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            dsn.read_param(variable, pair)?;
        }
        Ok(dsn)
    }

    /// `user:password@host:port`. The password may contain `@` when
    /// percent-encoded only, so the last `@` separates user info from the
    /// host, as in libpq.
    fn read_authority(&mut self, variable: &str, authority: &str) -> Result<()> {
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                self.user = Some(percent_decode(variable, "user name", user)?);
            }
            if let Some(password) = password {
                self.password = Some(Secret::new(percent_decode(variable, "password", password)?));
            }
        }
        if hostport.contains(',') {
            bail!("{variable} names several hosts; this tool connects to exactly one, so keep one `host:port`");
        }
        let (host, port) = split_host_port(variable, hostport)?;
        if !host.is_empty() {
            let host = percent_decode(variable, "host", host)?;
            self.host = Some(tcp_or_socket(variable, host)?);
        }
        if let Some(port) = port {
            self.port = Some(parse_port(variable, port)?);
        }
        Ok(())
    }

    /// One `key=value` of the query string.
    fn read_param(&mut self, variable: &str, pair: &str) -> Result<()> {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| format_err!("{variable}: a query parameter has no `=value`"))?;
        let key = percent_decode(variable, "query parameter name", key)?;
        if !SUPPORTED_PARAMS.contains(&key.as_str()) {
            bail!(
                "{variable}: a query parameter is not supported; remove it (supported: {})",
                SUPPORTED_PARAMS.join(", ")
            );
        }
        let value = percent_decode(variable, &format!("parameter `{key}`"), value)?;
        match key.as_str() {
            "host" => self.host = Some(tcp_or_socket(variable, value)?),
            "port" => self.port = Some(parse_port(variable, &value)?),
            "user" => self.user = Some(value),
            "password" => self.password = Some(Secret::new(value)),
            "dbname" => self.dbname = Some(value),
            "sslmode" => self.sslmode = Some(SslMode::parse(variable, &value)?),
            "connect_timeout" => {
                value
                    .parse::<u64>()
                    .map_err(|_| format_err!("{variable}: connect_timeout is not a whole number of seconds"))?;
                self.params.push((key, value));
            }
            _ => self.params.push((key, value)),
        }
        Ok(())
    }

    /// The port, libpq's default when the URI names none.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) a query parameter such as `options`.
    pub fn set_param(&mut self, key: &str, value: &str) {
        match self.params.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.params.push((key.to_string(), value.to_string())),
        }
    }

    /// The same DSN pointing at another database.
    pub fn with_dbname(&self, dbname: &str) -> Dsn {
        Dsn { dbname: Some(dbname.to_string()), ..self.clone() }
    }

    /// The same DSN logging in as `user` with `password`.
    pub fn with_login(&self, user: &str, password: &Secret) -> Dsn {
        Dsn { user: Some(user.to_string()), password: Some(password.clone()), ..self.clone() }
    }

    /// The connect timeout the DSN asks for, or [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(&self) -> Duration {
        self.param("connect_timeout")
            .and_then(|v| v.parse::<u64>().ok())
            // libpq treats 0 as "wait forever" and anything below 2 as 2.
            .map(|secs| if secs == 0 { Duration::from_secs(3600) } else { Duration::from_secs(secs.max(2)) })
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// `host:port` for messages; never includes credentials.
    pub fn address(&self) -> String {
        let host = match &self.host {
            Some(Host::Tcp(name)) if name.contains(':') && !name.starts_with('[') => {
                format!("[{name}]")
            }
            Some(host) => host.to_string(),
            None => "localhost".to_string(),
        };
        format!("{host}:{}", self.port_or_default())
    }

    /// The full URI **with the password**, for writing env files only.
    pub fn expose_url(&self) -> String {
        self.render(true)
    }

    fn render(&self, with_password: bool) -> String {
        let mut out = String::from(match self.scheme {
            Scheme::Postgresql => "postgresql://",
            Scheme::Postgres => "postgres://",
        });
        if let Some(user) = &self.user {
            out.push_str(&percent_encode(user));
        }
        if let Some(password) = &self.password {
            out.push(':');
            out.push_str(&if with_password { percent_encode(password.expose()) } else { "***".to_string() });
        }
        if self.user.is_some() || self.password.is_some() {
            out.push('@');
        }
        let mut query: Vec<(String, String)> = Vec::new();
        match &self.host {
            Some(Host::Tcp(name)) if name.contains(':') && !name.starts_with('[') => out.push_str(&format!("[{name}]")),
            Some(Host::Tcp(name)) => out.push_str(&percent_encode(name)),
            Some(Host::Socket(dir)) => query.push(("host".into(), dir.display().to_string())),
            None => {}
        }
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        if let Some(dbname) = &self.dbname {
            out.push('/');
            out.push_str(&percent_encode(dbname));
        }
        if let Some(mode) = self.sslmode {
            query.push(("sslmode".into(), mode.as_str().into()));
        }
        query.extend(self.params.iter().cloned());
        for (i, (key, value)) in query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&percent_encode(key));
            out.push('=');
            out.push_str(&percent_encode(value));
        }
        out
    }
}

/// Prints the DSN with the password replaced by `***`.
impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({self})")
    }
}

/// The scheme and what follows it.
fn scheme<'t>(variable: &str, text: &'t str) -> Result<(Scheme, &'t str)> {
    if let Some(rest) = text.strip_prefix("postgresql://") {
        Ok((Scheme::Postgresql, rest))
    } else if let Some(rest) = text.strip_prefix("postgres://") {
        Ok((Scheme::Postgres, rest))
    } else if text.is_empty() {
        bail!("{variable} is empty; set it to a URI like postgresql://user:password@localhost:5432/dbname");
    } else {
        bail!(
            "{variable} does not start with `postgresql://` or `postgres://`; \
             write it as a URI like postgresql://user:password@localhost:5432/dbname"
        );
    }
}

/// The authority, the path and the query string of what follows the
/// scheme, refusing what would split inside a secret.
type UriParts<'t> = (&'t str, Option<&'t str>, Option<&'t str>);

fn split_uri<'t>(variable: &str, rest: &'t str) -> Result<UriParts<'t>> {
    if rest.contains('#') {
        bail!("{variable} contains `#`; percent-encode it as %23 (in a password too)");
    }
    // An `@` after the first `/` or `?` means a user name or password
    // holds one of them unencoded: the URI would split inside the
    // secret, and the errors below would quote a piece of it.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[authority_end..].contains('@') {
        bail!(
            "{variable}: an `@` follows a `/` or `?`, so the user name or password holds `/`, `?` or `@` \
             unencoded; percent-encode them (%2F, %3F, %40)"
        );
    }
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    Ok(match authority_and_path.split_once('/') {
        Some((authority, path)) => (authority, Some(path), query),
        None => (authority_and_path, None, query),
    })
}

/// A unix socket directory (an absolute path) or a TCP host: a name, an
/// IPv4 address or an IPv6 address (which contains `:`).
fn tcp_or_socket(variable: &str, host: String) -> Result<Host> {
    if host.starts_with('/') {
        return Ok(Host::Socket(host.into()));
    }
    let ipv6 = host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_ok();
    if (host.contains(':') && !ipv6) || host.chars().any(|c| c.is_whitespace() || "[]/@?#,".contains(c)) {
        bail!("{variable}: the host is not a host name, an IP address or a socket directory");
    }
    Ok(Host::Tcp(host))
}

fn split_host_port<'a>(variable: &str, hostport: &'a str) -> Result<(&'a str, Option<&'a str>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format_err!("{variable}: an IPv6 host opened with `[` is not closed with `]`"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => {
                    bail!("{variable}: unexpected text after the IPv6 host; write `[address]:port`")
                }
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

fn parse_port(variable: &str, text: &str) -> Result<u16> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => bail!("{variable}: the port is not a number between 1 and 65535 (or a password holds an unencoded `@`)"),
    }
}

/// Decodes `%XX` escapes; `what` names the part for the error message (the
/// text itself is not repeated, it may be a password).
pub fn percent_decode(variable: &str, what: &str, text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits, no sign (`from_str_radix` would take `+1`).
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok());
            let value = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("{variable}: the {what} has a `%` that is not followed by two hex digits; write a literal `%` as %25"))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format_err!("{variable}: the {what} decodes to bytes that are not UTF-8"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the
/// result means the same to libpq, node-postgres, the `url` crate and a shell.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Dsn {
        Dsn::parse("DATABASE_URL", text).unwrap()
    }

    fn error(text: &str) -> String {
        format!("{:#}", Dsn::parse("DATABASE_URL", text).unwrap_err())
    }

    #[test]
    fn parses_the_upstream_shape() {
        let dsn = parse("postgresql://app_user:password@localhost:55432/cogni_template_dev");
        assert_eq!(dsn.scheme, Scheme::Postgresql);
        assert_eq!(dsn.user.as_deref(), Some("app_user"));
        assert_eq!(dsn.password.as_ref().map(Secret::expose), Some("password"));
        assert_eq!(dsn.host, Some(Host::Tcp("localhost".into())));
        assert_eq!(dsn.port, Some(55432));
        assert_eq!(dsn.dbname.as_deref(), Some("cogni_template_dev"));
        assert_eq!(dsn.to_string(), "postgresql://app_user:***@localhost:55432/cogni_template_dev");
    }

    #[test]
    fn both_schemes_and_defaults() {
        let dsn = parse("postgres://u@db.example.com/app");
        assert_eq!(dsn.scheme, Scheme::Postgres);
        assert_eq!(dsn.password, None);
        assert_eq!(dsn.port_or_default(), 5432);
        assert_eq!(dsn.to_string(), "postgres://u@db.example.com/app");
        let bare = parse("postgresql://");
        assert_eq!((bare.user, bare.host, bare.dbname), (None, None, None));
    }

    #[test]
    fn an_unencoded_slash_or_question_mark_in_a_password_is_named_without_quoting_it() {
        for text in ["postgresql://app:zq9/x8@db:5432/app", "postgresql://app:zq9?x8@db/app"] {
            let error = format!("{:#}", Dsn::parse("DATABASE_URL", text).unwrap_err());
            assert!(error.contains("percent-encode them"), "{text}: {error}");
            assert!(!error.contains("zq9") && !error.contains("x8"), "{text}: {error}");
        }
    }

    #[test]
    fn percent_encoding_round_trips_hostile_passwords() {
        for password in ["p@ss:w/rd?#&=%", "it's \"quoted\" \\ $HOME", "pässwörd ünïcode", " spaced "] {
            let dsn = Dsn::new("app_user", &Secret::new(password), "localhost", 55432, "db");
            let url = dsn.expose_url();
            assert!(!url.contains(' ') && !url.contains('$') && !url.contains('\''), "{url}");
            let back = parse(&url);
            assert_eq!(back.password.unwrap().expose(), password);
            assert_eq!(back.user.as_deref(), Some("app_user"));
        }
        // `+` is literal in user info, as in libpq.
        assert_eq!(parse("postgresql://a+b:c+d@h/db").password.unwrap().expose(), "c+d");
    }

    #[test]
    fn ipv6_sockets_and_query_parameters() {
        let dsn = parse(
            "postgresql://u:p@[::1]:6543/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Froot.crt&application_name=x",
        );
        assert_eq!(dsn.host, Some(Host::Tcp("::1".into())));
        assert!(dsn.host.as_ref().unwrap().is_local());
        assert_eq!(dsn.port, Some(6543));
        assert_eq!(dsn.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(dsn.param("sslrootcert"), Some("/tmp/root.crt"));
        assert_eq!(dsn.address(), "[::1]:6543");
        assert_eq!(parse(&dsn.expose_url()), dsn);

        let socket = parse("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db");
        assert_eq!(socket.host, Some(Host::Socket("/var/run/postgresql".into())));
        let socket = parse("postgresql:///db?host=/tmp&port=5433");
        assert_eq!(socket.host, Some(Host::Socket("/tmp".into())));
        assert_eq!(socket.port, Some(5433));
        assert_eq!(parse(&socket.expose_url()), socket);
        assert!(!parse("postgresql://u@db.internal/app").host.unwrap().is_local());
        assert!(parse("postgresql://u@127.0.0.1/app").host.unwrap().is_local());
    }

    #[test]
    fn errors_name_the_variable_and_never_echo_the_password() {
        let cases = [
            ("mysql://u:s3cret@h/db", "does not start with `postgresql://`"),
            ("", "is empty"),
            ("postgresql://u:s3cret@h:99999/db", "the port is not a number"),
            ("postgresql://u:s3cret@h:abc/db", "the port is not a number"),
            // No host: the password reads as the port, and is not echoed.
            ("postgresql://u:s3cret", "the port is not a number"),
            ("postgresql://u:s3cret%zz@h/db", "password has a `%`"),
            ("postgresql://u:s3cret%ff@h/db", "not UTF-8"),
            ("postgresql://u:s3cret@h1:1,h2:2/db", "several hosts"),
            ("postgresql://u:s3cret@h/db?schema=x", "a query parameter is not supported"),
            ("postgresql://u:s3cret@h/db?s3cret", "has no `=value`"),
            ("postgresql://u:s3cret@h/db?sslmode=s3cret", "sslmode is not one of"),
            ("postgresql://u:s3cret@h/db?sslmode", "has no `=value`"),
            ("postgresql://u:s3cret@h/db?connect_timeout=soon", "connect_timeout"),
            ("postgresql://u:s3#cret@h/db", "contains `#`"),
            ("postgresql://u:s3cret@[::1/db", "not closed"),
            // Found by the property test: a `]` in a host name.
            ("postgresql://u:s3cret@:]:1/db", "the host is not a host name"),
            ("postgresql://u:s3cret@h/db?host=a%20b", "the host is not a host name"),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(message.starts_with("DATABASE_URL"), "{text}: {message}");
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("s3cret") && !message.contains("s3"), "{text}: {message}");
        }
    }

    #[test]
    fn password_in_query_is_redacted_too() {
        let dsn = parse("postgresql://h/db?user=u&password=s3cret");
        assert_eq!(dsn.password.as_ref().unwrap().expose(), "s3cret");
        assert!(!dsn.to_string().contains("s3cret"));
        assert!(!format!("{dsn:?}").contains("s3cret"));
    }

    #[test]
    fn connect_timeout_follows_libpq() {
        assert_eq!(parse("postgresql://h/db").connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(parse("postgresql://h/db?connect_timeout=1").connect_timeout(), Duration::from_secs(2));
        assert_eq!(parse("postgresql://h/db?connect_timeout=30").connect_timeout(), Duration::from_secs(30));
    }
}
