//! Typed views of one loaded environment ([`EnvVars`]), one per job:
//! provisioning ([`Settings`]), migrating ([`MigrationEnv`]) and checking
//! ([`CheckEnv`]). Each reads and validates what its job needs, and its
//! errors name the variable and the fix. A command loads the environment
//! once and takes the views it needs from that one value.

use anyhow::{bail, format_err, Result};

use crate::env::{app_extensions, app_schemas, drizzle_bookkeeping, named_users, role_from_env};
use crate::{keys, EnvVars, RoleCreds, RoleKind, Settings};

/// What the migration runner reads: the migrator's credentials (required:
/// no fallback to `DATABASE_URL`), the runtime users the environment
/// names, the bookkeeping table and the app schemas.
#[derive(Clone, Debug)]
pub struct MigrationEnv {
    pub migrator: RoleCreds,
    /// The runtime and service users when the environment names them: the
    /// migrator DSN must be neither.
    pub runtime_users: Vec<(&'static str, String)>,
    /// `(schema, table)` of Drizzle's bookkeeping.
    pub bookkeeping: (String, String),
    pub app_schemas: Vec<String>,
}

/// What `db-check` reads: the three roles' credentials (the migrator's
/// optional), the migrator's name, the database, the app schemas and
/// extensions, and the bookkeeping table.
#[derive(Clone, Debug)]
pub struct CheckEnv {
    pub runtime: RoleCreds,
    pub service: RoleCreds,
    pub migrator: Option<RoleCreds>,
    /// The migrator's name: from its credentials, `APP_DB_MIGRATOR_USER`,
    /// or the default.
    pub migrator_name: String,
    pub db_name: String,
    pub app_schemas: Vec<String>,
    pub extensions: Vec<String>,
    /// `(schema, table)` of Drizzle's bookkeeping.
    pub bookkeeping: (String, String),
}

impl EnvVars {
    /// The provisioning view: every role, the admin and the server.
    pub fn provisioning(&self) -> Result<Settings> {
        Settings::from_env(self)
    }

    /// The migration view. Reads `DATABASE_MIGRATOR_URL`, checked against
    /// `APP_DB_MIGRATOR_*`, `DB_HOST`, `DB_PORT` and `APP_DB_NAME` when
    /// those are set.
    pub fn migration(&self) -> Result<MigrationEnv> {
        if self.get(keys::DATABASE_MIGRATOR_URL).is_none() {
            let hint = match self.file() {
                Some(file) => format!("run `cargo xtask env` to add it to `{}`", file.display()),
                None => "set it, or run `cargo xtask env` to create `.env.local`".to_string(),
            };
            bail!(
                "DATABASE_MIGRATOR_URL is not set: migrations run only as the migrator role, never with \
                 DATABASE_URL; {hint}"
            );
        }
        let migrator = role_from_env(self, RoleKind::Migrator)?;
        let runtime_users = named_users(self, &[RoleKind::Runtime, RoleKind::Service]);
        let bookkeeping = drizzle_bookkeeping(self)?;
        if migrator.dsn.dbname.is_none() {
            bail!("DATABASE_MIGRATOR_URL names no database; append `/<database>`");
        }
        Ok(MigrationEnv { migrator, runtime_users, bookkeeping, app_schemas: app_schemas(self)? })
    }

    /// The checking view. Reads `DATABASE_URL`, `DATABASE_SERVICE_URL`,
    /// `DATABASE_MIGRATOR_URL` (or the `APP_DB_*` pieces), `APP_DB_SCHEMAS`,
    /// `APP_DB_EXTENSIONS` and the Drizzle keys.
    pub fn checking(&self) -> Result<CheckEnv> {
        let runtime = role_from_env(self, RoleKind::Runtime)?;
        let service = role_from_env(self, RoleKind::Service)?;
        let migrator = role_from_env(self, RoleKind::Migrator).ok();
        let db_name = runtime.dsn.dbname.clone().ok_or_else(|| format_err!("DATABASE_URL names no database"))?;
        let migrator_name = match (&migrator, self.get(keys::APP_DB_MIGRATOR_USER)) {
            (Some(creds), _) => creds.name.clone(),
            (None, Some(name)) => name.to_string(),
            (None, None) => RoleKind::Migrator.default_name().to_string(),
        };
        Ok(CheckEnv {
            runtime,
            service,
            migrator,
            migrator_name,
            db_name,
            app_schemas: app_schemas(self)?,
            extensions: app_extensions(self)?,
            bookkeeping: drizzle_bookkeeping(self)?,
        })
    }
}
