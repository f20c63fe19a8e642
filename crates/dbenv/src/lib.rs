//! The environment contract (spec §2): env files loaded with dotenvy under the
//! process environment, DSN parsing and redaction, name rules, typed
//! settings for each command, env-file creation, and connecting.
//!
//! Nothing here prints. Secrets live in [`Secret`], DSNs print redacted.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

mod connect;
mod dsn;
mod env;
pub mod envfile;
pub mod filecheck;
pub mod invariants;
pub mod keys;
mod names;
pub mod peer;
pub mod pooling;
mod secret;
pub mod targets;
mod version;
mod views;

pub use connect::{
    connect, connect_raw, connect_raw_unpinned, connect_unpinned, connect_waiting, connect_waiting_unpinned,
    connect_with, describe_connect_error, is_transient, pg_config, pin, tls_connector, ConnectError, Wait,
    PINNED_SEARCH_PATH,
};
pub use dsn::{percent_decode, percent_encode, Dsn, Host, Scheme, SslMode, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT};
pub use env::{
    admin_creds, app_extensions, app_schemas, check_sibling_env_files, db_port, drizzle_bookkeeping, named_users,
    pg_timeout, read_env_file, role_creds, role_from_env, role_passwords, server_address, AdminCreds, EnvVars,
    ProcessEnv, RoleCreds, RoleKind, Settings, CONTRACT_KEYS, DEFAULT_ENV_FILE, ENV_FILES,
};
pub use names::{
    alt_login, logins_gate, quote_ident, quote_literal, unquote_ident, validate_name, NameKind, ALT_LOGIN_SUFFIX,
    LOGINS_GATE_SUFFIX, MAINTENANCE_DATABASE, MAX_IDENTIFIER_BYTES, MAX_ROTATABLE_ROLE_LEN,
};
pub use secret::Secret;
pub use version::ServerVersion;
pub use views::{CheckEnv, MigrationEnv};
