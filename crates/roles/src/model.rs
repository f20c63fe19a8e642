//! The three-role model: what must hold, as data.

use dbenv::{RoleKind, Secret, Settings};

use crate::exemptions::Exemptions;

/// One application role as the model wants it.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub kind: RoleKind,
    pub name: String,
    pub password: Secret,
}

impl RoleSpec {
    /// BYPASSRLS for the migrator and the service role, never the runtime role.
    pub fn bypassrls(&self) -> bool {
        matches!(self.kind, RoleKind::Migrator | RoleKind::Service)
    }
}

/// What provisioning converges to and what the audit checks against.
#[derive(Clone, Debug)]
pub struct Model {
    pub db_name: String,
    /// The schemas the app's tables live in (`APP_DB_SCHEMAS`).
    pub app_schemas: Vec<String>,
    /// Drizzle's bookkeeping schema: the migrator's alone.
    pub bookkeeping_schema: String,
    pub migrator: RoleSpec,
    pub runtime: RoleSpec,
    pub service: RoleSpec,
    /// Extensions provisioning creates as the admin (`APP_DB_EXTENSIONS`).
    pub extensions: Vec<String>,
    /// The setting the RLS policies read the tenant from (`app.current_user_id`).
    pub tenant_setting: String,
    /// What the app declares safe on purpose (the exemptions file): the plan
    /// refuses to convert into anything else the audit would fail.
    pub exemptions: Exemptions,
    /// What the operator confirmed on the command line.
    pub confirmed: Confirmations,
}

/// The app's tenant setting, read by every policy with
/// `current_setting('app.current_user_id', true)`.
pub const TENANT_SETTING: &str = "app.current_user_id";

/// Changes the plan makes only when the operator asked for them.
#[derive(Clone, Debug, Default)]
pub struct Confirmations {
    /// Existing roles with SUPERUSER, REPLICATION or CREATEROLE that may be
    /// made model roles (and lose those attributes): `--take-over ROLE`.
    pub take_over: Vec<String>,
    /// The cluster's `postgres` database may be the app database.
    pub maintenance_database: bool,
}

impl Model {
    pub fn from_settings(settings: &Settings) -> Model {
        let spec = |kind: RoleKind| {
            let creds = settings.role(kind);
            RoleSpec { kind, name: creds.name.clone(), password: creds.password.clone() }
        };
        Model {
            db_name: settings.db_name.clone(),
            app_schemas: settings.schemas.clone(),
            bookkeeping_schema: settings.drizzle_schema.clone(),
            migrator: spec(RoleKind::Migrator),
            runtime: spec(RoleKind::Runtime),
            service: spec(RoleKind::Service),
            extensions: settings.extensions.clone(),
            tenant_setting: TENANT_SETTING.to_string(),
            exemptions: Exemptions::default(),
            confirmed: Confirmations::default(),
        }
    }

    pub fn role(&self, kind: RoleKind) -> &RoleSpec {
        match kind {
            RoleKind::Migrator => &self.migrator,
            RoleKind::Runtime => &self.runtime,
            RoleKind::Service => &self.service,
        }
    }

    pub fn roles(&self) -> [&RoleSpec; 3] {
        [&self.migrator, &self.runtime, &self.service]
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles().iter().map(|r| r.name.clone()).collect()
    }

    /// The runtime and service roles: DML only, own nothing.
    pub fn runtime_names(&self) -> Vec<String> {
        vec![self.runtime.name.clone(), self.service.name.clone()]
    }

    pub fn is_runtime_role(&self, name: &str) -> bool {
        name == self.runtime.name || name == self.service.name
    }

    /// The app schemas and the bookkeeping schema: everything in them
    /// belongs to the migrator.
    pub fn managed_schemas(&self) -> Vec<String> {
        let mut all = self.app_schemas.clone();
        all.push(self.bookkeeping_schema.clone());
        all
    }

    pub fn is_app_schema(&self, schema: &str) -> bool {
        self.app_schemas.iter().any(|s| s == schema)
    }
}
