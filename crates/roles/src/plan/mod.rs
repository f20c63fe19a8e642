//! `plan(model, snapshot)`: the ordered statements that bring the database to
//! the model, and nothing for what already holds. A pure function: an empty
//! plan is what "converged" means.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dbenv::{quote_ident, quote_literal};

use crate::acl::{
    self, change_owner, AclChange, AclItem, Grantee, Privs, DATABASE_ALL, EXECUTE, LARGE_OBJECT_USE, USAGE,
};
use crate::drift::{self, alter_keyword, Drift, On, Owned, Remedy};
use crate::model::{attributes_sql, Attribute, Model, RoleSpec};
use crate::reach::{self, State};
use crate::scram::{new_verifier, verifier_matches, StoredPassword};
use crate::snapshot::{ForeignObject, OwnedObject, Relation, RoleRow, Snapshot};
use crate::wants;

mod database;
mod defaults;
mod objects;
mod predict;
mod relations;
mod roles;

/// One SQL statement. `Display` shows it with secrets redacted; the text
/// with the verifier is only handed to the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Sql {
    text: String,
    shown: Option<String>,
    /// Run under `SET LOCAL ROLE` (a revoke must come from the grantor; a
    /// non-superuser admin grants as the owner).
    pub as_role: Option<String>,
    /// A GRANT on one object, kept apart so that a batch can grant the same
    /// privileges on many objects in one statement.
    pub(crate) grant: Option<Grant>,
}

/// `GRANT {privs} ON {keyword} {object} TO {grantee}`, in pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    pub privs: String,
    pub keyword: String,
    pub object: String,
    pub grantee: String,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Sql {
        Sql { text: text.into(), shown: None, as_role: None, grant: None }
    }

    fn grant(privs: String, keyword: &str, object: &str, grantee: String) -> Sql {
        let mut sql = Sql::new(grant_sql(&privs, keyword, object, &grantee));
        sql.grant = Some(Grant { privs, keyword: keyword.to_string(), object: object.to_string(), grantee });
        sql
    }

    /// A statement holding a secret, printed as `shown`.
    fn secret(text: String, shown: String) -> Sql {
        Sql { text, shown: Some(shown), as_role: None, grant: None }
    }

    fn run_as(mut self, role: Option<String>) -> Sql {
        self.as_role = role;
        self
    }

    /// The text for the server. Never print it.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// `GRANT {privs} ON {keyword} {objects} TO {grantees}`: the plan's grants
/// and the merged ones a transaction sends.
pub(crate) fn grant_sql(privs: &str, keyword: &str, objects: &str, grantees: &str) -> String {
    format!("GRANT {privs} ON {keyword} {objects} TO {grantees}")
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(role) = &self.as_role {
            write!(f, "SET ROLE {}; ", quote_ident(role))?;
        }
        f.write_str(self.shown.as_deref().unwrap_or(&self.text))
    }
}

impl fmt::Debug for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sql({self})")
    }
}

/// The phases, in the order they run. Each has its connection and
/// transaction shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Roles, attributes, passwords, memberships: one transaction.
    Roles,
    /// `CREATE DATABASE` (cannot run in a transaction).
    CreateDatabase,
    /// The database owner and ACL: one transaction.
    Database,
    /// App and bookkeeping schemas: one transaction.
    Schemas,
    /// `APP_DB_EXTENSIONS`, created as the admin: one transaction.
    Extensions,
    /// Owner changes with their grants, in batches that each commit.
    Ownership,
    /// `REASSIGN OWNED` for what `ALTER … OWNER` cannot move (extensions).
    Reassign,
    /// ACL fixes on relations that keep their owner, in batches.
    Grants,
    /// `ALTER DEFAULT PRIVILEGES`: one transaction.
    DefaultPrivileges,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Roles,
        Phase::CreateDatabase,
        Phase::Database,
        Phase::Schemas,
        Phase::Extensions,
        Phase::Ownership,
        Phase::Reassign,
        Phase::Grants,
        Phase::DefaultPrivileges,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Phase::Roles => "roles",
            Phase::CreateDatabase => "create database",
            Phase::Database => "database",
            Phase::Schemas => "schemas",
            Phase::Extensions => "extensions (APP_DB_EXTENSIONS)",
            Phase::Ownership => "ownership",
            Phase::Reassign => "extensions (REASSIGN OWNED)",
            Phase::Grants => "grants",
            Phase::DefaultPrivileges => "default privileges",
        }
    }

    /// Runs on the maintenance connection rather than in the app database.
    pub fn on_cluster(self) -> bool {
        matches!(self, Phase::Roles | Phase::CreateDatabase | Phase::Database)
    }

    /// Split into transactions that each commit (and may be retried).
    pub fn batched(self) -> bool {
        matches!(self, Phase::Ownership | Phase::Grants)
    }
}

/// One change: a sentence for the report and the statements that make it,
/// which always run in one transaction.
#[derive(Clone, Debug)]
pub struct Step {
    pub phase: Phase,
    pub summary: String,
    pub statements: Vec<Sql>,
    /// Locks the statements take (owner changes lock the relation, its
    /// indexes and TOAST): batches are sized by it.
    pub lock_cost: u32,
}

/// Something the admin must be able to do for the plan to run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    CreateRole,
    GiveBypassRls(String),
    AlterRole(String),
    CreateDatabaseOwnedBy(String),
    /// An extension that is not trusted: only a superuser creates it.
    CreateUntrustedExtension(String),
    ChangeOwner {
        from: String,
        to: String,
    },
    ActAs(String),
    Reassign {
        from: String,
        to: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The changes, in phase order.
    pub steps: Vec<Step>,
    /// Things worth knowing that do not stop the run.
    pub warnings: Vec<String>,
    /// What the plan deliberately leaves to others (schemas to the migrations).
    pub notes: Vec<String>,
    /// Problems that stop the run before anything changes.
    pub refusals: Vec<String>,
    /// What the admin must be able to do (the preflight checks it).
    pub needs: BTreeSet<Need>,
    /// Memberships a non-superuser admin grants itself (it holds ADMIN on
    /// the role): `(role, inherit, set)`. The preflight counts them as held.
    pub admin_grants: Vec<(String, bool, bool)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn statement_count(&self) -> usize {
        self.steps.iter().map(|s| s.statements.len()).sum()
    }

    pub fn steps_of(&self, phase: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.phase == phase)
    }

    fn push(&mut self, phase: Phase, summary: String, statements: Vec<Sql>, lock_cost: u32) {
        if !statements.is_empty() {
            self.steps.push(Step { phase, summary, statements, lock_cost });
        }
    }
}

/// Computes the plan. Passwords enter it only as fresh SCRAM verifiers.
///
/// Roles, the database, schemas and owners are rendered from the drift of
/// `snap`; grants and revokes from the drift of the state those steps leave
/// (`predict.rs`): `ALTER … OWNER` rewrites an ACL, and a new database or
/// schema starts with PostgreSQL's default one.
pub fn plan(model: &Model, snap: &Snapshot) -> Plan {
    let found = drift::drift(model, snap);
    let access = match predict::predict(model, snap) {
        Cow::Borrowed(same) => Access::of(model, found.clone(), same),
        Cow::Owned(next) => Access::of(model, drift::drift(model, &next), &next),
    };
    let mut planner = Planner { model, snap, plan: Plan::default(), found, access, widenings: Vec::new() };
    planner.roles();
    planner.database();
    planner.schemas();
    planner.extensions();
    planner.other_schemas();
    planner.relations();
    planner.refuse_widenings();
    planner.foreign();
    planner.objects();
    planner.default_privileges();
    planner.owners_rights();
    planner.outside_the_plan();
    planner.admin_memberships();
    let mut plan = planner.plan;
    plan.steps.sort_by_key(|s| s.phase);
    plan
}

struct Planner<'a> {
    model: &'a Model,
    snap: &'a Snapshot,
    plan: Plan,
    /// The drift of `snap`: roles, memberships, settings, owners, and what
    /// the plan refuses or names.
    found: Vec<Drift>,
    access: Access,
    /// What a conversion's grants give a runtime role that it never had.
    widenings: Vec<String>,
}

/// The access drift of the predicted state, as the plan renders it.
struct Access {
    /// What the GRANTs and REVOKEs change, by object.
    changes: BTreeMap<On, Vec<AclChange>>,
    /// Default privileges of the runtime roles and of other roles to remove.
    defaults: Vec<Drift>,
    /// What the plan leaves to the operator and names (PUBLIC's USAGE on
    /// foreign data).
    named: Vec<Drift>,
    /// The predicted database ACL, for the admin's CONNECT.
    database_acl: Vec<AclItem>,
    /// The foreign-data wrappers and servers, with their predicted owners.
    foreign: Vec<ForeignObject>,
}

impl Access {
    fn of(model: &Model, drift: Vec<Drift>, predicted: &Snapshot) -> Access {
        let mut access = Access {
            changes: BTreeMap::new(),
            defaults: Vec::new(),
            named: Vec::new(),
            database_acl: predicted.database.as_ref().map(|d| d.acl.clone()).unwrap_or_default(),
            foreign: predicted.db.foreign.clone(),
        };
        for item in drift {
            match item {
                Drift::Acl { .. } if item.remedy(model) == Remedy::Warn => access.named.push(item),
                Drift::Acl { on, drift, .. } => access.changes.entry(on).or_default().extend(drift.changes),
                Drift::RuntimeDefaults { .. } | Drift::OtherDefaults { .. } => access.defaults.push(item),
                _ => {}
            }
        }
        access
    }
}

impl Planner<'_> {
    fn migrator(&self) -> &str {
        &self.model.migrator.name
    }

    /// Who runs a GRANT/REVOKE on an object owned by `owner`: a superuser
    /// acts as the owner already; anyone else must become the owner. A
    /// revoke must come from the grantor that made the grant.
    fn actor(&mut self, owner: &str, grantor: Option<&str>) -> Option<String> {
        let role = grantor.unwrap_or(owner);
        if self.snap.admin.superuser && role == owner {
            return None;
        }
        if !self.snap.admin.superuser {
            self.plan.needs.insert(Need::ActAs(role.to_string()));
        }
        Some(role.to_string())
    }

    /// The items of [`Planner::found`] that `pick` keeps.
    fn found(&self, pick: impl Fn(&Drift) -> bool) -> Vec<Drift> {
        self.found.iter().filter(|item| pick(item)).cloned().collect()
    }

    /// The grants and revokes `on` needs, taken out of [`Access`].
    fn access(&mut self, on: &On) -> Vec<AclChange> {
        self.access.changes.remove(on).unwrap_or_default()
    }

    /// GRANT/REVOKE statements for `changes` on `objects` (already quoted),
    /// all of kind `keyword` (TABLE, SEQUENCE, SCHEMA, DATABASE, …) and owned by `owner`.
    fn acl_statements(&mut self, keyword: &str, objects: &str, owner: &str, changes: &[AclChange]) -> Vec<Sql> {
        let on = format!("{keyword} {objects}");
        grants_first(changes)
            .iter()
            .map(|change| match change {
                AclChange::Grant { grantee, privs } => {
                    let actor = self.actor(owner, None);
                    Sql::grant(privs.sql(), keyword, objects, grantee.sql()).run_as(actor)
                }
                AclChange::Revoke { grantor, .. } | AclChange::RevokeGrantOption { grantor, .. } => {
                    let actor = self.actor(owner, Some(grantor));
                    Sql::new(change_sql(change, &on)).run_as(actor)
                }
            })
            .collect()
    }
}

fn keyword(rel: &Relation) -> &'static str {
    if rel.is_sequence() {
        "SEQUENCE"
    } else {
        "TABLE"
    }
}

fn default_acl_keyword(objtype: char) -> Option<&'static str> {
    Some(match objtype {
        'r' => "TABLES",
        'S' => "SEQUENCES",
        'f' => "FUNCTIONS",
        'T' => "TYPES",
        'n' => "SCHEMAS",
        'L' => "LARGE OBJECTS",
        _ => return None,
    })
}

/// Objects one GRANT statement names at most.
pub(crate) const OBJECTS_PER_GRANT: usize = 500;

/// The one place grants are merged. Grants of the same privileges to the
/// same grantee become one statement over many objects, after the rest of
/// the transaction (after each object's owner change, in the same
/// transaction): thousands of owner changes then cost a handful of GRANTs,
/// not thousands. Grantees given the same privileges on the same objects
/// share the statement too: each catalog row is then rewritten once, not per
/// grantee. Returns the statements that are not such grants, in order, and
/// the merged GRANTs.
pub(crate) fn merge_grants<'a>(statements: &[&'a Sql]) -> (Vec<&'a Sql>, Vec<String>) {
    let mut others = Vec::new();
    let mut by_grantee: Vec<(&Grant, Vec<&str>)> = Vec::new();
    for sql in statements {
        let Some(grant) = sql.grant.as_ref().filter(|_| sql.as_role.is_none()) else {
            others.push(*sql);
            continue;
        };
        let same = |(g, objects): &&mut (&Grant, Vec<&str>)| {
            g.privs == grant.privs
                && g.keyword == grant.keyword
                && g.grantee == grant.grantee
                && objects.len() < OBJECTS_PER_GRANT
        };
        match by_grantee.iter_mut().find(same) {
            Some((_, objects)) => objects.push(&grant.object),
            None => by_grantee.push((grant, vec![&grant.object])),
        }
    }
    let mut merged: Vec<(&Grant, String, Vec<&str>)> = Vec::new();
    for (grant, objects) in by_grantee {
        let objects = objects.join(", ");
        match merged.iter_mut().find(|(g, o, _)| g.privs == grant.privs && g.keyword == grant.keyword && *o == objects)
        {
            Some((_, _, grantees)) => grantees.push(&grant.grantee),
            None => merged.push((grant, objects, vec![&grant.grantee])),
        }
    }
    let grants = merged
        .into_iter()
        .map(|(g, objects, grantees)| grant_sql(&g.privs, &g.keyword, &objects, &grantees.join(", ")));
    (others, grants.collect())
}

/// Grants first: a live app must never see a moment without access.
fn grants_first(changes: &[AclChange]) -> Vec<AclChange> {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| !matches!(c, AclChange::Grant { .. }));
    sorted
}

/// The one spelling of an ACL change as SQL, `on` being what follows `ON`
/// (`TABLE "public"."users"`, or `TABLES` after `ALTER DEFAULT PRIVILEGES`).
fn change_sql(change: &AclChange, on: &str) -> String {
    match change {
        AclChange::Grant { grantee, privs } => format!("GRANT {} ON {on} TO {}", privs.sql(), grantee.sql()),
        AclChange::Revoke { grantee, privs, .. } => {
            format!("REVOKE {} ON {on} FROM {} CASCADE", privs.sql(), grantee.sql())
        }
        AclChange::RevokeGrantOption { grantee, privs, .. } => {
            format!("REVOKE GRANT OPTION FOR {} ON {on} FROM {} CASCADE", privs.sql(), grantee.sql())
        }
    }
}

/// `+CONNECT app_user, -CONNECT,TEMPORARY PUBLIC` style summary of changes.
pub fn describe(changes: &[AclChange]) -> String {
    changes
        .iter()
        .map(|change| match change {
            AclChange::Grant { grantee, privs } => format!("grant {} to {grantee}", privs.sql()),
            AclChange::Revoke { grantee, privs, .. } => format!("revoke {} from {grantee}", privs.sql()),
            AclChange::RevokeGrantOption { grantee, privs, .. } => {
                format!("revoke grant option for {} from {grantee}", privs.sql())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
