//! What the access phases find: the database and the managed schemas
//! created where missing, and the database, the managed schemas, their
//! relations and the runtime roles' foreign servers owned by the migrator,
//! with the ACLs as `ALTER … OWNER` leaves them. The plan's grants and
//! revokes are the drift of that state: the same reading `db-check` makes of
//! the current one.

use std::borrow::Cow;

use super::*;
use crate::kinds::{DefaultObjects, RelKind};
use crate::snapshot::{Database, Schema};

/// The state after the plan's structural steps (a borrow when they change
/// nothing, as on a converged database).
pub(super) fn predict<'s>(model: &Model, snap: &'s Snapshot) -> Cow<'s, Snapshot> {
    let migrator = model.migrator.name.as_str();
    let database_moves = snap.database.as_ref().is_none_or(|d| d.owner != migrator);
    let schema_moves =
        model.managed_schemas().iter().any(|name| match snap.db.schemas.iter().find(|s| s.name == *name) {
            Some(schema) => schema.owner != migrator,
            None => !drift::left_to_migrations(model, snap, name),
        });
    let relations_move = snap.db.relations.iter().any(|r| r.owner != migrator);
    let foreign_moves = snap.db.foreign.iter().any(|f| model.is_runtime_role(&f.owner));
    if !(database_moves || schema_moves || relations_move || foreign_moves) {
        return Cow::Borrowed(snap);
    }
    let mut next = snap.clone();
    next.database = Some(match &snap.database {
        // A new database's ACL is the default one: PUBLIC has CONNECT, TEMP.
        None => Database {
            name: model.db_name.clone(),
            owner: migrator.to_string(),
            acl: vec![
                owned_item(Grantee::Public, migrator, Privs::from_letters("Tc")),
                owned_item(Grantee::role(migrator), migrator, DATABASE_ALL),
            ],
        },
        Some(database) => moved(database.clone(), |d| (&mut d.owner, &mut d.acl), migrator),
    });
    // A new schema's ACL: the migrator's defaults for schemas everywhere
    // (`ALTER DEFAULT PRIVILEGES FOR ROLE … ON SCHEMAS`) where it has them.
    let new_schema_acl = snap
        .db
        .default_acls
        .iter()
        .find(|d| d.role == migrator && d.schema.is_none() && d.objtype == DefaultObjects::Schemas)
        .map(|d| d.acl.clone())
        .unwrap_or_else(|| vec![owned_item(Grantee::role(migrator), migrator, Privs::from_letters("UC"))]);
    for name in model.managed_schemas() {
        match next.db.schemas.iter_mut().find(|s| s.name == name) {
            Some(schema) => *schema = moved(schema.clone(), |s| (&mut s.owner, &mut s.acl), migrator),
            None if drift::left_to_migrations(model, snap, &name) => {}
            None => next.db.schemas.push(Schema { name, owner: migrator.to_string(), acl: new_schema_acl.clone() }),
        }
    }
    // A relation moves with its group: a serial or identity sequence with
    // the table that owns it (`relations.rs`).
    let owners: BTreeMap<i64, &str> = snap.db.relations.iter().map(|r| (r.oid, r.owner.as_str())).collect();
    let moves = |rel: &Relation| match rel.owned_by.and_then(|table| owners.get(&table)) {
        Some(table_owner) => *table_owner != migrator,
        None => rel.owner != migrator,
    };
    let mut old_owners = BTreeMap::new();
    let invoker: Vec<i64> =
        snap.db.relations.iter().filter(|r| becomes_invoker(model, snap, r)).map(|r| r.oid).collect();
    for rel in next.db.relations.iter_mut().filter(|r| moves(r)) {
        old_owners.insert(rel.oid, rel.owner.clone());
        rel.security_invoker |= invoker.contains(&rel.oid);
        rel.acl = change_owner(&rel.acl, &rel.owner, migrator);
        rel.owner = migrator.to_string();
    }
    // `objects()` moves what a runtime role owns (`ALTER SERVER … OWNER`).
    for object in next.db.foreign.iter_mut().filter(|f| model.is_runtime_role(&f.owner)) {
        object.acl = change_owner(&object.acl, &object.owner, migrator);
        object.owner = migrator.to_string();
    }
    for column in &mut next.db.columns {
        if let Some(old) = old_owners.get(&column.table_oid) {
            column.acl = change_owner(&column.acl, old, migrator);
        }
    }
    Cow::Owned(next)
}

/// Whether the owner change of a view also sets `security_invoker`: a view
/// runs with its owner's rights, and owned by the BYPASSRLS migrator it would
/// show every tenant's rows; security_invoker (PostgreSQL 15+) keeps RLS
/// applying to whoever queries it. What cannot be fixed so is refused in
/// `owners_rights`.
pub(super) fn becomes_invoker(model: &Model, snap: &Snapshot, rel: &Relation) -> bool {
    rel.kind == RelKind::View
        && rel.owner != model.migrator.name
        && !rel.security_invoker
        && snap.server_version.has_security_invoker_views()
        && reach::source(model, &snap.db, rel.oid, false).is_some()
}

/// `object` once `ALTER … OWNER TO migrator` has run (unchanged if the
/// migrator owns it already).
fn moved<T>(mut object: T, parts: impl Fn(&mut T) -> (&mut String, &mut Vec<AclItem>), migrator: &str) -> T {
    let (owner, acl) = parts(&mut object);
    if owner != migrator {
        *acl = change_owner(acl, owner, migrator);
        *owner = migrator.to_string();
    }
    object
}

fn owned_item(grantee: Grantee, owner: &str, privs: Privs) -> AclItem {
    AclItem { grantee, grantor: owner.to_string(), privs, grant_option: Privs::NONE }
}
