//! Before anything changes: can this admin do everything the plan needs?
//! A superuser can; anyone else (a managed service's admin) is checked
//! against PostgreSQL's rules, which changed in 16.

use crate::plan::{Need, Plan};

/// The role objects are given to: the `to` of any owner change.
fn plan_migrator(plan: &Plan) -> Option<String> {
    plan.needs.iter().find_map(|need| match need {
        Need::ChangeOwner { to, .. } | Need::Reassign { to, .. } | Need::CreateDatabaseOwnedBy(to) => Some(to.clone()),
        _ => None,
    })
}
use crate::snapshot::{RoleAccess, Snapshot};

/// What the admin lacks for `plan`, each with the fix; empty when it can run.
pub fn missing_capabilities(snap: &Snapshot, plan: &Plan) -> Vec<String> {
    let admin = &snap.admin;
    if admin.superuser {
        return Vec::new();
    }
    let major = snap.major();
    let who = &admin.name;
    // A role created by this run: since 16 its creator holds ADMIN on it.
    // Memberships the plan grants the admin count as held; the database
    // owner's objects are reached through the migrator, its owner to be.
    let migrator = plan_migrator(plan);
    let access = |role: &str| -> RoleAccess {
        let role = if role == "pg_database_owner" { migrator.as_deref().unwrap_or(role) } else { role };
        let mut access =
            admin.access.get(role).copied().unwrap_or(RoleAccess { usage: false, set: false, admin: major >= 16 });
        if let Some((_, inherit, set)) = plan.admin_grants.iter().find(|(r, _, _)| r == role) {
            access.usage |= *inherit;
            access.set |= *set;
        }
        access
    };
    let mut missing = Vec::new();
    for need in &plan.needs {
        match need {
            Need::CreateRole if !admin.createrole => {
                missing.push(format!("`{who}` cannot create roles: it needs CREATEROLE (ALTER ROLE {who} CREATEROLE)"))
            }
            Need::GiveBypassRls(role) if major < 16 => missing.push(format!(
                "only a superuser can give BYPASSRLS to `{role}` on PostgreSQL {major}; run db-provision as a \
                 superuser, or have the provider's console create the role with BYPASSRLS"
            )),
            Need::GiveBypassRls(role) if !(admin.bypassrls && admin.createrole) => missing.push(format!(
                "`{who}` cannot give BYPASSRLS to `{role}`: on PostgreSQL 16+ it needs BYPASSRLS and CREATEROLE itself"
            )),
            Need::AlterRole(role) if major >= 16 && !access(role).admin => missing.push(format!(
                "`{who}` cannot alter role `{role}`: it needs ADMIN OPTION on it (GRANT {role} TO {who} WITH ADMIN OPTION, \
                 run by a role that has it)"
            )),
            Need::AlterRole(role) if major < 16 && !admin.createrole => {
                missing.push(format!("`{who}` cannot alter role `{role}`: it needs CREATEROLE"))
            }
            Need::CreateDatabaseOwnedBy(owner) => {
                if !admin.createdb {
                    missing.push(format!("`{who}` cannot create databases: it needs CREATEDB"));
                }
                if !access(owner).set {
                    missing.push(format!(
                        "`{who}` cannot create a database owned by `{owner}`: it must be able to SET ROLE {owner} \
                         (GRANT {owner} TO {who} WITH SET TRUE)"
                    ));
                }
            }
            Need::ChangeOwner { from, to } | Need::Reassign { from, to } => {
                if !access(from).usage {
                    missing.push(format!(
                        "`{who}` cannot take objects away from `{from}`: it must hold `{from}`'s privileges \
                         (GRANT {from} TO {who})"
                    ));
                }
                if !access(to).set {
                    missing.push(format!(
                        "`{who}` cannot give objects to `{to}`: it must be able to SET ROLE {to} (GRANT {to} TO {who} WITH SET TRUE)"
                    ));
                }
            }
            Need::CreateUntrustedExtension(name) => missing.push(format!(
                "only a superuser may create extension `{name}` (APP_DB_EXTENSIONS), which is not trusted: create it \
                 once as one (CREATE EXTENSION IF NOT EXISTS \"{name}\" in the app database) or through the \
                 provider's console, then run db-provision again"
            )),
            Need::ActAs(role) if !access(role).set => missing.push(format!(
                "`{who}` must run grants as `{role}`, the owner or grantor, and cannot SET ROLE {role} \
                 (GRANT {role} TO {who} WITH SET TRUE)"
            )),
            _ => {}
        }
    }
    missing.sort();
    missing.dedup();
    missing
}
