//! The database, the managed schemas, other schemas' CREATE, the
//! extensions of `APP_DB_EXTENSIONS` and foreign-data access.

use super::*;

impl Planner<'_> {
    pub(super) fn database(&mut self) {
        let migrator = self.migrator().to_string();
        if self.model.db_name == dbenv::MAINTENANCE_DATABASE && !self.model.confirmed.maintenance_database {
            self.plan.refusals.push(Refusal::MaintenanceDatabase {
                database: self.model.db_name.clone(),
                migrator: migrator.clone(),
            });
        }
        let db = quote_ident(&self.model.db_name);
        match &self.snap.database {
            None => {
                self.plan.needs.insert(Need::CreateDatabaseOwnedBy(migrator.clone()));
                self.plan.push(
                    Phase::CreateDatabase,
                    format!("create database `{}` owned by `{migrator}`", self.model.db_name),
                    vec![
                        Change::CreateDatabase { database: self.model.db_name.clone(), owner: migrator.clone() }.into()
                    ],
                    0,
                );
            }
            Some(existing) if existing.owner != migrator => {
                self.plan.needs.insert(Need::ChangeOwner { from: existing.owner.clone(), to: migrator.clone() });
                self.plan.push(
                    Phase::Database,
                    format!("owner of database `{}`: `{}` → `{migrator}`", existing.name, existing.owner),
                    vec![Change::SetOwner { keyword: "DATABASE", object: db.clone(), owner: migrator.clone() }.into()],
                    0,
                );
            }
            Some(_) => {}
        }
        // CONNECT for the roles comes before PUBLIC loses it (same
        // transaction, grants sorted first): the running app never sees a
        // moment without access. A non-superuser admin keeps its CONNECT.
        let mut changes = self.access(&On::Database);
        if !self.snap.admin.superuser {
            let (admin, want) = wants::admin_database(&self.snap.admin.name);
            let admin = acl::diff(&self.access.database_acl, &admin, want);
            let public = changes.iter().position(|c| c.grantee() == &Grantee::Public).unwrap_or(changes.len());
            changes.splice(public..public, admin);
        }
        if !changes.is_empty() {
            let statements = self.acl_statements("DATABASE", std::slice::from_ref(&db), &migrator, &changes);
            self.plan.push(
                Phase::Database,
                format!("access to database `{}`: {}", self.model.db_name, describe(&changes)),
                statements,
                0,
            );
        }
    }

    /// An app schema (other than `public`) that does not exist yet is the
    /// migrations' to create ([`drift::left_to_migrations`]); `db-migrate`
    /// grants the runtime roles what they need there once it exists.
    pub(super) fn left_to_migrations(&self, schema: &str) -> bool {
        drift::left_to_migrations(self.model, self.snap, schema)
    }

    pub(super) fn schemas(&mut self) {
        let migrator = self.migrator().to_string();
        for name in self.model.managed_schemas() {
            if self.left_to_migrations(&name) {
                self.plan.notes.push(Note::SchemaLeftToMigrations { schema: name.clone(), migrator: migrator.clone() });
                continue;
            }
            let quoted = quote_ident(&name);
            let mut statements = Vec::new();
            let mut summary = Vec::new();
            match self.snap.db.schemas.iter().find(|s| s.name == name) {
                None => {
                    statements.push(Change::CreateSchema { schema: name.clone(), owner: migrator.clone() }.into());
                    summary.push(format!("create schema `{name}` owned by `{migrator}`"));
                }
                Some(schema) if schema.owner != migrator => {
                    self.plan.needs.insert(Need::ChangeOwner { from: schema.owner.clone(), to: migrator.clone() });
                    let change =
                        Change::SetOwner { keyword: "SCHEMA", object: quoted.clone(), owner: migrator.clone() };
                    statements.push(change.into());
                    summary.push(format!("owner of schema `{name}`: `{}` → `{migrator}`", schema.owner));
                }
                Some(_) => {}
            }
            let changes = self.access(&On::Schema(name.clone()));
            if !changes.is_empty() {
                summary.push(format!("access to schema `{name}`: {}", describe(&changes)));
                statements.extend(self.acl_statements("SCHEMA", std::slice::from_ref(&quoted), &migrator, &changes));
            }
            self.plan.push(Phase::Schemas, summary.join("; "), statements, 0);
        }
    }

    /// No CREATE for the runtime roles or PUBLIC on any schema of the
    /// database outside the managed ones (PostgreSQL 13/14 give PUBLIC
    /// CREATE on `public`, which may not be an app schema).
    pub(super) fn other_schemas(&mut self) {
        for schema in &self.snap.db.other_schemas {
            if self.model.is_runtime_role(&schema.owner) {
                continue; // refused: a runtime role owns it
            }
            let changes = self.access(&On::Schema(schema.name.clone()));
            if changes.is_empty() {
                continue;
            }
            let statements = self.acl_statements("SCHEMA", &[quote_ident(&schema.name)], &schema.owner, &changes);
            self.plan.push(
                Phase::Schemas,
                format!("access to schema `{}` (not an app schema): {}", schema.name, describe(&changes)),
                statements,
                0,
            );
        }
    }

    /// `APP_DB_EXTENSIONS` that are not installed yet, created as the admin
    /// (with what they require) before the migrations run, so that a
    /// migration's own `CREATE EXTENSION IF NOT EXISTS` does nothing. A
    /// trusted one a non-superuser admin creates as the migrator, the
    /// database's owner.
    pub(super) fn extensions(&mut self) {
        let migrator = self.migrator().to_string();
        for extension in self.snap.db.extensions.iter().filter(|e| !e.installed) {
            if !extension.available {
                self.plan.refusals.push(Refusal::MissingExtension { extension: extension.name.clone() });
                continue;
            }
            let actor = match (self.snap.admin.superuser, extension.trusted) {
                (true, _) => None,
                (false, true) => self.actor(&migrator, None),
                (false, false) => {
                    self.plan.needs.insert(Need::CreateUntrustedExtension(extension.name.clone()));
                    None
                }
            };
            self.plan.push(
                Phase::Extensions,
                format!("create extension `{}` (APP_DB_EXTENSIONS)", extension.name),
                vec![Statement::new(Change::CreateExtension { extension: extension.name.clone() }).run_as(actor)],
                0,
            );
        }
    }

    /// No USAGE on foreign-data wrappers and servers for the runtime roles:
    /// with it they create servers and user mappings. USAGE granted to
    /// PUBLIC is named, not revoked (other roles of the database may use it).
    pub(super) fn foreign(&mut self) {
        for object in std::mem::take(&mut self.access.foreign) {
            let changes = self.access(&On::Foreign { keyword: object.keyword, name: object.name.clone() });
            let noun = object.noun();
            if !changes.is_empty() {
                let statements =
                    self.acl_statements(object.keyword, &[quote_ident(&object.name)], &object.owner, &changes);
                self.plan.push(
                    Phase::Grants,
                    format!("access to {noun} `{}`: {}", object.name, describe(&changes)),
                    statements,
                    0,
                );
            }
            let public = |item: &Drift| {
                matches!(item, Drift::Acl { on: On::Foreign { keyword, name }, drift, .. }
                    if *keyword == object.keyword && *name == object.name && drift.grantee == Grantee::Public)
            };
            if self.access.named.iter().any(public) {
                self.plan.warnings.push(Warning::PublicForeignUsage {
                    noun,
                    name: object.name.clone(),
                    keyword: object.keyword,
                    server: object.is_server(),
                });
            }
        }
        for (server, user) in &self.snap.db.user_mappings {
            self.plan.warnings.push(Warning::UserMapping { user: user.clone(), server: server.clone() });
        }
    }
}
