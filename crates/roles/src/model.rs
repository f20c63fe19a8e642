//! The three-role model: what must hold, as data.

use dbenv::{RoleKind, Secret, Settings};

use crate::exemptions::Exemptions;

/// A role attribute the model sets on each of its roles: the one table the
/// plan (`CREATE ROLE`, `ALTER ROLE`), the audit, the migration runner's
/// identity check and the README's role table are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attribute {
    Login,
    Superuser,
    CreateDb,
    CreateRole,
    Replication,
    BypassRls,
}

impl Attribute {
    /// In the order `CREATE ROLE` spells them.
    pub const ALL: [Attribute; 6] = [
        Attribute::Login,
        Attribute::Superuser,
        Attribute::CreateDb,
        Attribute::CreateRole,
        Attribute::Replication,
        Attribute::BypassRls,
    ];

    /// The keyword that gives it, e.g. `BYPASSRLS`.
    pub fn keyword(self) -> &'static str {
        match self {
            Attribute::Login => "LOGIN",
            Attribute::Superuser => "SUPERUSER",
            Attribute::CreateDb => "CREATEDB",
            Attribute::CreateRole => "CREATEROLE",
            Attribute::Replication => "REPLICATION",
            Attribute::BypassRls => "BYPASSRLS",
        }
    }

    /// The keyword for `want`: `BYPASSRLS` or `NOBYPASSRLS`.
    pub fn spelled(self, want: bool) -> String {
        if want {
            self.keyword().to_string()
        } else {
            format!("NO{}", self.keyword())
        }
    }

    /// The `pg_roles` column that holds it.
    pub fn column(self) -> &'static str {
        match self {
            Attribute::Login => "rolcanlogin",
            Attribute::Superuser => "rolsuper",
            Attribute::CreateDb => "rolcreatedb",
            Attribute::CreateRole => "rolcreaterole",
            Attribute::Replication => "rolreplication",
            Attribute::BypassRls => "rolbypassrls",
        }
    }

    /// Whether a role of `kind` has it in the model: every role logs in,
    /// the migrator and the service role bypass RLS, none has any power
    /// over roles, databases or replication.
    pub fn wanted(self, kind: RoleKind) -> bool {
        match self {
            Attribute::Login => true,
            Attribute::BypassRls => matches!(kind, RoleKind::Migrator | RoleKind::Service),
            Attribute::Superuser | Attribute::CreateDb | Attribute::CreateRole | Attribute::Replication => false,
        }
    }
}

/// `LOGIN, BYPASSRLS; not SUPERUSER, …`: the README's role table says it so.
pub fn attributes_prose(kind: RoleKind) -> String {
    let (has, lacks): (Vec<Attribute>, Vec<Attribute>) = Attribute::ALL.into_iter().partition(|a| a.wanted(kind));
    let names = |list: Vec<Attribute>| list.into_iter().map(Attribute::keyword).collect::<Vec<_>>().join(", ");
    format!("{}; not {}", names(has), names(lacks))
}

/// `LOGIN NOSUPERUSER … BYPASSRLS`: every attribute as a role of `kind` has it.
pub fn attributes_sql(kind: RoleKind) -> String {
    Attribute::ALL.iter().map(|a| a.spelled(a.wanted(kind))).collect::<Vec<_>>().join(" ")
}

/// One application role as the model wants it.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub kind: RoleKind,
    pub name: String,
    /// The login the environment uses: the role itself, or its alternate
    /// login (`<role>_alt`, `db-rotate`). `password` is the login's.
    pub login: String,
    pub password: Secret,
}

impl RoleSpec {
    /// BYPASSRLS for the migrator and the service role, never the runtime role.
    pub fn bypassrls(&self) -> bool {
        Attribute::BypassRls.wanted(self.kind)
    }
}

/// What provisioning converges to and what the audit checks against.
#[derive(Clone, Debug)]
pub struct Model {
    /// `APP_DB_NAME`.
    pub db_name: String,
    /// The schemas the app's tables live in (`APP_DB_SCHEMAS`).
    pub app_schemas: Vec<String>,
    /// Drizzle's bookkeeping schema: the migrator's alone.
    pub bookkeeping_schema: String,
    /// The three roles.
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
    /// Existing roles not shaped like a model role (an attribute or a
    /// membership the model would take away) that may be made model roles
    /// and lose them: `--take-over ROLE`.
    pub take_over: Vec<String>,
    /// The cluster's `postgres` database may be the app database.
    pub maintenance_database: bool,
    /// A conversion may give a runtime role privileges on an existing
    /// relation that it never had: `--allow-widening`.
    pub widening: bool,
}

impl Model {
    /// The model of a database and its three roles, with the app's default
    /// tenant setting, no exemptions and nothing confirmed.
    pub fn new(db_name: &str, app_schemas: &[String], bookkeeping_schema: &str, roles: [RoleSpec; 3]) -> Model {
        let [migrator, runtime, service] = roles;
        Model {
            db_name: db_name.to_string(),
            app_schemas: app_schemas.to_vec(),
            bookkeeping_schema: bookkeeping_schema.to_string(),
            migrator,
            runtime,
            service,
            extensions: Vec::new(),
            tenant_setting: TENANT_SETTING.to_string(),
            exemptions: Exemptions::default(),
            confirmed: Confirmations::default(),
        }
    }

    /// What `db-provision` converges to for `settings`, passwords included.
    pub fn from_settings(settings: &Settings) -> Model {
        let spec = |kind: RoleKind| {
            let creds = settings.role(kind);
            RoleSpec { kind, name: creds.name.clone(), login: creds.login.clone(), password: creds.password.clone() }
        };
        let roles = [spec(RoleKind::Migrator), spec(RoleKind::Runtime), spec(RoleKind::Service)];
        let mut model = Model::new(&settings.db_name, &settings.schemas, &settings.drizzle_schema, roles);
        model.extensions = settings.extensions.clone();
        model
    }

    /// The app's exemptions file, and the tenant setting it may name.
    pub fn with_exemptions(mut self, exemptions: &Exemptions) -> Model {
        if let Some(setting) = &exemptions.rls.tenant_setting {
            self.tenant_setting = setting.clone();
        }
        self.exemptions = exemptions.clone();
        self
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

    pub fn is_managed_schema(&self, schema: &str) -> bool {
        self.is_app_schema(schema) || schema == self.bookkeeping_schema
    }

    pub fn is_app_schema(&self, schema: &str) -> bool {
        self.app_schemas.iter().any(|s| s == schema)
    }
}
