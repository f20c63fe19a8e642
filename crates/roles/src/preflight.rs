//! Before anything changes: can this admin do everything the plan needs?
//! A superuser can; anyone else (a managed service's admin) is checked
//! against PostgreSQL's rules, which changed in 16.

use crate::plan::{Need, Plan};
use crate::snapshot::{RoleAccess, Snapshot};

/// The role objects are given to: the `to` of any owner change.
fn plan_migrator(plan: &Plan) -> Option<String> {
    plan.needs.iter().find_map(|need| match need {
        Need::ChangeOwner { to, .. } | Need::Reassign { to, .. } | Need::CreateDatabaseOwnedBy(to) => Some(to.clone()),
        _ => None,
    })
}

/// What the admin lacks for `plan`, each with the fix; empty when it can run.
pub fn missing_capabilities(snap: &Snapshot, plan: &Plan) -> Vec<String> {
    if snap.admin.superuser {
        return Vec::new();
    }
    let admin = Admin { snap, plan, migrator: plan_migrator(plan) };
    let mut missing: Vec<String> = plan.needs.iter().flat_map(|need| admin.lacks(need)).collect();
    missing.sort();
    missing.dedup();
    missing
}

/// A non-superuser admin, as PostgreSQL's rules see it.
struct Admin<'a> {
    snap: &'a Snapshot,
    plan: &'a Plan,
    migrator: Option<String>,
}

impl Admin<'_> {
    /// What the admin may do with `role`. A role created by this run: since
    /// 16 its creator holds ADMIN on it. Memberships the plan grants the
    /// admin count as held; the database owner's objects are reached
    /// through the migrator, its owner to be.
    fn access(&self, role: &str) -> RoleAccess {
        let role = if role == "pg_database_owner" { self.migrator.as_deref().unwrap_or(role) } else { role };
        let fresh = RoleAccess { usage: false, set: false, admin: self.snap.major() >= 16 };
        let mut access = self.snap.admin.access.get(role).copied().unwrap_or(fresh);
        if let Some((_, inherit, set)) = self.plan.admin_grants.iter().find(|(r, _, _)| r == role) {
            access.usage |= *inherit;
            access.set |= *set;
        }
        access
    }

    /// What is missing for one need, each with the fix.
    fn lacks(&self, need: &Need) -> Vec<String> {
        let admin = &self.snap.admin;
        let (who, major) = (&admin.name, self.snap.major());
        let one = |text: String| vec![text];
        match need {
            Need::CreateRole if !admin.createrole => {
                one(format!("`{who}` cannot create roles: it needs CREATEROLE (ALTER ROLE {who} CREATEROLE)"))
            }
            Need::GiveBypassRls(role) if major < 16 => one(format!(
                "only a superuser can give BYPASSRLS to `{role}` on PostgreSQL {major}; run db-provision as a \
                 superuser, or have the provider's console create the role with BYPASSRLS"
            )),
            Need::GiveBypassRls(role) if !(admin.bypassrls && admin.createrole) => one(format!(
                "`{who}` cannot give BYPASSRLS to `{role}`: on PostgreSQL 16+ it needs BYPASSRLS and CREATEROLE itself"
            )),
            Need::AlterRole(role) if major >= 16 && !self.access(role).admin => one(format!(
                "`{who}` cannot alter role `{role}`: it needs ADMIN OPTION on it (GRANT {role} TO {who} WITH ADMIN OPTION, \
                 run by a role that has it)"
            )),
            Need::AlterRole(role) if major < 16 && !admin.createrole => {
                one(format!("`{who}` cannot alter role `{role}`: it needs CREATEROLE"))
            }
            Need::CreateDatabaseOwnedBy(owner) => self.create_database(owner),
            Need::ChangeOwner { from, to } | Need::Reassign { from, to } => self.change_owner(from, to),
            Need::CreateUntrustedExtension(name) => one(format!(
                "only a superuser may create extension `{name}` (APP_DB_EXTENSIONS), which is not trusted: create it \
                 once as one (CREATE EXTENSION IF NOT EXISTS \"{name}\" in the app database) or through the \
                 provider's console, then run db-provision again"
            )),
            Need::ActAs(role) if !self.access(role).set => one(format!(
                "`{who}` must run grants as `{role}`, the owner or grantor, and cannot SET ROLE {role} \
                 (GRANT {role} TO {who} WITH SET TRUE)"
            )),
            _ => Vec::new(),
        }
    }

    fn create_database(&self, owner: &str) -> Vec<String> {
        let who = &self.snap.admin.name;
        let mut missing = Vec::new();
        if !self.snap.admin.createdb {
            missing.push(format!("`{who}` cannot create databases: it needs CREATEDB"));
        }
        if !self.access(owner).set {
            missing.push(format!(
                "`{who}` cannot create a database owned by `{owner}`: it must be able to SET ROLE {owner} \
                 (GRANT {owner} TO {who} WITH SET TRUE)"
            ));
        }
        missing
    }

    fn change_owner(&self, from: &str, to: &str) -> Vec<String> {
        let who = &self.snap.admin.name;
        let mut missing = Vec::new();
        if !self.access(from).usage {
            missing.push(format!(
                "`{who}` cannot take objects away from `{from}`: it must hold `{from}`'s privileges \
                 (GRANT {from} TO {who})"
            ));
        }
        if !self.access(to).set {
            missing.push(format!(
                "`{who}` cannot give objects to `{to}`: it must be able to SET ROLE {to} (GRANT {to} TO {who} WITH SET TRUE)"
            ));
        }
        missing
    }
}
