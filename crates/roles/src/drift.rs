//! The difference between the model and a catalog snapshot, as one typed
//! list: a pure function of both. `db-check` renders each item as a failed
//! (or exempt-free) check row; `db-provision` turns the same reading into
//! statements, a refusal, or a warning where the fix is the operator's. No
//! drift ⇔ nothing for the plan to change or refuse ⇔ these checks pass (the
//! property test in `tests/drift.rs` holds the three together).

use std::collections::BTreeMap;
use std::fmt;

use dbenv::RoleKind;

use crate::acl::{drifts, AclChange, AclDrift, AclItem, Grantee, Want};
use crate::kinds::DefaultObjects;
use crate::model::{Attribute, Model};
use crate::snapshot::{DefaultAcl, Membership, OwnedObject, Relation, RoleSetting, Snapshot};
use crate::wants;

/// The catalog checks of `db-check` that read drift, by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    Roles,
    Memberships,
    Owners,
    StraySchemas,
    DatabaseAcl,
    SchemaAcl,
    TableAcl,
    SequenceAcl,
    ColumnAcl,
    BookkeepingAccess,
    DefaultPrivileges,
    RoleSettings,
    SchemaCreate,
    ForeignData,
    OtherDatabases,
}

impl Check {
    pub const ALL: [Check; 15] = [
        Check::Roles,
        Check::Memberships,
        Check::Owners,
        Check::StraySchemas,
        Check::DatabaseAcl,
        Check::SchemaAcl,
        Check::TableAcl,
        Check::SequenceAcl,
        Check::ColumnAcl,
        Check::BookkeepingAccess,
        Check::DefaultPrivileges,
        Check::RoleSettings,
        Check::SchemaCreate,
        Check::ForeignData,
        Check::OtherDatabases,
    ];

    /// The id `db-check` prints and `--junit` names.
    pub fn id(self) -> &'static str {
        match self {
            Check::Roles => "roles",
            Check::Memberships => "memberships",
            Check::Owners => "owners",
            Check::StraySchemas => "stray-schemas",
            Check::DatabaseAcl => "database-acl",
            Check::SchemaAcl => "schema-acl",
            Check::TableAcl => "table-acl",
            Check::SequenceAcl => "sequence-acl",
            Check::ColumnAcl => "column-acl",
            Check::BookkeepingAccess => "bookkeeping-access",
            Check::DefaultPrivileges => "default-privileges",
            Check::RoleSettings => "role-settings",
            Check::SchemaCreate => "schema-create",
            Check::ForeignData => "foreign-data",
            Check::OtherDatabases => "other-databases",
        }
    }

    /// What holds when the check passes.
    pub fn title(self) -> &'static str {
        match self {
            Check::Roles => "role attributes",
            Check::Memberships => "no role memberships (pg_auth_members)",
            Check::Owners => "everything owned by the migrator",
            Check::StraySchemas => "no app-owned schema outside APP_DB_SCHEMAS",
            Check::DatabaseAcl => "database: CONNECT only, nothing for PUBLIC",
            Check::SchemaAcl => "app schemas: USAGE only, no CREATE for PUBLIC",
            Check::TableAcl => "tables and views: exactly DML for the runtime roles",
            Check::SequenceAcl => "sequences: exactly USAGE, SELECT for the runtime roles",
            Check::ColumnAcl => "no column grants to the runtime roles or PUBLIC",
            Check::BookkeepingAccess => "no runtime access to the Drizzle bookkeeping",
            Check::DefaultPrivileges => "default privileges FOR ROLE the migrator in each app schema",
            Check::RoleSettings => "no role or database default that weakens RLS",
            Check::SchemaCreate => "no CREATE for the runtime roles on any other schema",
            Check::ForeignData => "no USAGE on foreign-data wrappers or servers for the runtime roles",
            Check::OtherDatabases => "the runtime roles own no database or tablespace",
        }
    }
}

/// What `db-provision` does about an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Statements in the plan.
    Change,
    /// The plan stops before its first change and names the fix.
    Refuse,
    /// Left to the operator (other users of the cluster may rely on it); named.
    Warn,
}

/// What kind of object an owner or ACL item is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owned {
    /// The app database; the migrator's name, which should own it.
    Database(String),
    Schema,
    /// A relation of a managed schema, with its noun (`table`, `view`, …).
    Relation(&'static str),
    /// Anything else, by `pg_identify_object` type (`function`, `type`,
    /// `schema`, …) and the schema it lives in; `catalog` and `oid` find it
    /// in the snapshot.
    Other {
        kind: String,
        schema: Option<String>,
        catalog: String,
        oid: i64,
    },
}

/// The object an ACL item is about, for the plan to name in its statements
/// (the audit prints the item's subject instead).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum On {
    Database,
    /// A managed schema, or another schema of the database (CREATE only).
    Schema(String),
    /// A relation of a managed schema, by oid.
    Relation(i64),
    /// A column of one, by its table's oid.
    Column {
        table: i64,
        column: String,
    },
    /// A foreign-data wrapper or server, by keyword and name.
    Foreign {
        keyword: &'static str,
        name: String,
    },
    /// The migrator's default privileges in a schema (`None`: all of them)
    /// for one kind of object.
    DefaultRow {
        schema: Option<String>,
        objtype: DefaultObjects,
    },
}

/// One way the database differs from the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    MissingRole {
        kind: RoleKind,
        name: String,
    },
    Attribute {
        role: String,
        attribute: Attribute,
        held: bool,
    },
    Membership(Membership),
    MissingDatabase {
        name: String,
    },
    /// A managed schema provisioning creates (`public`, the bookkeeping schema).
    MissingSchema {
        name: String,
    },
    /// Owned by someone other than the migrator.
    Owner {
        owned: Owned,
        subject: String,
        owner: String,
    },
    /// A schema a model role owns outside `APP_DB_SCHEMAS`: the runtime roles
    /// get no grants there, and nothing in it is checked as an app object.
    StraySchema {
        name: String,
        owner: String,
    },
    /// One grantee's privileges on one object.
    Acl {
        check: Check,
        subject: String,
        on: On,
        drift: AclDrift,
    },
    /// Default privileges of a runtime role (the legacy `FOR ROLE app_user`):
    /// inert once it creates nothing, and misleading.
    RuntimeDefaults {
        row: DefaultAcl,
        /// What removes it: all of a per-schema row; a global row back to
        /// PostgreSQL's built-in defaults.
        changes: Vec<AclChange>,
    },
    /// Another role's default privileges give a runtime role (or PUBLIC)
    /// privileges on every object that role creates later.
    OtherDefaults {
        row: DefaultAcl,
        item: AclItem,
        to_runtime: bool,
    },
    /// A role or database default that breaks or weakens the model.
    Setting {
        setting: RoleSetting,
        problem: String,
    },
    /// A database or tablespace elsewhere in the cluster a runtime role owns.
    OtherDatabase {
        noun: &'static str,
        name: String,
        owner: String,
    },
}

impl Drift {
    /// Only grants the model wants are missing here, nothing is held that
    /// it does not: what `db-migrate` (which grants what is missing on every
    /// run) or `db-provision` sends.
    pub fn is_missing_grant(&self) -> bool {
        matches!(self, Drift::Acl { drift, .. } if drift.changes.iter().all(|c| matches!(c, AclChange::Grant { .. })))
    }

    pub fn check(&self) -> Check {
        match self {
            Drift::MissingRole { .. } | Drift::Attribute { .. } => Check::Roles,
            Drift::Membership(_) => Check::Memberships,
            Drift::MissingDatabase { .. } | Drift::MissingSchema { .. } | Drift::Owner { .. } => Check::Owners,
            Drift::StraySchema { .. } => Check::StraySchemas,
            Drift::Acl { check, .. } => *check,
            Drift::RuntimeDefaults { .. } | Drift::OtherDefaults { .. } => Check::DefaultPrivileges,
            Drift::Setting { .. } => Check::RoleSettings,
            Drift::OtherDatabase { .. } => Check::OtherDatabases,
        }
    }

    pub fn remedy(&self, model: &Model) -> Remedy {
        match self {
            Drift::StraySchema { .. } => Remedy::Refuse,
            Drift::Acl { check: Check::ForeignData, drift, .. } if drift.grantee == Grantee::Public => Remedy::Warn,
            Drift::OtherDefaults { to_runtime: false, .. } | Drift::OtherDatabase { .. } => Remedy::Warn,
            // `ALTER ROLE ALL SET …`: applies everywhere, belongs to no role of ours.
            Drift::Setting { setting, .. } if setting.role.is_none() && setting.database.is_none() => Remedy::Warn,
            Drift::Owner { owned: Owned::Other { kind, schema, .. }, subject, owner } => {
                other_owner_remedy(model, kind, schema.as_deref(), subject, owner)
            }
            _ => Remedy::Change,
        }
    }

    /// The row's subject in `db-check`'s report.
    pub fn subject(&self) -> String {
        match self {
            Drift::MissingRole { name, .. } | Drift::Attribute { role: name, .. } => name.clone(),
            Drift::Membership(m) => m.member.clone(),
            Drift::MissingDatabase { name } | Drift::MissingSchema { name } | Drift::StraySchema { name, .. } => {
                name.clone()
            }
            Drift::Owner { subject, .. } | Drift::Acl { subject, .. } => subject.clone(),
            Drift::RuntimeDefaults { row, .. } | Drift::OtherDefaults { row, .. } => {
                format!("FOR ROLE {} in {}", row.role, place(&row.schema))
            }
            Drift::Setting { setting, .. } => setting_place(setting),
            Drift::OtherDatabase { noun, name, .. } => format!("{noun} {name}"),
        }
    }
}

impl fmt::Display for Drift {
    /// The sentence `db-check` prints for the item (never a secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingRole { kind, .. } => {
                write!(f, "the {kind} role does not exist; run `cargo xtask db-provision`")
            }
            Drift::Attribute { attribute, held: true, role } => {
                write!(f, "has {}; `cargo xtask db-provision --take-over {role}` removes it", attribute.keyword())
            }
            Drift::Attribute { attribute, held: false, .. } => write!(f, "lacks {}", attribute.keyword()),
            Drift::Membership(m) => write!(
                f,
                "is a member of `{}` (granted by `{}`) and can use its privileges; `cargo xtask db-provision \
                 --take-over {}` removes it",
                m.role, m.grantor, m.member
            ),
            Drift::MissingDatabase { .. } => f.write_str("the database does not exist; run `cargo xtask db-provision`"),
            Drift::MissingSchema { .. } => f.write_str("schema missing; run `cargo xtask db-provision`"),
            Drift::Owner { owned, owner, .. } => match owned {
                Owned::Database(migrator) => write!(f, "database owned by `{owner}`, not `{migrator}`"),
                Owned::Schema => write!(f, "schema owned by `{owner}`"),
                Owned::Relation(noun) => write!(f, "{noun} owned by `{owner}`"),
                Owned::Other { kind, .. } => write!(f, "{kind} owned by `{owner}`"),
            },
            Drift::StraySchema { owner, .. } => write!(
                f,
                "owned by `{owner}` but not in APP_DB_SCHEMAS: the runtime roles get no grants there; add it or drop it"
            ),
            Drift::Acl { check: Check::SchemaCreate, drift, .. } => {
                write!(f, "{}: it may create objects there", drift.problem())
            }
            Drift::Acl { check: Check::ForeignData, drift, subject, .. } => write!(
                f,
                "{}: it may create {}",
                drift.problem(),
                if subject.starts_with("server ") { "user mappings" } else { "servers" }
            ),
            Drift::Acl { drift, .. } => f.write_str(&drift.problem()),
            Drift::RuntimeDefaults { .. } => {
                f.write_str("legacy default privileges of a runtime role; `cargo xtask db-provision` removes them")
            }
            Drift::OtherDefaults { row, item, to_runtime } => write!(
                f,
                "grants {} on every new {} to {}{}",
                item.privs.sql(),
                row.objtype.noun(),
                item.grantee,
                if *to_runtime { "; `cargo xtask db-provision` removes it" } else { "; revoke it" }
            ),
            Drift::Setting { problem, setting } if setting.role.is_none() && setting.database.is_none() => {
                write!(f, "{problem}; remove it (`ALTER ROLE ALL RESET {}`)", setting.name)
            }
            Drift::Setting { problem, .. } => write!(f, "{problem}; `cargo xtask db-provision` removes it"),
            Drift::OtherDatabase { owner, .. } => write!(f, "owned by `{owner}`"),
        }
    }
}

/// An object that is not a relation of a managed schema: moved where
/// `ALTER … OWNER` or `REASSIGN OWNED` can move it, refused where it lives
/// outside the managed schemas (the runtime roles would lose it), left to
/// the operator otherwise.
fn other_owner_remedy(model: &Model, kind: &str, schema: Option<&str>, identity: &str, owner: &str) -> Remedy {
    let managed = model.managed_schemas();
    if kind == "schema" {
        let name = dbenv::unquote_ident(identity);
        return if managed.contains(&name) { Remedy::Change } else { Remedy::Refuse };
    }
    if schema.is_some_and(|s| !managed.iter().any(|m| m == s)) {
        return Remedy::Refuse;
    }
    if kind == "extension" || alter_keyword(kind).is_some() || model.is_runtime_role(owner) {
        Remedy::Change
    } else {
        Remedy::Warn
    }
}

/// The `ALTER … OWNER TO` keyword for a `pg_identify_object` type, when one exists.
pub fn alter_keyword(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "function" => "FUNCTION",
        "aggregate" => "AGGREGATE",
        "procedure" => "PROCEDURE",
        "type" | "composite type" => "TYPE",
        "domain" => "DOMAIN",
        "collation" => "COLLATION",
        "conversion" => "CONVERSION",
        "operator" => "OPERATOR",
        "operator class" => "OPERATOR CLASS",
        "operator family" => "OPERATOR FAMILY",
        "text search configuration" => "TEXT SEARCH CONFIGURATION",
        "text search dictionary" => "TEXT SEARCH DICTIONARY",
        "statistics object" => "STATISTICS",
        "language" => "LANGUAGE",
        "large object" => "LARGE OBJECT",
        "event trigger" => "EVENT TRIGGER",
        "publication" => "PUBLICATION",
        "subscription" => "SUBSCRIPTION",
        "foreign-data wrapper" => "FOREIGN DATA WRAPPER",
        "server" => "SERVER",
        _ => return None,
    })
}

fn place(schema: &Option<String>) -> &str {
    schema.as_deref().unwrap_or("every schema")
}

/// `ALTER ROLE app_user IN DATABASE app SET row_security`: where a default is set.
pub fn setting_place(setting: &RoleSetting) -> String {
    match (&setting.role, &setting.database) {
        (Some(role), Some(db)) => format!("ALTER ROLE {role} IN DATABASE {db} SET {}", setting.name),
        (Some(role), None) => format!("ALTER ROLE {role} SET {}", setting.name),
        (None, Some(db)) => format!("ALTER DATABASE {db} SET {}", setting.name),
        (None, None) => format!("ALTER ROLE ALL SET {}", setting.name),
    }
}

/// `schema.name`, as reports print a relation.
pub fn qualified(rel: &Relation) -> String {
    format!("{}.{}", rel.schema, rel.name)
}

/// Everything that differs, in check order.
pub fn drift(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let mut all = roles(model, snap);
    all.extend(memberships(model, snap));
    all.extend(owners(model, snap));
    all.extend(stray_schemas(model, snap));
    all.extend(acls(model, snap));
    all.extend(default_privileges(model, snap));
    all.extend(settings(model, snap));
    all.extend(other_schemas_and_foreign(model, snap));
    all.extend(other_databases(model, snap));
    all
}

fn roles(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let mut drift = Vec::new();
    for spec in model.roles() {
        let Some(row) = snap.roles.get(&spec.name) else {
            drift.push(Drift::MissingRole { kind: spec.kind, name: spec.name.clone() });
            continue;
        };
        for attribute in Attribute::ALL {
            // A role rotated to its alternate login may keep LOGIN (while
            // both are in use) or not (once retired): either holds.
            if attribute == Attribute::Login && spec.login != spec.name {
                continue;
            }
            let held = row.has(attribute);
            if held != attribute.wanted(spec.kind) {
                drift.push(Drift::Attribute { role: spec.name.clone(), attribute, held });
            }
        }
    }
    drift
}

/// None of the three roles is a member of any role.
fn memberships(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let names = model.role_names();
    snap.memberships.iter().filter(|m| names.contains(&m.member)).cloned().map(Drift::Membership).collect()
}

fn owners(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let migrator = &model.migrator.name;
    let owner = |owned: Owned, subject: String, owner: &String| {
        (owner != migrator).then(|| Drift::Owner { owned, subject, owner: owner.clone() })
    };
    let mut drift = Vec::new();
    match &snap.database {
        Some(database) => {
            drift.extend(owner(Owned::Database(migrator.clone()), database.name.clone(), &database.owner))
        }
        None => drift.push(Drift::MissingDatabase { name: model.db_name.clone() }),
    }
    for name in model.managed_schemas() {
        match snap.db.schemas.iter().find(|s| s.name == name) {
            Some(schema) => drift.extend(owner(Owned::Schema, name, &schema.owner)),
            None if left_to_migrations(model, snap, &name) => {}
            None => drift.push(Drift::MissingSchema { name }),
        }
    }
    // Filtered first: no name is spelled for the 10,000 relations that hold.
    for rel in snap.db.relations.iter().filter(|r| r.owner != *migrator) {
        drift.extend(owner(Owned::Relation(rel.noun()), qualified(rel), &rel.owner));
    }
    for object in snap.db.objects.iter().filter(|o| owner_checked(model, o)) {
        let owned = Owned::Other {
            kind: object.kind.clone(),
            schema: object.schema.clone(),
            catalog: object.catalog.clone(),
            oid: object.oid,
        };
        drift.extend(owner(owned, object.identity.clone(), &object.owner));
    }
    drift
}

/// Whether the owners check reads `object` itself: indexes and TOAST follow
/// their table, and relations of the managed schemas are read as relations.
pub fn owner_checked(model: &Model, object: &OwnedObject) -> bool {
    let follows_its_table = matches!(object.kind.as_str(), "index" | "toast table" | "toast table index");
    let managed_relation =
        object.catalog == "pg_class" && object.schema.as_ref().is_some_and(|s| model.is_managed_schema(s));
    !follows_its_table && !managed_relation
}

/// An app schema other than `public` that does not exist yet: the
/// migrations create it (their first statement is often `CREATE SCHEMA`).
pub fn left_to_migrations(model: &Model, snap: &Snapshot, schema: &str) -> bool {
    model.is_app_schema(schema) && schema != "public" && !snap.db.schemas.iter().any(|s| s.name == schema)
}

fn stray_schemas(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let names = model.role_names();
    snap.db
        .other_schemas
        .iter()
        .filter(|s| names.contains(&s.owner))
        .map(|s| Drift::StraySchema { name: s.name.clone(), owner: s.owner.clone() })
        .collect()
}

fn acl_drift(
    (check, on): (Check, On),
    subject: impl Fn() -> String,
    acl: &[AclItem],
    wants: &[(Grantee, Want)],
) -> Vec<Drift> {
    drifts(acl, wants)
        .into_iter()
        .map(|drift| Drift::Acl { check, subject: subject(), on: on.clone(), drift })
        .collect()
}

/// The check a relation's ACL belongs to.
pub fn relation_check(model: &Model, rel: &Relation) -> Check {
    match (model.is_app_schema(&rel.schema), rel.is_sequence()) {
        (false, _) => Check::BookkeepingAccess,
        (true, true) => Check::SequenceAcl,
        (true, false) => Check::TableAcl,
    }
}

/// The database, the managed schemas, their relations and columns, each
/// against [`wants`].
fn acls(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let db = &snap.db;
    let mut drift = Vec::new();
    if let Some(database) = &snap.database {
        let wants = wants::database(model);
        drift.extend(acl_drift((Check::DatabaseAcl, On::Database), || database.name.clone(), &database.acl, &wants));
    }
    for schema in &db.schemas {
        let check = if model.is_app_schema(&schema.name) { Check::SchemaAcl } else { Check::BookkeepingAccess };
        let wants = wants::schema(model, &schema.name);
        let on = On::Schema(schema.name.clone());
        drift.extend(acl_drift((check, on), || format!("schema {}", schema.name), &schema.acl, &wants));
    }
    for rel in &db.relations {
        let wants = wants::relation(model, rel);
        let on = (relation_check(model, rel), On::Relation(rel.oid));
        drift.extend(acl_drift(on, || qualified(rel), &rel.acl, &wants));
    }
    let tables: BTreeMap<i64, &Relation> = db.relations.iter().map(|r| (r.oid, r)).collect();
    let wants = wants::column(model);
    for column in &db.columns {
        let table = tables.get(&column.table_oid).map(|r| qualified(r)).unwrap_or_else(|| column.table_oid.to_string());
        let on = On::Column { table: column.table_oid, column: column.column.clone() };
        drift.extend(acl_drift((Check::ColumnAcl, on), || format!("{table}.{}", column.column), &column.acl, &wants));
    }
    drift
}

/// The migrator's default-privilege rows the model wants, as they are (an
/// empty ACL where the row does not exist), skipping schemas that do not
/// exist yet; then every other row.
fn default_privileges(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let migrator = &model.migrator.name;
    let wanted = wants::default_rows(model);
    let mut drift = Vec::new();
    for (schema, objtype) in &wanted {
        if schema.as_ref().is_some_and(|s| !snap.db.schemas.iter().any(|have| have.name == *s)) {
            continue; // not created yet (see the owners check)
        }
        let row =
            snap.db.default_acls.iter().find(|d| d.role == *migrator && d.schema == *schema && d.objtype == *objtype);
        let acl = row.map(|d| d.acl.clone()).unwrap_or_default();
        let subject = || format!("{} created by {migrator} in {}", objtype.plural(), place(schema));
        let on = On::DefaultRow { schema: schema.clone(), objtype: *objtype };
        let wants = wants::migrator_default(model, schema.as_deref(), *objtype);
        drift.extend(acl_drift((Check::DefaultPrivileges, on), subject, &acl, &wants));
    }
    for row in &snap.db.default_acls {
        if row.role == *migrator {
            if !wanted.contains(&(row.schema.clone(), row.objtype)) {
                let subject = || format!("{} created by {migrator} in {}", row.objtype.plural(), place(&row.schema));
                let wants = wants::migrator_default(model, row.schema.as_deref(), row.objtype);
                let on = On::DefaultRow { schema: row.schema.clone(), objtype: row.objtype };
                drift.extend(acl_drift((Check::DefaultPrivileges, on), subject, &row.acl, &wants));
            }
        } else if model.is_runtime_role(&row.role) {
            // A row of a runtime role always differs from the built-in
            // defaults (PostgreSQL deletes one that does not), even if only
            // by what it takes away from them.
            let changes = runtime_default_changes(row);
            if !changes.is_empty() {
                drift.push(Drift::RuntimeDefaults { row: row.clone(), changes });
            }
        } else {
            drift.extend(other_defaults(model, row));
        }
    }
    drift
}

/// What removes a runtime role's default-privilege row. A per-schema row
/// only adds to the global defaults, so all of it goes; a global row returns
/// to PostgreSQL's built-in defaults (the owner's own rights, PUBLIC's
/// EXECUTE and USAGE), which removes it.
fn runtime_default_changes(row: &DefaultAcl) -> Vec<AclChange> {
    let mut grantees: Vec<&Grantee> = row.acl.iter().chain(&row.builtin).map(|item| &item.grantee).collect();
    grantees.sort();
    grantees.dedup();
    let wants: Vec<(Grantee, Want)> = grantees
        .into_iter()
        .map(|grantee| {
            let builtin = row.builtin.iter().filter(|i| &i.grantee == grantee);
            (grantee.clone(), Want::Exactly(builtin.fold(crate::acl::Privs::NONE, |all, i| all.union(i.privs))))
        })
        .collect();
    crate::acl::changes(&row.acl, &wants)
}

/// Another role's defaults (`FOR ROLE postgres … TO app_user`): what it
/// creates later goes to the runtime roles (directly, or through PUBLIC
/// beyond PostgreSQL's own defaults) outside the model.
fn other_defaults(model: &Model, row: &DefaultAcl) -> Vec<Drift> {
    row.acl
        .iter()
        .filter_map(|item| {
            let to_runtime = matches!(&item.grantee, Grantee::Role(r) if model.is_runtime_role(r));
            let to_public = item.grantee == Grantee::Public
                && !(row.schema.is_none() && matches!(row.objtype, DefaultObjects::Functions | DefaultObjects::Types));
            (to_runtime || to_public).then(|| Drift::OtherDefaults { row: row.clone(), item: item.clone(), to_runtime })
        })
        .collect()
}

fn settings(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    snap.settings
        .iter()
        .filter_map(|setting| {
            let problem = wants::setting_problem(model, setting.role.as_deref(), &setting.name, &setting.value)?;
            Some(Drift::Setting { setting: setting.clone(), problem })
        })
        .collect()
}

/// No CREATE for the runtime roles or PUBLIC on any schema of the database
/// outside the managed ones (PostgreSQL 13/14 give PUBLIC CREATE on
/// `public`), and no USAGE on foreign-data wrappers and servers (with it a
/// role creates servers and user mappings).
fn other_schemas_and_foreign(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let schemas = snap
        .db
        .other_schemas
        .iter()
        .map(|s| ((Check::SchemaCreate, On::Schema(s.name.clone())), format!("schema {}", s.name), &s.acl));
    let foreign = snap.db.foreign.iter().map(|o| {
        let on = On::Foreign { keyword: o.keyword, name: o.name.clone() };
        ((Check::ForeignData, on), format!("{} {}", o.noun(), o.name), &o.acl)
    });
    let (schema_wants, foreign_wants) = (wants::other_schema(model), wants::foreign(model));
    schemas
        .chain(foreign)
        .flat_map(|(on, subject, acl)| {
            let wants = if on.0 == Check::SchemaCreate { &schema_wants } else { &foreign_wants };
            acl_drift(on, || subject.clone(), acl, wants)
        })
        .collect()
}

/// What other databases contain is out of scope; who owns them is not.
fn other_databases(model: &Model, snap: &Snapshot) -> Vec<Drift> {
    let databases = snap.other_databases.iter().map(|d| ("database", &d.name, &d.owner));
    let tablespaces = snap.tablespaces.iter().map(|t| ("tablespace", &t.name, &t.owner));
    databases
        .chain(tablespaces)
        .filter(|(_, _, owner)| model.is_runtime_role(owner))
        .map(|(noun, name, owner)| Drift::OtherDatabase { noun, name: name.clone(), owner: owner.clone() })
        .collect()
}
