//! What the model wants each grantee to hold, per kind of object: the one
//! definition that both the plan (`db-provision`) and the audit (`db-check`)
//! diff the catalogs against.

use crate::acl::{Grantee, Privs, Want, CONNECT, CREATE, DATABASE_ALL, DML, SEQUENCE_USE, USAGE};
use crate::kinds::{DefaultObjects, RelKind};
use crate::model::Model;
use crate::snapshot::Relation;

fn runtime_roles(model: &Model) -> [Grantee; 2] {
    [Grantee::role(&model.runtime.name), Grantee::role(&model.service.name)]
}

/// The app database: CONNECT for the runtime roles and nothing else; the
/// migrator keeps its owner rights; PUBLIC has nothing (no CONNECT, no TEMP).
pub fn database(model: &Model) -> Vec<(Grantee, Want)> {
    let mut wants: Vec<(Grantee, Want)> =
        runtime_roles(model).into_iter().map(|g| (g, Want::Exactly(CONNECT))).collect();
    wants.push((Grantee::role(&model.migrator.name), Want::AtLeast(DATABASE_ALL)));
    wants.push((Grantee::Public, Want::Without(DATABASE_ALL)));
    wants
}

/// A non-superuser admin keeps CONNECT once PUBLIC loses it (the plan's
/// alone: the audit has no admin).
pub fn admin_database(admin: &str) -> (Grantee, Want) {
    (Grantee::role(admin), Want::AtLeast(CONNECT))
}

/// An app schema: USAGE for the runtime roles; PUBLIC keeps PostgreSQL's
/// USAGE on `public` (harmless without CONNECT) but never CREATE. The
/// bookkeeping schema: nothing for anyone but the migrator.
pub fn schema(model: &Model, name: &str) -> Vec<(Grantee, Want)> {
    let app = model.is_app_schema(name);
    let runtime = if app { Want::Exactly(USAGE) } else { Want::Exactly(Privs::NONE) };
    let public = if app { Want::Without(CREATE) } else { Want::Without(Privs::ALL) };
    let mut wants: Vec<(Grantee, Want)> = runtime_roles(model).into_iter().map(|g| (g, runtime)).collect();
    wants.push((Grantee::role(&model.migrator.name), Want::AtLeast(Privs::from_letters("UC"))));
    wants.push((Grantee::Public, public));
    wants
}

/// Whether the writers (`db-provision`, the migration runner) grant the
/// runtime roles DML on a relation of this kind: tables, and views that run
/// as their caller (`security_invoker`). Materialized views, views that run
/// as their owner and foreign tables read with another role's rights: the
/// migrations grant them where the app needs it, and the audit accepts up
/// to DML there.
pub fn writers_grant(kind: RelKind, security_invoker: bool) -> bool {
    matches!(kind, RelKind::Table | RelKind::PartitionedTable | RelKind::Sequence)
        || (kind == RelKind::View && security_invoker)
}

/// What `role`, a runtime role, may hold on a relation: nothing where the
/// policy file declares it (or a table it inherits from or is a partition
/// of) `[[private]]` for the role, or outside the app
/// schemas; exactly DML on app tables and invoker views (spelled out, never
/// ALL, which includes MAINTAIN on 17+) and USAGE, SELECT on app sequences;
/// at most DML on the other relations (see [`writers_grant`]).
pub fn runtime_want(model: &Model, rel: &Relation, role: &str) -> Want {
    if is_private(model, rel, role) || !model.is_app_schema(&rel.schema) {
        return Want::Exactly(Privs::NONE);
    }
    match (rel.is_sequence(), writers_grant(rel.kind, rel.security_invoker)) {
        (true, _) => Want::Exactly(SEQUENCE_USE),
        (false, true) => Want::Exactly(DML),
        (false, false) => Want::AtMost(DML),
    }
}

/// Whether the policy file keeps `rel`, or a table it inherits from or is a
/// partition of, from `role` (`[[private]]`).
pub fn is_private(model: &Model, rel: &Relation, role: &str) -> bool {
    std::iter::once(format!("{}.{}", rel.schema, rel.name))
        .chain(rel.ancestors.iter().cloned())
        .any(|name| model.exemptions.private_for(&name, role))
}

/// A relation: the runtime roles get [`runtime_want`]; PUBLIC nothing.
pub fn relation(model: &Model, rel: &Relation) -> Vec<(Grantee, Want)> {
    let mut wants: Vec<(Grantee, Want)> = [&model.runtime.name, &model.service.name]
        .into_iter()
        .map(|role| (Grantee::role(role), runtime_want(model, rel, role)))
        .collect();
    wants.push((Grantee::Public, Want::Without(Privs::ALL)));
    wants
}

/// Columns: no column-level grant to the runtime roles or PUBLIC at all;
/// table-level DML is all they get.
pub fn column(model: &Model) -> Vec<(Grantee, Want)> {
    let mut wants: Vec<(Grantee, Want)> =
        runtime_roles(model).into_iter().map(|g| (g, Want::Without(Privs::ALL))).collect();
    wants.push((Grantee::Public, Want::Without(Privs::ALL)));
    wants
}

/// A schema outside the managed ones: no CREATE for the runtime roles or
/// PUBLIC (PostgreSQL 13/14 give PUBLIC CREATE on `public`).
pub fn other_schema(model: &Model) -> Vec<(Grantee, Want)> {
    runtime_and_public(model, Want::Without(CREATE))
}

/// Foreign-data wrappers and servers: no USAGE for the runtime roles or
/// PUBLIC (with it a role creates servers and user mappings).
pub fn foreign(model: &Model) -> Vec<(Grantee, Want)> {
    runtime_and_public(model, Want::Without(Privs::ALL))
}

fn runtime_and_public(model: &Model, want: Want) -> Vec<(Grantee, Want)> {
    runtime_roles(model).into_iter().chain([Grantee::Public]).map(|g| (g, want)).collect()
}

/// The migrator's default-privilege rows the model needs: tables and
/// sequences in each app schema (per schema, so the bookkeeping schema gets
/// nothing).
pub fn default_rows(model: &Model) -> Vec<(Option<String>, DefaultObjects)> {
    model
        .app_schemas
        .iter()
        .flat_map(|s| [(Some(s.clone()), DefaultObjects::Tables), (Some(s.clone()), DefaultObjects::Sequences)])
        .collect()
}

/// What a migrator default-privilege row must give: DML on tables and
/// USAGE, SELECT on sequences where [`default_rows`] lists it, nothing to the
/// runtime roles anywhere else, never anything to PUBLIC on tables or sequences.
pub fn migrator_default(model: &Model, schema: Option<&str>, objtype: DefaultObjects) -> Vec<(Grantee, Want)> {
    let listed = default_rows(model).contains(&(schema.map(str::to_string), objtype));
    let runtime = match (listed, objtype) {
        (true, DefaultObjects::Tables) => DML,
        (true, DefaultObjects::Sequences) => SEQUENCE_USE,
        _ => Privs::NONE,
    };
    let mut wants: Vec<(Grantee, Want)> =
        runtime_roles(model).into_iter().map(|g| (g, Want::Exactly(runtime))).collect();
    if matches!(objtype, DefaultObjects::Tables | DefaultObjects::Sequences) {
        wants.push((Grantee::Public, Want::Without(Privs::ALL)));
    }
    wants
}

/// Why a role or database default (`ALTER ROLE … SET`, `ALTER DATABASE …
/// SET`) that applies to a runtime role breaks or weakens the model, if it
/// does. `role` is `None` for a database-wide default. Provisioning removes
/// these; the audit names each.
pub fn setting_problem(model: &Model, role: Option<&str>, name: &str, value: &str) -> Option<String> {
    let enforced = role.is_none_or(|r| r == model.runtime.name);
    let name = name.to_ascii_lowercase();
    if name == "row_security" && enforced && crate::snapshot::reach::parse_bool(value) == Some(false) {
        return Some(format!(
            "row_security = {value}: every query of `{}` on an RLS table fails (\"query would be affected by \
             row-level security policy\")",
            model.runtime.name
        ));
    }
    if name == "session_replication_role" && !value.eq_ignore_ascii_case("origin") {
        return Some(format!("session_replication_role = {value}: switches off triggers and foreign-key checks"));
    }
    if name == model.tenant_setting.to_ascii_lowercase() && enforced {
        return Some(format!(
            "{} = '{value}' by default: a session that sets no tenant acts as that tenant instead of seeing no row",
            model.tenant_setting
        ));
    }
    None
}
