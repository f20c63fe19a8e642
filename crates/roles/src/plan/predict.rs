//! What the access phases find: the database and the managed schemas
//! created where missing, and the database, the managed schemas and their
//! relations owned by the migrator, with the ACLs as `ALTER … OWNER` leaves
//! them. The plan's grants and revokes are the drift of that state: the same
//! reading `db-check` makes of the current one.

use std::borrow::Cow;

use super::*;
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
    if !(database_moves || schema_moves || relations_move) {
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
    for name in model.managed_schemas() {
        match next.db.schemas.iter_mut().find(|s| s.name == name) {
            Some(schema) => *schema = moved(schema.clone(), |s| (&mut s.owner, &mut s.acl), migrator),
            None if drift::left_to_migrations(model, snap, &name) => {}
            None => next.db.schemas.push(Schema {
                name,
                owner: migrator.to_string(),
                acl: vec![owned_item(Grantee::role(migrator), migrator, Privs::from_letters("UC"))],
            }),
        }
    }
    let mut old_owners = BTreeMap::new();
    for rel in next.db.relations.iter_mut().filter(|r| r.owner != migrator) {
        old_owners.insert(rel.oid, rel.owner.clone());
        rel.acl = change_owner(&rel.acl, &rel.owner, migrator);
        rel.owner = migrator.to_string();
    }
    for column in &mut next.db.columns {
        if let Some(old) = old_owners.get(&column.table_oid) {
            column.acl = change_owner(&column.acl, old, migrator);
        }
    }
    Cow::Owned(next)
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
