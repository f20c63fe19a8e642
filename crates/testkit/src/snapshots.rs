//! Hand-built catalog snapshots for the pure planner and the audit's
//! catalog checks: a model of the three roles and a snapshot where
//! everything holds, to edit into each kind of drift.

use std::collections::BTreeMap;

use dbenv::{RoleKind, Secret};
use roles::acl::{AclItem, Grantee, Privs, Want};
use roles::model::{Attribute, Model, RoleSpec};
use roles::scram::StoredPassword;
use roles::snapshot::{Admin, Database, DbContents, DefaultAcl, Relation, RoleRow, Schema, Snapshot};
use roles::wants;

pub const MIGRATOR: &str = "app_migrator";
pub const RUNTIME: &str = "app_user";
pub const SERVICE: &str = "app_service";

pub fn model(app_schemas: &[&str]) -> Model {
    let spec = |kind: RoleKind| {
        let name = kind.default_name().to_string();
        RoleSpec { kind, login: name.clone(), name, password: Secret::new("pw") }
    };
    let schemas: Vec<String> = app_schemas.iter().map(|s| s.to_string()).collect();
    Model::new("app", &schemas, "drizzle", [spec(RoleKind::Migrator), spec(RoleKind::Runtime), spec(RoleKind::Service)])
}

pub fn item(grantee: Grantee, grantor: &str, privs: Privs, grant_option: Privs) -> AclItem {
    AclItem { grantee, grantor: grantor.into(), privs, grant_option }
}

/// The ACL that gives every grantee exactly what `wants` asks, granted by `owner`.
pub fn converged_acl(wants: &[(Grantee, Want)], owner: &str) -> Vec<AclItem> {
    wants
        .iter()
        .filter_map(|(grantee, want)| match want {
            Want::Exactly(p) | Want::AtLeast(p) if !p.is_empty() => Some(item(grantee.clone(), owner, *p, Privs::NONE)),
            _ => None,
        })
        .collect()
}

pub fn role_row(kind: RoleKind) -> RoleRow {
    let wanted = |a: Attribute| a.wanted(kind);
    RoleRow {
        name: kind.default_name().into(),
        superuser: wanted(Attribute::Superuser),
        createdb: wanted(Attribute::CreateDb),
        createrole: wanted(Attribute::CreateRole),
        replication: wanted(Attribute::Replication),
        login: wanted(Attribute::Login),
        bypassrls: wanted(Attribute::BypassRls),
        // The password is the plan's business alone (the audit cannot see it).
        password: StoredPassword::Unknown,
        login_check: Some(true),
        made_here: true,
        login_exists: true,
    }
}

pub fn relation(model: &Model, oid: i64, schema: &str, name: &str, kind: char) -> Relation {
    let mut rel = Relation {
        oid,
        schema: schema.into(),
        name: name.into(),
        kind: roles::kinds::RelKind::from_code(kind),
        owner: MIGRATOR.into(),
        acl: Vec::new(),
        owned_by: None,
        lock_cost: 1,
        security_invoker: false,
        rls_enabled: false,
        rls_forced: false,
        policies: 0,
        ancestors: Vec::new(),
    };
    let mut acl = converged_acl(&wants::relation(model, &rel), MIGRATOR);
    acl.insert(0, item(Grantee::role(MIGRATOR), MIGRATOR, Privs::from_letters("arwdDxt"), Privs::NONE));
    rel.acl = acl;
    rel
}

/// A snapshot where everything holds: the database and the managed schemas
/// exist, owned by the migrator, with exactly the wanted ACLs.
pub fn converged(model: &Model) -> Snapshot {
    let admin = Admin {
        name: "postgres".into(),
        superuser: true,
        createrole: true,
        createdb: true,
        bypassrls: true,
        reads_authid: true,
        access: BTreeMap::new(),
        can_silence_log: true,
        log_statement: "none".into(),
    };
    let roles = RoleKind::ALL.iter().map(|k| (k.default_name().to_string(), role_row(*k))).collect();
    let schemas = model
        .managed_schemas()
        .into_iter()
        .map(|name| Schema { acl: converged_acl(&wants::schema(model, &name), MIGRATOR), name, owner: MIGRATOR.into() })
        .collect();
    let default_acls = wants::default_rows(model)
        .into_iter()
        .map(|(schema, objtype)| DefaultAcl {
            acl: converged_acl(&wants::migrator_default(model, schema.as_deref(), objtype), MIGRATOR),
            role: MIGRATOR.into(),
            schema,
            objtype,
            builtin: Vec::new(),
        })
        .collect();
    let db = DbContents {
        schemas,
        relations: vec![
            relation(model, 10, "public", "users", 'r'),
            relation(model, 11, "public", "users_id_seq", 'S'),
            relation(model, 12, "drizzle", "__drizzle_migrations", 'r'),
        ],
        default_acls,
        ..Default::default()
    };
    Snapshot {
        server_version: dbenv::ServerVersion::major_release(15),
        admin,
        roles,
        memberships: Vec::new(),
        database: Some(Database {
            name: "app".into(),
            owner: MIGRATOR.into(),
            acl: converged_acl(&wants::database(model), MIGRATOR),
        }),
        other_databases: Vec::new(),
        tablespaces: Vec::new(),
        settings: Vec::new(),
        db,
        queries: 0,
    }
}
