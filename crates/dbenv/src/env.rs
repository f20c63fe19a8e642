//! Loading the environment contract: an env file read with dotenvy, the
//! process environment winning, turned into typed settings.
//!
//! Every piece (a role's name and password, the host, the port, the
//! database) may come from its `APP_DB_*`/`DB_*` variable, from the DSN, or
//! both; when both are present they must agree. A disagreement is an error
//! naming both variables, never a silent pick.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::dsn::{Dsn, Host};
use crate::names::{alt_login, logins_gate, validate_name, NameKind, MAX_ROTATABLE_ROLE_LEN};
use crate::{keys, Secret};

/// Every variable of the environment contract (spec §2).
pub const CONTRACT_KEYS: &[&str] = crate::keys::CONTRACT;

/// The env file commands read when `--env-file` is not given.
pub const DEFAULT_ENV_FILE: &str = ".env.local";

/// The dev and test env files: roles are cluster-wide, so these two must give
/// the same role names the same passwords when they point at one server.
pub const ENV_FILES: &[&str] = &[".env.local", ".env.test"];

/// The process environment as the command line captured it, once: it
/// overrides the files for every command. [`ProcessEnv::none`] reads a file
/// alone (tests that must not see the runner's environment, and the checks
/// of a file's own contents). Nothing in the libraries reads the process's
/// variables itself.
#[derive(Clone, Default)]
pub struct ProcessEnv(HashMap<String, String>);

/// The names only: process variables may hold secrets.
impl std::fmt::Debug for ProcessEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("ProcessEnv").field(&names).finish()
    }
}

impl ProcessEnv {
    /// No process variables.
    pub fn none() -> ProcessEnv {
        ProcessEnv::default()
    }

    /// The variables given (the command line passes its own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> ProcessEnv {
        ProcessEnv(vars.into_iter().collect())
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Raw variables: the file's values under the process environment's.
#[derive(Clone, Debug)]
pub struct EnvVars {
    file: Option<PathBuf>,
    file_values: HashMap<String, String>,
    process: HashMap<String, String>,
    /// Values of the file that dotenvy read differently from how they look.
    notes: HashMap<String, String>,
}

impl EnvVars {
    /// Reads `path` with dotenvy. A missing file is an error only when
    /// `required`; containers pass their settings in the process environment.
    pub fn load(path: &Path, required: bool, process_env: &ProcessEnv) -> Result<EnvVars> {
        let process = process_env.0.clone();
        if !path.exists() {
            if required {
                bail!("env file `{}` does not exist; run `cargo xtask env` to create it", path.display());
            }
            return Ok(EnvVars { file: None, file_values: HashMap::new(), process, notes: HashMap::new() });
        }
        let file_values = read_env_file(path)?;
        let notes = quoting_notes(path, &file_values);
        Ok(EnvVars { file: Some(path.to_path_buf()), file_values, process, notes })
    }

    /// Variables from a list of pairs, for tests and generated settings.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> EnvVars {
        EnvVars {
            file: None,
            file_values: pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            process: HashMap::new(),
            notes: HashMap::new(),
        }
    }

    /// The env file these variables came from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The value of `key`: the process environment first, then the file.
    /// An empty value counts as unset, as in upstream's shell scripts.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.process.get(key).or_else(|| self.file_values.get(key)).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Where `key` came from, for error messages.
    pub fn origin(&self, key: &str) -> String {
        if self.process.get(key).is_some_and(|v| !v.is_empty()) {
            "the process environment".to_string()
        } else {
            match &self.file {
                Some(file) => format!("`{}`", file.display()),
                None => "the environment".to_string(),
            }
        }
    }

    /// Why the file's value of any of `keys` may not be what it looks like
    /// (`$` expansion, ` #` comments), as text to append to an error.
    pub fn quoting_hint(&self, keys: &[&str]) -> String {
        let notes: Vec<String> = keys
            .iter()
            .filter(|k| self.process.get(**k).is_none_or(|v| v.is_empty()))
            .filter_map(|k| self.notes.get(*k).map(|note| format!("{k}: {note}")))
            .collect();
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    }

    /// A hint for a missing variable: where to set it.
    fn missing_hint(&self) -> String {
        match &self.file {
            Some(file) => format!("add it to `{}` (or run `cargo xtask env`)", file.display()),
            None => "run `cargo xtask env` to create `.env.local`, or export it".to_string(),
        }
    }
}

/// Reads an env file with dotenvy's parser, without touching the process
/// environment. A key set twice is an error: dotenvy keeps the first value,
/// Node's dotenv and docker compose the last, so a runtime file that ends in
/// the migrator's DSN would pass this tool's checks and give the app the
/// migrator's credentials.
///
/// A parse error names the file, the line and the variable, never a value:
/// dotenvy's own error carries the text from the bad line to the end of the
/// file (an unclosed quote swallows the rest), which holds every secret below it.
pub fn read_env_file(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read(path).with_context(|| format!("read env file `{}`", path.display()))?;
    let iter = dotenvy::from_read_iter(text.as_slice());
    let mut values = HashMap::new();
    let mut twice = Vec::new();
    for item in iter {
        match item {
            Ok((key, value)) => match values.entry(key) {
                std::collections::hash_map::Entry::Occupied(entry) => twice.push(entry.key().clone()),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(value);
                }
            },
            Err(dotenvy::Error::LineParse(logical_line, _)) => {
                let text = String::from_utf8_lossy(&text);
                let (line, variable) = locate_bad_line(&text, &logical_line);
                let place = line.map(|n| format!(", line {n}")).unwrap_or_default();
                let what = match variable {
                    Some(name) => format!("the value of {name}"),
                    None => "a line that is not `NAME=value`".to_string(),
                };
                bail!(
                    "env file `{}`{place}: cannot parse {what} (an unclosed quote, a stray character or a missing \
                     `=`); write values in single quotes, e.g. NAME='value'",
                    path.display()
                );
            }
            Err(dotenvy::Error::Io(error)) => {
                // An I/O error carries no file content (invalid UTF-8 lands here).
                bail!("env file `{}`: {error}; save it as UTF-8 text", path.display());
            }
            Err(_) => bail!("env file `{}` could not be read", path.display()),
        }
    }
    if !twice.is_empty() {
        let text = String::from_utf8_lossy(&text);
        let places: Vec<String> =
            twice.iter().map(|key| format!("{key} (lines {})", lines_setting(&text, key).join(", "))).collect();
        bail!(
            "env file `{}` sets {} more than once: dotenvy reads the first value, Node's dotenv and docker compose \
             the last; keep one line for each",
            path.display(),
            places.join(", ")
        );
    }
    Ok(values)
}

/// The 1-based numbers of the lines that set `key` (`KEY=…`, `export KEY=…`).
fn lines_setting(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(n, _)| (n + 1).to_string())
        .collect()
}

/// Where dotenvy's failing logical line starts (1-based line number) and the
/// variable it defines, when one can be read from it. dotenvy reports either
/// the whole line or only its value; nothing of the value leaves this function.
fn locate_bad_line(text: &str, logical_line: &str) -> (Option<usize>, Option<String>) {
    let first = logical_line.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first.is_empty() {
        return (None, None);
    }
    let index = text.lines().position(|l| {
        let l = l.trim();
        l == first || l.split_once('=').is_some_and(|(_, value)| value.trim() == first)
    });
    let Some(index) = index else { return (None, None) };
    let physical = text.lines().nth(index).unwrap_or("").trim_start();
    let declaration = physical.strip_prefix("export ").unwrap_or(physical);
    let name = declaration.split_once('=').map(|(name, _)| name.trim()).filter(|name| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    });
    (Some(index + 1), name.map(str::to_string))
}

/// Why dotenvy may have read a value differently from what the file shows:
/// `$NAME` expansion in unquoted and double-quoted values, and ` #` starting a
/// comment in unquoted ones. Keyed by variable; only for values it changed.
fn quoting_notes(path: &Path, values: &HashMap<String, String>) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return HashMap::new() };
    let mut notes = HashMap::new();
    for line in text.lines() {
        let declaration = line.trim_start();
        let declaration = declaration.strip_prefix("export ").unwrap_or(declaration);
        let Some((name, raw)) = declaration.split_once('=') else { continue };
        let (name, raw) = (name.trim(), raw.trim());
        let Some(parsed) = values.get(name) else { continue };
        let note = if raw.starts_with('\'') {
            None
        } else if let Some(quoted) = raw.strip_prefix('"') {
            let inner = quoted.rsplit_once('"').map(|(inner, _)| inner).unwrap_or(quoted);
            (inner.contains('$') && inner != parsed)
                .then_some("`$` in a double-quoted value starts a variable that dotenvy expands (often to nothing)")
        } else if raw.contains('$') && raw != parsed {
            Some("`$` in an unquoted value starts a variable that dotenvy expands (often to nothing)")
        } else if raw.contains(" #") && raw != parsed {
            Some("` #` in an unquoted value starts a comment, so the rest of the value was dropped")
        } else {
            None
        };
        if let Some(note) = note {
            notes.entry(name.to_string()).or_insert_with(|| {
                format!("{note}; write {name}='…' in single quotes in `{}` so it is read as written", path.display())
            });
        }
    }
    notes
}

/// The three application roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleKind {
    Migrator,
    Runtime,
    Service,
}

impl RoleKind {
    pub const ALL: [RoleKind; 3] = [RoleKind::Migrator, RoleKind::Runtime, RoleKind::Service];

    pub fn user_var(self) -> &'static str {
        match self {
            RoleKind::Migrator => keys::APP_DB_MIGRATOR_USER,
            RoleKind::Runtime => keys::APP_DB_USER,
            RoleKind::Service => keys::APP_DB_SERVICE_USER,
        }
    }

    pub fn password_var(self) -> &'static str {
        match self {
            RoleKind::Migrator => keys::APP_DB_MIGRATOR_PASSWORD,
            RoleKind::Runtime => keys::APP_DB_PASSWORD,
            RoleKind::Service => keys::APP_DB_SERVICE_PASSWORD,
        }
    }

    pub fn dsn_var(self) -> &'static str {
        match self {
            RoleKind::Migrator => keys::DATABASE_MIGRATOR_URL,
            RoleKind::Runtime => keys::DATABASE_URL,
            RoleKind::Service => keys::DATABASE_SERVICE_URL,
        }
    }

    /// A word for reports: `migrator`, `runtime`, `service`.
    pub fn label(self) -> &'static str {
        match self {
            RoleKind::Migrator => "migrator",
            RoleKind::Runtime => "runtime",
            RoleKind::Service => "service",
        }
    }

    /// The dev default name, as in `.env.local.example`.
    pub fn default_name(self) -> &'static str {
        match self {
            RoleKind::Migrator => "app_migrator",
            RoleKind::Runtime => "app_user",
            RoleKind::Service => "app_service",
        }
    }
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One role's credentials, with the DSN that logs in as it.
#[derive(Clone, Debug)]
pub struct RoleCreds {
    pub kind: RoleKind,
    /// The role.
    pub name: String,
    /// Who the DSN logs in as: the role itself, or its alternate login
    /// `<role>_alt` once `db-rotate` has switched to it. `password` is the
    /// login's.
    pub login: String,
    pub password: Secret,
    /// `DATABASE_URL` and friends when set, otherwise built from the pieces.
    pub dsn: Dsn,
    /// Whether `dsn` came from its variable (false: built from `APP_DB_*`).
    pub dsn_given: bool,
    /// `DB_HOST` and `DB_PORT` when `dsn` names another address (a pooler in
    /// front of the server, say): the commands that connect through `dsn`
    /// check it reaches the same database as a session opened there.
    pub direct: Option<(String, u16)>,
}

impl RoleCreds {
    /// `dsn` pointed at `DB_HOST`/`DB_PORT` when it names another address.
    pub fn direct_dsn(&self) -> Option<Dsn> {
        let (host, port) = self.direct.as_ref()?;
        let mut dsn = self.dsn.clone();
        dsn.host = Some(if host.starts_with('/') { Host::Socket(host.into()) } else { Host::Tcp(host.clone()) });
        dsn.port = Some(*port);
        Some(dsn)
    }
}

/// The admin role used by provisioning only.
#[derive(Clone, Debug)]
pub struct AdminCreds {
    pub name: String,
    /// Connects to the admin's maintenance database (`postgres` unless
    /// `DATABASE_ROOT_URL` names another).
    pub dsn: Dsn,
}

/// Everything `db-provision` needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DB_HOST`, or the host of the first role DSN.
    pub host: String,
    /// `DB_PORT`, or that DSN's port.
    pub port: u16,
    /// `APP_DB_NAME`.
    pub db_name: String,
    /// `APP_DB_SCHEMAS`: the app schemas, `public` first by default.
    pub schemas: Vec<String>,
    /// `APP_DB_EXTENSIONS`: extensions provisioning creates as the admin.
    pub extensions: Vec<String>,
    /// The admin provisioning runs as.
    pub admin: AdminCreds,
    /// The three roles, each with its DSN.
    pub migrator: RoleCreds,
    pub runtime: RoleCreds,
    pub service: RoleCreds,
    /// `DRIZZLE_MIGRATIONS_SCHEMA` and `DRIZZLE_MIGRATIONS_TABLE`.
    pub drizzle_schema: String,
    pub drizzle_table: String,
    /// `PG_TIMEOUT`: how long to wait for the server.
    pub pg_timeout: Duration,
}

impl Settings {
    /// Reads and validates every variable `db-provision` uses; all problems
    /// are reported together.
    pub fn from_env(vars: &EnvVars) -> Result<Settings> {
        let mut errors = Errors::default();
        let server = errors.take(server_address(vars));
        let db_name = errors.take(db_name(vars));
        let schemas = errors.take(app_schemas(vars));
        let extensions = errors.take(app_extensions(vars));
        let (drizzle_schema, drizzle_table) = errors.take(drizzle_bookkeeping(vars)).unzip();
        let pg_timeout = errors.take(pg_timeout(vars));
        let (host, port) = server.clone().unzip();
        let roles: Vec<Option<RoleCreds>> = RoleKind::ALL
            .iter()
            .map(|kind| errors.take(role_creds(vars, *kind, host.as_deref(), port, db_name.as_deref())))
            .collect();
        let admin = match (&host, port) {
            (Some(host), Some(port)) => errors.take(admin_creds(vars, host, port)),
            _ => None,
        };
        if let (Some(schemas), Some(drizzle_schema)) = (&schemas, &drizzle_schema) {
            if schemas.contains(drizzle_schema) {
                errors.push(format!(
                    "DRIZZLE_MIGRATIONS_SCHEMA `{drizzle_schema}` is also listed in APP_DB_SCHEMAS; the bookkeeping \
                     schema must stay out of the runtime roles' reach, so remove it from APP_DB_SCHEMAS"
                ));
            }
        }
        let mut roles = roles.into_iter();
        let (migrator, runtime, service) = (roles.next().flatten(), roles.next().flatten(), roles.next().flatten());
        if let (Some(m), Some(r), Some(s)) = (&migrator, &runtime, &service) {
            errors.0.extend(name_clashes([m, r, s], admin.as_ref()));
        }
        errors.finish()?;
        // Every `take` above succeeded, so every value is present.
        let missing = || anyhow::format_err!("BUG: settings incomplete after validation");
        let (host, port) = server.ok_or_else(missing)?;
        Ok(Settings {
            host,
            port,
            db_name: db_name.ok_or_else(missing)?,
            schemas: schemas.ok_or_else(missing)?,
            extensions: extensions.ok_or_else(missing)?,
            admin: admin.ok_or_else(missing)?,
            migrator: migrator.ok_or_else(missing)?,
            runtime: runtime.ok_or_else(missing)?,
            service: service.ok_or_else(missing)?,
            drizzle_schema: drizzle_schema.ok_or_else(missing)?,
            drizzle_table: drizzle_table.ok_or_else(missing)?,
            pg_timeout: pg_timeout.ok_or_else(missing)?,
        })
    }

    pub fn role(&self, kind: RoleKind) -> &RoleCreds {
        match kind {
            RoleKind::Migrator => &self.migrator,
            RoleKind::Runtime => &self.runtime,
            RoleKind::Service => &self.service,
        }
    }

    /// The admin DSN pointed at the app database.
    pub fn admin_app_dsn(&self) -> Dsn {
        self.admin.dsn.with_dbname(&self.db_name)
    }
}

/// The three roles have names of their own: not each other's, not each
/// other's alternate login, not the admin's.
fn name_clashes([m, r, s]: [&RoleCreds; 3], admin: Option<&AdminCreds>) -> Vec<String> {
    let mut errors = Vec::new();
    for (a, b) in [(m, r), (m, s), (r, s)] {
        if a.name == b.name {
            errors.push(format!(
                "{} and {} are both `{}`; the {} and {} roles must be different roles",
                a.kind.user_var(),
                b.kind.user_var(),
                a.name,
                a.kind,
                b.kind
            ));
        }
        // One role's name must not be another's alternate login or gate.
        for (x, y) in [(a, b), (b, a)] {
            if x.name == alt_login(&y.name) || x.name == logins_gate(&y.name) {
                errors.push(format!(
                    "{} is `{}`, the name of a login of the {} role (db-rotate); give the {} role another name",
                    x.kind.user_var(),
                    x.name,
                    y.kind,
                    x.kind
                ));
            }
        }
    }
    if let Some(admin) = admin {
        for role in [m, r, s] {
            if role.name == admin.name {
                errors.push(format!(
                    "{} is `{}`, the admin role; provisioning would strip the admin of its powers, \
                     so give the {} role its own name",
                    role.kind.user_var(),
                    role.name,
                    role.kind
                ));
            }
        }
    }
    errors
}

/// Collects every problem so one run reports all of them.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn take<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(format!("{error:#}"));
                None
            }
        }
    }

    fn push(&mut self, message: String) {
        self.0.push(message);
    }

    fn finish(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => bail!("{}", self.0[0]),
            n => bail!("{n} problems in the environment:\n  - {}", self.0.join("\n  - ")),
        }
    }
}

fn optional_dsn(vars: &EnvVars, var: &str) -> Result<Option<Dsn>> {
    vars.get(var).map(|text| Dsn::parse(var, text)).transpose()
}

/// `DB_HOST`/`DB_PORT`, checked against every DSN that is set.
pub fn server_address(vars: &EnvVars) -> Result<(String, u16)> {
    let host = vars.get(keys::DB_HOST).map(str::to_string);
    let port = db_port(vars)?;
    if let (Some(host), Some(port)) = (&host, port) {
        return Ok((host.clone(), port));
    }
    // Without DB_HOST/DB_PORT, the first role DSN set says where the server is.
    let var = [RoleKind::Runtime, RoleKind::Service, RoleKind::Migrator]
        .into_iter()
        .map(RoleKind::dsn_var)
        .find(|var| vars.get(var).is_some());
    let fallback = match var {
        Some(var) => optional_dsn(vars, var)?,
        None => None,
    };
    let host = match host {
        Some(host) => host,
        None => match fallback.as_ref().and_then(|d| d.host.clone()) {
            Some(host) => host.to_string(),
            None => bail!("DB_HOST is not set; {}", vars.missing_hint()),
        },
    };
    let port = match port {
        Some(port) => port,
        None => match &fallback {
            Some(dsn) => dsn.port_or_default(),
            None => bail!("DB_PORT is not set; {}", vars.missing_hint()),
        },
    };
    Ok((host, port))
}

/// The DSNs a file sets, the migrator's first (the session that owns the
/// database), then the runtime and service roles'.
pub(crate) fn dsns(vars: &EnvVars) -> impl Iterator<Item = Dsn> + '_ {
    [RoleKind::Migrator, RoleKind::Runtime, RoleKind::Service]
        .into_iter()
        .filter_map(|kind| vars.get(kind.dsn_var()).and_then(|text| Dsn::parse(kind.dsn_var(), text).ok()))
}

/// The server a file points at, one key for every name of it: `DB_HOST`
/// and `DB_PORT` when set (what provisioning connects to), else the
/// migrator's DSN, else the runtime or service role's. Loopback names and
/// a local socket directory are all `localhost`. `None` when the file does
/// not say.
pub fn server_of(vars: &EnvVars) -> Option<(String, u16)> {
    let (host, port) = match (vars.get(keys::DB_HOST), db_port(vars).ok().flatten()) {
        (Some(host), Some(port)) => (crate::Host::Tcp(host.to_string()), port),
        _ => {
            let dsn = dsns(vars).next()?;
            let port = dsn.port_or_default();
            (dsn.host.unwrap_or_else(|| crate::Host::Tcp("localhost".into())), port)
        }
    };
    let host = match host {
        crate::Host::Socket(_) => "localhost".to_string(),
        host if host.is_local() => "localhost".to_string(),
        crate::Host::Tcp(name) => name.to_ascii_lowercase(),
    };
    Some((host, port))
}

/// `DB_PORT` when it is set: a port number, or an error that names it.
pub fn db_port(vars: &EnvVars) -> Result<Option<u16>> {
    match vars.get(keys::DB_PORT) {
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => bail!("DB_PORT `{}` is not a port number (1-65535)", text.escape_debug()),
        },
        None => Ok(None),
    }
}

/// A role's credentials from the environment alone: its DSN (checked
/// against `DB_HOST`, `DB_PORT` and `APP_DB_NAME` where set), or a DSN built
/// from those pieces.
pub fn role_from_env(vars: &EnvVars, kind: RoleKind) -> Result<RoleCreds> {
    role_creds(vars, kind, vars.get(keys::DB_HOST), db_port(vars)?, vars.get(keys::APP_DB_NAME))
}

/// The roles the environment names for `kinds`, each with the variable
/// that names it: the role its DSN logs in as (the role itself, or the role
/// whose alternate login it is) and its `*_USER` variable.
pub fn named_users(vars: &EnvVars, kinds: &[RoleKind]) -> Vec<(&'static str, String)> {
    let mut users = Vec::new();
    for kind in kinds {
        let named = vars.get(kind.user_var());
        let from_dsn = vars
            .get(kind.dsn_var())
            .and_then(|text| Dsn::parse(kind.dsn_var(), text).ok())
            .and_then(|dsn| dsn.user)
            .map(|login| {
                let role = match named {
                    Some(role) if login == alt_login(role) => role.to_string(),
                    Some(_) => login,
                    None => alt_login_of(&login).map_or(login.clone(), str::to_string),
                };
                (kind.dsn_var(), role)
            });
        let from_var = named.map(|user| (kind.user_var(), user.to_string()));
        users.extend(from_dsn.into_iter().chain(from_var));
    }
    users
}

fn db_name(vars: &EnvVars) -> Result<String> {
    if let Some(name) = vars.get(keys::APP_DB_NAME) {
        validate_name(keys::APP_DB_NAME, NameKind::Database, name)?;
    }
    let from_dsn = optional_dsn(vars, keys::DATABASE_URL)?.and_then(|d| d.dbname);
    let name = match (vars.get(keys::APP_DB_NAME), from_dsn) {
        (Some(name), _) => name.to_string(),
        (None, Some(name)) => name,
        (None, None) => bail!("APP_DB_NAME is not set; {}", vars.missing_hint()),
    };
    validate_name(keys::APP_DB_NAME, NameKind::Database, &name)?;
    Ok(name)
}

/// `APP_DB_SCHEMAS`: comma-separated, default `public`.
pub fn app_schemas(vars: &EnvVars) -> Result<Vec<String>> {
    let text = vars.get(keys::APP_DB_SCHEMAS).unwrap_or("public");
    let mut schemas = Vec::new();
    for schema in text.split(',').map(str::trim) {
        validate_name(keys::APP_DB_SCHEMAS, NameKind::Schema, schema)?;
        if schemas.iter().any(|s| s == schema) {
            bail!("APP_DB_SCHEMAS lists `{schema}` twice; list each schema once");
        }
        schemas.push(schema.to_string());
    }
    Ok(schemas)
}

/// `APP_DB_EXTENSIONS`: comma-separated extension names (letters, digits,
/// `_` and `-`, as in `uuid-ossp`), none by default.
pub fn app_extensions(vars: &EnvVars) -> Result<Vec<String>> {
    let Some(text) = vars.get(keys::APP_DB_EXTENSIONS) else { return Ok(Vec::new()) };
    let mut extensions: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.len() > crate::MAX_IDENTIFIER_BYTES
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!(
                "APP_DB_EXTENSIONS: `{}` is not an extension name (letters, digits, `_` and `-`, at most 63 bytes)",
                name.escape_debug()
            );
        }
        if !extensions.iter().any(|e| e == name) {
            extensions.push(name.to_string());
        }
    }
    Ok(extensions)
}

/// `DRIZZLE_MIGRATIONS_SCHEMA` and `DRIZZLE_MIGRATIONS_TABLE`, with drizzle's defaults.
pub fn drizzle_bookkeeping(vars: &EnvVars) -> Result<(String, String)> {
    let schema = vars.get(keys::DRIZZLE_MIGRATIONS_SCHEMA).unwrap_or("drizzle").to_string();
    let table = vars.get(keys::DRIZZLE_MIGRATIONS_TABLE).unwrap_or("__drizzle_migrations").to_string();
    validate_name(keys::DRIZZLE_MIGRATIONS_SCHEMA, NameKind::Schema, &schema)?;
    validate_name(keys::DRIZZLE_MIGRATIONS_TABLE, NameKind::Table, &table)?;
    Ok((schema, table))
}

/// `PG_TIMEOUT`: how long to wait for the server, in seconds (default 120).
pub fn pg_timeout(vars: &EnvVars) -> Result<Duration> {
    match vars.get(keys::PG_TIMEOUT) {
        None => Ok(Duration::from_secs(120)),
        Some(text) => match text.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => bail!("PG_TIMEOUT `{}` is not a whole number of seconds", text.escape_debug()),
        },
    }
}

/// Resolves one role from its three variables. `host`, `port` and `db_name`
/// are the settled values the DSN must agree with (when known).
pub fn role_creds(
    vars: &EnvVars,
    kind: RoleKind,
    host: Option<&str>,
    port: Option<u16>,
    db_name: Option<&str>,
) -> Result<RoleCreds> {
    let Named { name, login, password, dsn } = name_and_password(vars, kind)?;
    let dsn_var = kind.dsn_var();
    let dsn_given = dsn.is_some();
    let mut direct = None;
    let dsn = match dsn {
        Some(mut dsn) => {
            check_dsn_database(&dsn, dsn_var, db_name)?;
            if let (Some(host), Some(port)) = (host, port) {
                if !same_address(&dsn, host, port) {
                    direct = Some((host.to_string(), port));
                }
            }
            // A DSN without a password logs in with the password variable's:
            // how a container passes a password that a URL would need
            // percent-encoded (docker-compose.dev.yml's db-migrate).
            if dsn.password.is_none() {
                dsn.password = Some(password.clone());
            }
            dsn
        }
        None => match (host, port, db_name) {
            (Some(host), Some(port), Some(db)) => Dsn::new(&name, &password, host, port, db),
            _ => bail!("{dsn_var} is not set and DB_HOST, DB_PORT or APP_DB_NAME is missing to build it"),
        },
    };
    Ok(RoleCreds { kind, name, login, password, dsn, dsn_given, direct })
}

/// A role's name, its login and the login's password, from the role's
/// variables and DSN.
pub(crate) struct Named {
    pub name: String,
    pub login: String,
    pub password: Secret,
    pub dsn: Option<Dsn>,
}

/// A role's name and password from its variables and DSN, which must agree:
/// the DSN logs in as the role named, or as its alternate login
/// (`<role>_alt`, `db-rotate`).
pub(crate) fn name_and_password(vars: &EnvVars, kind: RoleKind) -> Result<Named> {
    let (user_var, password_var, dsn_var) = (kind.user_var(), kind.password_var(), kind.dsn_var());
    let dsn = optional_dsn(vars, dsn_var)?;
    // The name rules first: a name that breaks them is the real problem,
    // whatever the other variable says.
    if let Some(name) = vars.get(user_var) {
        validate_name(user_var, NameKind::Role, name)?;
    }
    if let Some(name) = dsn.as_ref().and_then(|d| d.user.as_deref()) {
        validate_name(dsn_var, NameKind::Role, name)?;
    }
    let (name, login) = match (vars.get(user_var), dsn.as_ref().and_then(|d| d.user.as_deref())) {
        // A role short enough for its logins' gate has an alternate login.
        (Some(a), Some(b)) if b == alt_login(a) && a.len() <= MAX_ROTATABLE_ROLE_LEN => (a.to_string(), b.to_string()),
        (Some(a), Some(b)) if a != b => {
            bail!("{dsn_var} logs in as `{b}` but {user_var} is `{a}`; make them agree")
        }
        (Some(name), _) => (name.to_string(), name.to_string()),
        // A DSN alone that logs in as `<role>_alt` (an app's env file after
        // a rotation): the role is `<role>`. A role really named so sets
        // its user variable.
        (None, Some(login)) => match alt_login_of(login) {
            Some(role) => (role.to_string(), login.to_string()),
            None => (login.to_string(), login.to_string()),
        },
        (None, None) => bail!("{user_var} is not set (nor {dsn_var}); {}", vars.missing_hint()),
    };
    let password = match (vars.get(password_var), dsn.as_ref().and_then(|d| d.password.as_ref())) {
        (Some(a), Some(b)) if a != b.expose() => {
            bail!(
                "{dsn_var} and {password_var} give different passwords for `{name}`; make them agree{}",
                vars.quoting_hint(&[dsn_var, password_var])
            )
        }
        (Some(password), _) => Secret::new(password),
        (None, Some(password)) => password.clone(),
        (None, None) => bail!("{password_var} is not set (nor a password in {dsn_var}); {}", vars.missing_hint()),
    };
    Ok(Named { name, login, password, dsn })
}

/// The role whose alternate login `login` is named like, if any.
pub(crate) fn alt_login_of(login: &str) -> Option<&str> {
    login
        .strip_suffix(crate::names::ALT_LOGIN_SUFFIX)
        .filter(|role| !role.is_empty() && role.len() <= MAX_ROTATABLE_ROLE_LEN)
}

/// Whether `dsn` names the address `DB_HOST` and `DB_PORT` give. Another
/// address is accepted (a pooler in front of the server): the commands that
/// connect through it check that it reaches the same database.
fn same_address(dsn: &Dsn, host: &str, port: u16) -> bool {
    let given = Host::Tcp(host.to_string());
    let same_host = match &dsn.host {
        Some(Host::Tcp(name)) => name.eq_ignore_ascii_case(host) || (dsn_host_is_local(dsn) && given.is_local()),
        Some(Host::Socket(dir)) => dir.as_os_str() == host,
        // Without a host the DSN connects to localhost.
        None => host.eq_ignore_ascii_case("localhost") || (given.is_local() && !host.starts_with('/')),
    };
    same_host && dsn.port_or_default() == port
}

/// A TCP loopback name (`localhost`, `127.0.0.1`, `::1`): one server.
fn dsn_host_is_local(dsn: &Dsn) -> bool {
    matches!(&dsn.host, Some(host @ Host::Tcp(_)) if host.is_local())
}

/// A DSN must name the database `APP_DB_NAME` names.
fn check_dsn_database(dsn: &Dsn, var: &str, db_name: Option<&str>) -> Result<()> {
    if let Some(expected) = db_name {
        match dsn.dbname.as_deref() {
            Some(actual) if actual != expected => {
                bail!("{var} names database `{actual}` but APP_DB_NAME is `{expected}`; make them agree")
            }
            None => bail!("{var} names no database; append `/{expected}` (APP_DB_NAME)"),
            _ => {}
        }
    }
    Ok(())
}

/// The admin from `DATABASE_ROOT_URL` or `POSTGRES_ROOT_USER`/`POSTGRES_ROOT_PASSWORD`.
pub fn admin_creds(vars: &EnvVars, host: &str, port: u16) -> Result<AdminCreds> {
    let dsn = optional_dsn(vars, keys::DATABASE_ROOT_URL)?;
    let name = match (vars.get(keys::POSTGRES_ROOT_USER), dsn.as_ref().and_then(|d| d.user.as_deref())) {
        (Some(a), Some(b)) if a != b => {
            bail!("DATABASE_ROOT_URL logs in as `{b}` but POSTGRES_ROOT_USER is `{a}`; make them agree or unset one")
        }
        (Some(name), _) | (None, Some(name)) => name.to_string(),
        (None, None) => bail!("POSTGRES_ROOT_USER is not set (nor DATABASE_ROOT_URL); {}", vars.missing_hint()),
    };
    let password = match (vars.get(keys::POSTGRES_ROOT_PASSWORD), dsn.as_ref().and_then(|d| d.password.as_ref())) {
        (Some(a), Some(b)) if a != b.expose() => {
            bail!(
                "DATABASE_ROOT_URL and POSTGRES_ROOT_PASSWORD give different passwords; make them agree or unset \
                 one{}",
                vars.quoting_hint(&[keys::DATABASE_ROOT_URL, keys::POSTGRES_ROOT_PASSWORD])
            )
        }
        (Some(password), _) => Some(Secret::new(password)),
        (None, password) => password.cloned(),
    };
    let dsn = match dsn {
        Some(mut dsn) => {
            // Provisioning reaches the server itself, never through a pooler.
            if !same_address(&dsn, host, port) {
                bail!(
                    "DATABASE_ROOT_URL points at {} but DB_HOST and DB_PORT name {host}:{port}; provisioning \
                     connects to the server itself: make them agree",
                    dsn.address()
                );
            }
            if dsn.dbname.is_none() {
                dsn.dbname = Some("postgres".to_string());
            }
            dsn.user = Some(name.clone());
            dsn.password = password;
            dsn
        }
        None => {
            let password = password.ok_or_else(|| {
                anyhow::format_err!(
                    "POSTGRES_ROOT_PASSWORD is not set (nor DATABASE_ROOT_URL); {}",
                    vars.missing_hint()
                )
            })?;
            Dsn::new(&name, &password, host, port, "postgres")
        }
    };
    Ok(AdminCreds { name, dsn })
}

/// The role passwords an env file would provision, by role name: what must
/// agree between `.env.local` and `.env.test` on one server.
pub fn role_passwords(vars: &EnvVars) -> Result<Vec<(String, &'static str, Secret)>> {
    RoleKind::ALL
        .iter()
        .map(|kind| {
            let named = name_and_password(vars, *kind)?;
            Ok((named.login, kind.password_var(), named.password))
        })
        .collect()
}

/// The logins two environments give different passwords, matched by login
/// name (a role's own, or its alternate): `(name, its kind in a, its kind
/// in b)`. Roles one of them does not
/// define are skipped. The one comparison behind `db-provision`'s sibling
/// check and `env --check`.
pub(crate) fn conflicting_roles(a: &EnvVars, b: &EnvVars) -> Vec<(String, RoleKind, RoleKind)> {
    let known = |vars: &EnvVars| -> Vec<(String, Secret, RoleKind)> {
        RoleKind::ALL
            .iter()
            .filter_map(|kind| name_and_password(vars, *kind).ok().map(|named| (named.login, named.password, *kind)))
            .collect()
    };
    let theirs = known(b);
    let mut found = Vec::new();
    for (name, password, kind) in known(a) {
        if let Some((_, _, other_kind)) = theirs.iter().find(|(n, p, _)| *n == name && *p != password) {
            found.push((name, kind, *other_kind));
        }
    }
    found
}

/// Checks that the other dev/test env file beside `path`, when it exists and
/// points at the same server, gives the same roles the same passwords.
/// Provisioning one file would otherwise rotate the other's passwords.
pub fn check_sibling_env_files(path: &Path, vars: &EnvVars, process_env: &ProcessEnv) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(this_name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let Ok(this_server) = server_address(vars) else {
        return Ok(());
    };
    let mut conflicts = Vec::new();
    let mut others = Vec::new();
    for other_name in ENV_FILES.iter().filter(|name| **name != this_name) {
        let other_path = dir.join(other_name);
        if !other_path.exists() {
            continue;
        }
        let other = EnvVars::load(&other_path, true, process_env)?;
        if server_address(&other).ok().as_ref() != Some(&this_server) {
            continue;
        }
        for (name, mine, theirs) in conflicting_roles(vars, &other) {
            if !others.contains(&other_path) {
                others.push(other_path.clone());
            }
            let (var, other_var) = (mine.password_var(), theirs.password_var());
            conflicts.push(format!(
                "role `{name}`: {var} in `{}` and {other_var} in `{}` differ{}{}",
                path.display(),
                other_path.display(),
                vars.quoting_hint(&[var]),
                other.quoting_hint(&[other_var])
            ));
        }
    }
    if !conflicts.is_empty() {
        bail!(
            "the env files give one role two passwords on the same server ({}); each provisioning run would \
             rotate the other's. Make the passwords equal in both files (check with `cargo xtask env --check \
             --env-file {}{}`):\n  - {}",
            this_server.0,
            path.display(),
            others.iter().map(|p| format!(" --env-file {}", p.display())).collect::<String>(),
            conflicts.join("\n  - ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DB_HOST", "localhost"),
            ("DB_PORT", "55432"),
            ("POSTGRES_ROOT_USER", "postgres"),
            ("POSTGRES_ROOT_PASSWORD", "postgres"),
            ("APP_DB_NAME", "cogni_template_dev"),
            ("APP_DB_USER", "app_user"),
            ("APP_DB_PASSWORD", "password"),
            ("APP_DB_SERVICE_USER", "app_service"),
            ("APP_DB_SERVICE_PASSWORD", "service_password"),
            ("APP_DB_MIGRATOR_USER", "app_migrator"),
            ("APP_DB_MIGRATOR_PASSWORD", "migrator_password"),
            ("DATABASE_URL", "postgresql://app_user:password@localhost:55432/cogni_template_dev"),
            ("DATABASE_SERVICE_URL", "postgresql://app_service:service_password@localhost:55432/cogni_template_dev"),
            ("DATABASE_MIGRATOR_URL", "postgresql://app_migrator:migrator_password@localhost:55432/cogni_template_dev"),
        ]
    }

    fn with(changes: &[(&'static str, &'static str)]) -> EnvVars {
        let mut pairs = example();
        for (key, value) in changes {
            pairs.retain(|(k, _)| k != key);
            pairs.push((key, value));
        }
        EnvVars::from_pairs(pairs)
    }

    fn error(changes: &[(&'static str, &'static str)]) -> String {
        format!("{:#}", Settings::from_env(&with(changes)).unwrap_err())
    }

    #[test]
    fn a_key_set_twice_is_an_error_that_names_it_and_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.runtime");
        std::fs::write(
            &path,
            "DATABASE_URL='postgresql://app_user:s3cret@db/app'\nAPP_DB_NAME=app\n\
             export DATABASE_URL = 'postgresql://app_migrator:m1grator@db/app'\n",
        )
        .unwrap();
        let error = format!("{:#}", read_env_file(&path).unwrap_err());
        assert!(error.contains("sets DATABASE_URL (lines 1, 3) more than once"), "{error}");
        assert!(!error.contains("s3cret") && !error.contains("m1grator"), "{error}");
        let error = format!("{:#}", EnvVars::load(&path, true, &ProcessEnv::none()).unwrap_err());
        assert!(error.contains("more than once"), "{error}");
    }

    #[test]
    fn role_passwords_need_no_dsn() {
        // A container's environment: the pieces, no DSN (db-provision).
        let mut pairs = example();
        pairs.retain(|(k, _)| !k.starts_with("DATABASE_"));
        let passwords = role_passwords(&EnvVars::from_pairs(pairs)).unwrap();
        let names: Vec<&str> = passwords.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"app_migrator"));
    }

    #[test]
    fn a_dsn_without_a_password_takes_the_password_variable() {
        // docker-compose.dev.yml's db-migrate: the password needs no
        // percent-encoding because it is not in the URL.
        let vars = EnvVars::from_pairs([
            ("DATABASE_MIGRATOR_URL", "postgresql://app_migrator@postgres:5432/app?sslmode=disable"),
            ("APP_DB_MIGRATOR_PASSWORD", "p@ss:w/rd?#%&$x"),
        ]);
        let creds = role_creds(&vars, RoleKind::Migrator, None, None, None).unwrap();
        assert_eq!(creds.dsn.password.as_ref().map(Secret::expose), Some("p@ss:w/rd?#%&$x"));
        assert_eq!(creds.dsn.to_string(), "postgresql://app_migrator:***@postgres:5432/app?sslmode=disable");
        // Without the variable it is still an error naming both.
        let vars = EnvVars::from_pairs([("DATABASE_MIGRATOR_URL", "postgresql://app_migrator@postgres:5432/app")]);
        let error = role_creds(&vars, RoleKind::Migrator, None, None, None).unwrap_err().to_string();
        assert!(
            error.contains("APP_DB_MIGRATOR_PASSWORD is not set (nor a password in DATABASE_MIGRATOR_URL)"),
            "{error}"
        );
    }

    #[test]
    fn the_example_is_valid() {
        let settings = Settings::from_env(&with(&[])).unwrap();
        assert_eq!(settings.migrator.name, "app_migrator");
        assert_eq!(settings.runtime.password.expose(), "password");
        assert_eq!(settings.schemas, ["public"]);
        assert_eq!(settings.admin.dsn.to_string(), "postgresql://postgres:***@localhost:55432/postgres");
        assert_eq!(
            (settings.drizzle_schema.as_str(), settings.drizzle_table.as_str()),
            ("drizzle", "__drizzle_migrations")
        );
        assert_eq!(settings.pg_timeout, Duration::from_secs(120));
    }

    #[test]
    fn an_upgrading_file_without_the_migrator_dsn_still_builds_it() {
        let mut pairs = example();
        pairs.retain(|(k, _)| *k != "DATABASE_MIGRATOR_URL");
        let settings = Settings::from_env(&EnvVars::from_pairs(pairs)).unwrap();
        assert!(!settings.migrator.dsn_given);
        assert_eq!(
            settings.migrator.dsn.to_string(),
            "postgresql://app_migrator:***@localhost:55432/cogni_template_dev"
        );
    }

    #[test]
    fn a_dsn_on_another_address_is_accepted_and_checked_live_against_the_direct_one() {
        // A pooler on another port (or host): the DSN is kept, with the
        // direct address its sessions must match.
        let settings = Settings::from_env(&with(&[(
            "DATABASE_URL",
            "postgresql://app_user:password@pooler.internal:6432/cogni_template_dev",
        )]))
        .unwrap();
        assert_eq!(settings.runtime.direct, Some(("localhost".to_string(), 55432)));
        let direct = settings.runtime.direct_dsn().unwrap();
        assert_eq!(direct.address(), "localhost:55432");
        assert_eq!(settings.runtime.dsn.address(), "pooler.internal:6432");
        assert_eq!((settings.service.direct.clone(), settings.migrator.direct.clone()), (None, None));
        // The database must still be APP_DB_NAME's.
        let message = error(&[("DATABASE_URL", "postgresql://app_user:password@pooler.internal:6432/other")]);
        assert!(message.contains("names database `other` but APP_DB_NAME is `cogni_template_dev`"), "{message}");
    }

    #[test]
    fn disagreements_name_both_variables_and_never_a_password() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                &[("APP_DB_USER", "someone_else")],
                &["DATABASE_URL logs in as `app_user` but APP_DB_USER is `someone_else`"],
            ),
            (&[("APP_DB_PASSWORD", "other")], &["DATABASE_URL and APP_DB_PASSWORD give different passwords"]),
            (
                &[("APP_DB_NAME", "other_db")],
                &["DATABASE_URL names database `cogni_template_dev` but APP_DB_NAME is `other_db`"],
            ),
            (
                &[("DATABASE_ROOT_URL", "postgresql://postgres:postgres@localhost:6432/postgres")],
                &["DATABASE_ROOT_URL points at localhost:6432 but DB_HOST and DB_PORT name localhost:55432"],
            ),
            (
                &[("DATABASE_ROOT_URL", "postgresql://admin:pw@localhost:55432/postgres")],
                &["DATABASE_ROOT_URL logs in as `admin` but POSTGRES_ROOT_USER is `postgres`"],
            ),
        ];
        for (changes, expected) in cases {
            let message = error(changes);
            for part in *expected {
                assert!(message.contains(part), "{changes:?}: {message}");
            }
            for secret in ["service_password", "migrator_password", ":password@", "other\""] {
                assert!(!message.contains(secret), "{changes:?} leaks {secret}: {message}");
            }
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut pairs = example();
        pairs.retain(|(k, _)| !k.starts_with("APP_DB_MIGRATOR") && *k != "DATABASE_MIGRATOR_URL");
        pairs.push(("APP_DB_SCHEMAS", "public,bad-name"));
        let message = format!("{:#}", Settings::from_env(&EnvVars::from_pairs(pairs)).unwrap_err());
        assert!(message.contains("2 problems"), "{message}");
        assert!(message.contains("APP_DB_MIGRATOR_USER is not set (nor DATABASE_MIGRATOR_URL)"), "{message}");
        assert!(message.contains("APP_DB_SCHEMAS: schema name `bad-name`"), "{message}");
        assert!(message.contains("cargo xtask env"), "{message}");
    }

    #[test]
    fn roles_must_be_distinct_and_not_the_admin() {
        let message = error(&[
            ("APP_DB_MIGRATOR_USER", "app_user"),
            ("APP_DB_MIGRATOR_PASSWORD", "password"),
            ("DATABASE_MIGRATOR_URL", "postgresql://app_user:password@localhost:55432/cogni_template_dev"),
        ]);
        assert!(message.contains("APP_DB_MIGRATOR_USER and APP_DB_USER are both `app_user`"), "{message}");
        let message = error(&[
            ("APP_DB_SERVICE_USER", "postgres"),
            ("DATABASE_SERVICE_URL", "postgresql://postgres:service_password@localhost:55432/cogni_template_dev"),
        ]);
        assert!(message.contains("APP_DB_SERVICE_USER is `postgres`, the admin role"), "{message}");
    }

    #[test]
    fn a_dsn_may_log_in_as_the_role_s_alternate_login() {
        let settings = Settings::from_env(&with(&[
            ("DATABASE_URL", "postgresql://app_user_alt:rotated@localhost:55432/cogni_template_dev"),
            ("APP_DB_PASSWORD", "rotated"),
        ]))
        .unwrap();
        let runtime = settings.role(RoleKind::Runtime);
        assert_eq!((runtime.name.as_str(), runtime.login.as_str()), ("app_user", "app_user_alt"));
        assert_eq!(runtime.password.expose(), "rotated");
        let service = settings.role(RoleKind::Service);
        assert_eq!((service.name.as_str(), service.login.as_str()), ("app_service", "app_service"));
        // Another role's alternate login is not this role's.
        let message =
            error(&[("DATABASE_URL", "postgresql://app_service_alt:password@localhost:55432/cogni_template_dev")]);
        assert!(
            message.contains("DATABASE_URL logs in as `app_service_alt` but APP_DB_USER is `app_user`"),
            "{message}"
        );
        // No role may be named like another's alternate login.
        let message = error(&[
            ("APP_DB_SERVICE_USER", "app_user_alt"),
            ("DATABASE_SERVICE_URL", "postgresql://app_user_alt:service_password@localhost:55432/cogni_template_dev"),
        ]);
        assert!(
            message.contains("APP_DB_SERVICE_USER is `app_user_alt`, the name of a login of the runtime role"),
            "{message}"
        );
        let message = error(&[
            ("APP_DB_SERVICE_USER", "app_user_logins"),
            (
                "DATABASE_SERVICE_URL",
                "postgresql://app_user_logins:service_password@localhost:55432/cogni_template_dev",
            ),
        ]);
        assert!(
            message.contains("APP_DB_SERVICE_USER is `app_user_logins`, the name of a login of the runtime role"),
            "{message}"
        );
    }

    #[test]
    fn named_users_are_roles_not_their_logins() {
        let dsn = |user: &str| format!("postgresql://{user}:secret@localhost:55432/app");
        let (user, service) = (dsn("app_user_alt"), dsn("reports_alt"));
        let vars = EnvVars::from_pairs([
            ("DATABASE_URL", user.as_str()),
            ("APP_DB_USER", "app_user"),
            ("DATABASE_SERVICE_URL", service.as_str()),
        ]);
        let named = named_users(&vars, &[RoleKind::Runtime, RoleKind::Service]);
        assert_eq!(
            named,
            [
                ("DATABASE_URL", "app_user".to_string()),
                ("APP_DB_USER", "app_user".to_string()),
                ("DATABASE_SERVICE_URL", "reports".to_string())
            ]
        );
    }

    #[test]
    fn a_dsn_alone_that_logs_in_as_an_alternate_login_names_its_role() {
        // An app's env file after a rotation: the DSNs and nothing else.
        let dsn = |user: &str| format!("postgresql://{user}:secret@localhost:55432/app");
        let (user, service, migrator) = (dsn("app_user_alt"), dsn("reports_alt"), dsn("owner"));
        let vars = EnvVars::from_pairs([
            ("DATABASE_URL", user.as_str()),
            ("DATABASE_SERVICE_URL", service.as_str()),
            ("DATABASE_MIGRATOR_URL", migrator.as_str()),
        ]);
        let env = vars.checking().unwrap();
        assert_eq!((env.runtime.name.as_str(), env.runtime.login.as_str()), ("app_user", "app_user_alt"));
        assert_eq!((env.service.name.as_str(), env.service.login.as_str()), ("reports", "reports_alt"));
        assert_eq!(env.migrator_name, "owner");
        // A role really named `…_alt` says so in its user variable.
        let named = EnvVars::from_pairs([
            ("DATABASE_URL", user.as_str()),
            ("APP_DB_USER", "app_user_alt"),
            ("DATABASE_SERVICE_URL", service.as_str()),
        ]);
        let env = named.checking().unwrap();
        assert_eq!((env.runtime.name.as_str(), env.runtime.login.as_str()), ("app_user_alt", "app_user_alt"));
        // `_alt` alone is a name, not a login of the empty name.
        let bare = dsn("_alt");
        let env = EnvVars::from_pairs([("DATABASE_URL", bare.as_str()), ("DATABASE_SERVICE_URL", service.as_str())]);
        assert_eq!(env.checking().unwrap().runtime.name, "_alt");
    }

    #[test]
    fn bookkeeping_schema_cannot_be_an_app_schema() {
        let message = error(&[("APP_DB_SCHEMAS", "public, drizzle")]);
        assert!(message.contains("DRIZZLE_MIGRATIONS_SCHEMA `drizzle` is also listed in APP_DB_SCHEMAS"), "{message}");
        let settings = Settings::from_env(&with(&[("APP_DB_SCHEMAS", " public , billing ")])).unwrap();
        assert_eq!(settings.schemas, ["public", "billing"]);
    }

    #[test]
    fn empty_values_count_as_missing() {
        let message = error(&[("POSTGRES_ROOT_PASSWORD", "")]);
        assert!(message.contains("POSTGRES_ROOT_PASSWORD is not set"), "{message}");
    }
}
