//! `plan(model, snapshot)`: the ordered statements that bring the database to
//! the model, and nothing for what already holds. A pure function: an empty
//! plan is what "converged" means.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use dbenv::quote_ident;

use crate::acl::{
    self, change_owner, AclChange, AclItem, Grantee, Privs, DATABASE_ALL, EXECUTE, LARGE_OBJECT_USE, USAGE,
};
use crate::drift::{self, alter_keyword, Drift, On, Owned, Remedy};
use crate::model::{attributes_sql, Attribute, Model, RoleSpec};
use crate::reach::{self, State};
use crate::scram::{new_verifier, verifier_matches, StoredPassword};
use crate::snapshot::{ForeignObject, OwnedObject, Relation, RoleRow, Snapshot};
use crate::sql::{Change, Statement, OBJECTS_PER_GRANT};
use crate::wants;
pub use findings::{Note, Refusal, Refused, Warning};

mod database;
mod defaults;
pub mod findings;
mod objects;
mod predict;
mod relations;
mod roles;

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
    pub statements: Vec<Statement>,
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
    pub warnings: Vec<Warning>,
    /// What the plan deliberately leaves to others (schemas to the migrations).
    pub notes: Vec<Note>,
    /// Problems that stop the run before anything changes.
    pub refusals: Vec<Refusal>,
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

    fn push(&mut self, phase: Phase, summary: String, statements: Vec<Statement>, lock_cost: u32) {
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

    /// GRANT/REVOKE statements for `changes` on `objects` (quoted), all of
    /// kind `keyword` (TABLE, SEQUENCE, SCHEMA, DATABASE, …) and owned by `owner`.
    fn acl_statements(
        &mut self,
        keyword: &'static str,
        objects: &[String],
        owner: &str,
        changes: &[AclChange],
    ) -> Vec<Statement> {
        grants_first(changes)
            .into_iter()
            .map(|change| {
                let grantor = match &change {
                    AclChange::Grant { .. } => None,
                    AclChange::Revoke { grantor, .. } | AclChange::RevokeGrantOption { grantor, .. } => {
                        Some(grantor.clone())
                    }
                };
                let actor = self.actor(owner, grantor.as_deref());
                Statement::new(Change::Acl { keyword, objects: objects.to_vec(), change, also_to: Vec::new() })
                    .run_as(actor)
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

/// Grants first: a live app must never see a moment without access.
fn grants_first(changes: &[AclChange]) -> Vec<AclChange> {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| !matches!(c, AclChange::Grant { .. }));
    sorted
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
