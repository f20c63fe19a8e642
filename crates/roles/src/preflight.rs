//! Before anything changes: can this admin do everything the plan needs?
//! A superuser can; anyone else (a managed service's admin) is checked
//! against PostgreSQL's rules, which changed in 16.

use std::fmt;

use crate::plan::{Need, Plan};
use crate::snapshot::{RoleAccess, Snapshot};

/// What a non-superuser admin lacks for one need of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lack {
    /// CREATEROLE, to create the roles.
    CreateRole,
    /// Before 16 only a superuser gives BYPASSRLS.
    BypassRlsNeedsSuperuser { role: String, major: i32 },
    /// On 16+ giving BYPASSRLS needs BYPASSRLS and CREATEROLE.
    GiveBypassRls { role: String },
    /// On 16+ altering a role needs ADMIN OPTION on it.
    AdminOption { role: String },
    /// Before 16 altering a role needs CREATEROLE.
    AlterRole { role: String },
    /// Only a superuser creates an extension that is not trusted.
    UntrustedExtension { name: String },
    /// Grants run as their owner or grantor: the admin must SET ROLE to it.
    ActAs { role: String },
    /// CREATEDB, to create the database.
    CreateDb,
    /// Creating a database owned by `owner` needs SET ROLE to it.
    CreateDatabaseOwnedBy { owner: String },
    /// Taking objects away from `from` needs its privileges.
    TakeObjectsFrom { from: String },
    /// Giving objects to `to` needs SET ROLE to it.
    GiveObjectsTo { to: String },
}

impl Lack {
    /// The text, naming the admin and the fix.
    pub fn describe(&self, who: &str) -> String {
        match self {
            Lack::CreateRole => format!("`{who}` cannot create roles: it needs CREATEROLE (ALTER ROLE {who} CREATEROLE)"),
            Lack::BypassRlsNeedsSuperuser { role, major } => format!(
                "only a superuser can give BYPASSRLS to `{role}` on PostgreSQL {major}; run db-provision as a \
                 superuser, or have the provider's console create the role with BYPASSRLS"
            ),
            Lack::GiveBypassRls { role } => format!(
                "`{who}` cannot give BYPASSRLS to `{role}`: on PostgreSQL 16+ it needs BYPASSRLS and CREATEROLE itself"
            ),
            Lack::AdminOption { role } => format!(
                "`{who}` cannot alter role `{role}`: it needs ADMIN OPTION on it (GRANT {role} TO {who} WITH ADMIN OPTION, \
                 run by a role that has it)"
            ),
            Lack::AlterRole { role } => format!("`{who}` cannot alter role `{role}`: it needs CREATEROLE"),
            Lack::UntrustedExtension { name } => format!(
                "only a superuser may create extension `{name}` (APP_DB_EXTENSIONS), which is not trusted: create it \
                 once as one (CREATE EXTENSION IF NOT EXISTS \"{name}\" in the app database) or through the \
                 provider's console, then run db-provision again"
            ),
            Lack::ActAs { role } => format!(
                "`{who}` must run grants as `{role}`, the owner or grantor, and cannot SET ROLE {role} \
                 (GRANT {role} TO {who} WITH SET TRUE)"
            ),
            Lack::CreateDb => format!("`{who}` cannot create databases: it needs CREATEDB"),
            Lack::CreateDatabaseOwnedBy { owner } => format!(
                "`{who}` cannot create a database owned by `{owner}`: it must be able to SET ROLE {owner} \
                 (GRANT {owner} TO {who} WITH SET TRUE)"
            ),
            Lack::TakeObjectsFrom { from } => format!(
                "`{who}` cannot take objects away from `{from}`: it must hold `{from}`'s privileges \
                 (GRANT {from} TO {who})"
            ),
            Lack::GiveObjectsTo { to } => format!(
                "`{who}` cannot give objects to `{to}`: it must be able to SET ROLE {to} (GRANT {to} TO {who} WITH SET TRUE)"
            ),
        }
    }
}

/// `db-provision` stops before the first change: the admin cannot do
/// everything the plan needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCannot {
    pub admin: String,
    pub lacks: Vec<Lack>,
}

impl fmt::Display for AdminCannot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nothing was changed: the admin `{}` cannot do everything the plan needs:", self.admin)?;
        for lack in &self.lacks {
            write!(f, "\n  - {}", lack.describe(&self.admin))?;
        }
        Ok(())
    }
}

impl std::error::Error for AdminCannot {}

/// The role objects are given to: the `to` of any owner change.
fn plan_migrator(plan: &Plan) -> Option<String> {
    plan.needs.iter().find_map(|need| match need {
        Need::ChangeOwner { to, .. } | Need::Reassign { to, .. } | Need::CreateDatabaseOwnedBy(to) => Some(to.clone()),
        _ => None,
    })
}

/// What the admin lacks for `plan`, ordered by their text, each once;
/// empty when it can run.
pub fn missing_capabilities(snap: &Snapshot, plan: &Plan) -> Vec<Lack> {
    if snap.admin.superuser {
        return Vec::new();
    }
    let admin = Admin { snap, plan, migrator: plan_migrator(plan) };
    let who = &snap.admin.name;
    let mut missing: Vec<(String, Lack)> =
        plan.needs.iter().flat_map(|need| admin.lacks(need)).map(|lack| (lack.describe(who), lack)).collect();
    missing.sort_by(|a, b| a.0.cmp(&b.0));
    missing.dedup_by(|a, b| a.0 == b.0);
    missing.into_iter().map(|(_, lack)| lack).collect()
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

    /// What is missing for one need.
    fn lacks(&self, need: &Need) -> Vec<Lack> {
        let admin = &self.snap.admin;
        let major = self.snap.major();
        let role = |role: &String| role.clone();
        match need {
            Need::CreateRole if !admin.createrole => vec![Lack::CreateRole],
            Need::GiveBypassRls(r) if major < 16 => vec![Lack::BypassRlsNeedsSuperuser { role: role(r), major }],
            Need::GiveBypassRls(r) if !(admin.bypassrls && admin.createrole) => {
                vec![Lack::GiveBypassRls { role: role(r) }]
            }
            Need::AlterRole(r) if major >= 16 && !self.access(r).admin => vec![Lack::AdminOption { role: role(r) }],
            Need::AlterRole(r) if major < 16 && !admin.createrole => vec![Lack::AlterRole { role: role(r) }],
            Need::CreateDatabaseOwnedBy(owner) => self.create_database(owner),
            Need::ChangeOwner { from, to } | Need::Reassign { from, to } => self.change_owner(from, to),
            Need::CreateUntrustedExtension(name) => vec![Lack::UntrustedExtension { name: name.clone() }],
            Need::ActAs(r) if !self.access(r).set => vec![Lack::ActAs { role: role(r) }],
            _ => Vec::new(),
        }
    }

    fn create_database(&self, owner: &str) -> Vec<Lack> {
        let mut missing = Vec::new();
        if !self.snap.admin.createdb {
            missing.push(Lack::CreateDb);
        }
        if !self.access(owner).set {
            missing.push(Lack::CreateDatabaseOwnedBy { owner: owner.to_string() });
        }
        missing
    }

    fn change_owner(&self, from: &str, to: &str) -> Vec<Lack> {
        let mut missing = Vec::new();
        if !self.access(from).usage {
            missing.push(Lack::TakeObjectsFrom { from: from.to_string() });
        }
        if !self.access(to).set {
            missing.push(Lack::GiveObjectsTo { to: to.to_string() });
        }
        missing
    }
}
