//! Owner's-rights paths: everything that runs with its owner's rights and
//! that a runtime role can set off. Once the BYPASSRLS migrator (or any role
//! that escapes RLS) owns such a thing, the runtime role reads or writes
//! through it with the owner's rights: every tenant's rows, or more.
//!
//! - plain views without `security_invoker` and materialized views, which
//!   read as their owner (a materialized view stores what its owner saw at
//!   refresh, also through the functions its query calls);
//! - rules, whose actions run as the owner of the table they are on;
//! - `SECURITY DEFINER` functions and procedures, in any schema, that a
//!   runtime role may call or that a trigger runs;
//! - partitions and inheritance children without RLS of an RLS table: read
//!   directly, the parent's policies do not apply.
//!
//! The same analysis serves the audit (the catalogs as they are) and the
//! plan (the catalogs as a conversion would leave them), so `db-provision`
//! refuses, before its first change, exactly what `db-check` would fail.

use std::collections::{BTreeMap, BTreeSet};

use crate::exemptions::Kind;
use crate::kinds::RelKind;
use crate::model::Model;
use crate::snapshot::reach::RightsObject;
use crate::snapshot::DbContents;

/// The classes of owner's-rights paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathClass {
    View,
    MaterializedView,
    Rule,
    DefinerFunction,
    UnprotectedChild,
}

impl PathClass {
    /// The section of the exemptions file that accepts it.
    pub fn exemption(self) -> Kind {
        match self {
            PathClass::View | PathClass::MaterializedView => Kind::View,
            PathClass::Rule => Kind::Rule,
            PathClass::DefinerFunction => Kind::Function,
            PathClass::UnprotectedChild => Kind::Table,
        }
    }
}

/// What carries a path: the object whose owner lends its rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carrier {
    Relation(i64),
    Function(String),
}

/// One way a runtime role reaches rows (or powers) through an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsPath {
    pub class: PathClass,
    /// The name the exemptions file uses.
    pub subject: String,
    /// What is wrong, in a sentence.
    pub message: String,
    /// How to fix it.
    pub fix: String,
    pub carrier: Carrier,
    /// In [`State::Converted`]: the conversion itself opens it (the carrier
    /// changes owner).
    pub opened_by_conversion: bool,
}

/// Whose view of ownership the analysis takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The catalogs as they are (`db-check`).
    AsIs,
    /// As a conversion leaves them: everything a runtime role owns, and
    /// everything in the managed schemas, owned by the BYPASSRLS migrator;
    /// the runtime roles holding DML on every app relation.
    Converted,
}

/// Every owner's-rights path of `db` in `state` on a server of
/// `server_version` (`security_invoker` exists from 15 on).
pub fn paths(model: &Model, db: &DbContents, state: State, server_version: dbenv::ServerVersion) -> Vec<RightsPath> {
    let analysis = Analysis::new(model, db, state, server_version);
    let mut paths = analysis.views();
    paths.extend(analysis.outside_views());
    paths.extend(analysis.rules());
    paths.extend(analysis.definers());
    paths.extend(analysis.children());
    paths
}

/// What a view or materialized view of `db` reaches (an RLS table, or with
/// `through_functions` a function), directly or through other views.
pub fn source(model: &Model, db: &DbContents, oid: i64, through_functions: bool) -> Option<String> {
    // The version matters only to the paths (security_invoker); not here.
    let analysis = Analysis::new(model, db, State::AsIs, dbenv::ServerVersion::from_num(0));
    analysis.by_oid.get(&oid).and_then(|object| analysis.reaches(object, through_functions))
}

struct Analysis<'a> {
    model: &'a Model,
    db: &'a DbContents,
    state: State,
    server_version: dbenv::ServerVersion,
    by_oid: BTreeMap<i64, &'a RightsObject>,
}

impl<'a> Analysis<'a> {
    fn new(model: &'a Model, db: &'a DbContents, state: State, server_version: dbenv::ServerVersion) -> Analysis<'a> {
        let by_oid = db.reach.objects.iter().filter(|o| o.rule.is_none()).map(|o| (o.oid, o)).collect();
        Analysis { model, db, state, server_version, by_oid }
    }

    /// Whether the conversion moves it (always false for the catalogs as they are).
    fn opened(&self, owner: &str, schema: &str, extension: bool) -> bool {
        self.state == State::Converted && self.moves(owner, schema, extension)
    }

    /// Whether a conversion hands this object to the migrator: what a
    /// runtime role owns (`REASSIGN OWNED` takes an extension's members
    /// with it), and what anyone but the migrator owns in the managed
    /// schemas, except an extension's members, which stay with the extension.
    fn moves(&self, owner: &str, schema: &str, extension: bool) -> bool {
        self.model.is_runtime_role(owner)
            || (!extension && self.model.is_managed_schema(schema) && owner != self.model.migrator.name)
    }

    /// The owner in `state`, and whether it escapes RLS.
    fn owner(&self, owner: &'a str, escapes: bool, schema: &str, extension: bool) -> (&'a str, bool) {
        if self.state == State::Converted && self.moves(owner, schema, extension) {
            (self.model.migrator.name.as_str(), true)
        } else {
            (owner, escapes)
        }
    }

    /// Whether a runtime role reaches a relation of `schema` in `state`.
    fn used(&self, now: bool, schema: &str) -> bool {
        now || (self.state == State::Converted && self.model.is_app_schema(schema))
    }

    /// An RLS table the query of `object` reads, directly or through
    /// other views; with `through_functions`, also a function it calls
    /// (which may read anything: its body is not tracked).
    fn reaches(&self, object: &RightsObject, through_functions: bool) -> Option<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![object];
        while let Some(current) = stack.pop() {
            if let Some(table) = current.rls_reads.first() {
                return Some(format!("RLS table `{}`", dbenv::unquote_ident(table)));
            }
            if through_functions {
                if let Some(function) = current.functions.first() {
                    return Some(format!("function `{function}` (whose body may read any table)"));
                }
                // The text runs as whoever runs the query: the owner only
                // when a materialized view is refreshed.
                if let Some(runner) = current.sql_runners.first().filter(|_| current.kind == RelKind::MaterializedView)
                {
                    return Some(format!("`{runner}()`, which runs SQL text (it may read any table)"));
                }
            }
            for read in &current.view_reads {
                if seen.insert(*read) {
                    stack.extend(self.by_oid.get(read).copied());
                }
            }
        }
        None
    }

    /// Views (without `security_invoker`) and materialized views a runtime
    /// role may read that read, with their owner's rights, a relation
    /// outside the app schemas: the bookkeeping, another app's tables, an
    /// auth provider's users. (Over an RLS table they are `views`' paths.)
    fn outside_views(&self) -> Vec<RightsPath> {
        let mut paths = Vec::new();
        for object in self.db.reach.objects.iter().filter(|o| o.rule.is_none()) {
            let Some(outside) = object.outside_reads.first() else { continue };
            // An extension's own views read its own tables by design.
            if !self.used(object.runtime_uses, &object.schema) || object.extension {
                continue;
            }
            let (owner, _) = self.owner(&object.owner, object.owner_escapes_rls, &object.schema, object.extension);
            let opened_by_conversion = self.opened(&object.owner, &object.schema, object.extension);
            // A conversion sets security_invoker only on views over RLS
            // tables, so a moved view keeps its owner's rights here.
            let invoker = object.kind == RelKind::View && object.security_invoker;
            if invoker || self.model.is_runtime_role(owner) {
                continue;
            }
            let (class, what) = match object.kind {
                RelKind::MaterializedView => (PathClass::MaterializedView, "materialized view"),
                _ => (PathClass::View, "view"),
            };
            paths.push(RightsPath {
                class,
                subject: format!("{}.{}", object.schema, object.name),
                message: format!(
                    "{what} reads `{}`, outside the app schemas, with its owner's rights (`{owner}`), and a runtime \
                     role may read it",
                    dbenv::unquote_ident(outside)
                ),
                fix: "ALTER VIEW … SET (security_invoker = true) (PostgreSQL 15+), revoke SELECT from the runtime \
                      roles, or drop it"
                    .to_string(),
                carrier: Carrier::Relation(object.oid),
                opened_by_conversion,
            });
        }
        paths
    }

    fn views(&self) -> Vec<RightsPath> {
        let mut paths = Vec::new();
        for object in self.db.reach.objects.iter().filter(|o| o.rule.is_none()) {
            if !self.used(object.runtime_uses, &object.schema) {
                continue;
            }
            let (owner, escapes) =
                self.owner(&object.owner, object.owner_escapes_rls, &object.schema, object.extension);
            let subject = format!("{}.{}", object.schema, object.name);
            let (class, message, fix) = if object.kind == RelKind::MaterializedView {
                // A materialized view stores what its owner saw at refresh,
                // functions included: it has neither RLS nor invoker rights.
                let Some(source) = self.reaches(object, true) else { continue };
                if !escapes {
                    continue;
                }
                (
                    PathClass::MaterializedView,
                    format!(
                        "materialized view over {source}: it stores every tenant's rows as its owner `{owner}` saw \
                         them at refresh, and a runtime role may read it"
                    ),
                    "drop it, or revoke SELECT from the runtime roles and read it through a function that filters by \
                     tenant"
                        .to_string(),
                )
            } else {
                // A plain view's functions run as the caller; its tables are
                // read as the owner unless security_invoker is on.
                let Some(source) = self.reaches(object, false) else { continue };
                // A conversion gives every view it moves security_invoker where
                // the server has it (PostgreSQL 15+).
                let invoker = object.security_invoker
                    || (self.opened(&object.owner, &object.schema, object.extension)
                        && self.server_version.has_security_invoker_views());
                if invoker || !escapes {
                    continue;
                }
                (
                    PathClass::View,
                    format!("view over {source} runs with its owner's rights (`{owner}`, which bypasses RLS)"),
                    "ALTER VIEW … SET (security_invoker = true) (PostgreSQL 15+), or drop it".to_string(),
                )
            };
            let opened_by_conversion = self.opened(&object.owner, &object.schema, object.extension);
            paths.push(RightsPath {
                class,
                subject,
                message,
                fix,
                carrier: Carrier::Relation(object.oid),
                opened_by_conversion,
            });
        }
        paths
    }

    fn rules(&self) -> Vec<RightsPath> {
        let mut paths = Vec::new();
        for object in self.db.reach.objects.iter() {
            let Some(rule) = &object.rule else { continue };
            if !self.used(object.runtime_uses, &object.schema) {
                continue;
            }
            let (owner, escapes) =
                self.owner(&object.owner, object.owner_escapes_rls, &object.schema, object.extension);
            // An RLS table (or a function) with an owner that bypasses RLS;
            // or, with any owner but a runtime role, the bookkeeping or a
            // relation the runtime roles may not read themselves.
            let rls = self.reaches(object, true).filter(|_| escapes);
            let outside = object.outside_reads.first().filter(|_| !self.model.is_runtime_role(owner)).map(|table| {
                format!("`{}`, which the runtime roles may not touch themselves", dbenv::unquote_ident(table))
            });
            let Some(source) = rls.or(outside) else { continue };
            paths.push(RightsPath {
                class: PathClass::Rule,
                subject: format!("{}.{}.{rule}", object.schema, object.name),
                message: format!(
                    "rule `{rule}` on `{}.{}` reaches {source}; its action runs with the rights of the table's \
                     owner `{owner}` whenever a runtime role writes the table",
                    object.schema, object.name
                ),
                fix: format!(
                    "DROP RULE {} ON {}.{} (a trigger runs as the user who fires it), or exempt it with a reason",
                    dbenv::quote_ident(rule),
                    dbenv::quote_ident(&object.schema),
                    dbenv::quote_ident(&object.name)
                ),
                carrier: Carrier::Relation(object.oid),
                opened_by_conversion: self.opened(&object.owner, &object.schema, object.extension),
            });
        }
        paths
    }

    fn definers(&self) -> Vec<RightsPath> {
        let mut paths = Vec::new();
        for function in &self.db.reach.definers {
            let managed = self.model.managed_schemas().contains(&function.schema);
            if !(function.runtime_executes
                || function.trigger
                || function.event_trigger
                || function.aggregate.is_some()
                || managed)
            {
                continue;
            }
            let moving = self.opened(&function.owner, &function.schema, function.extension.is_some());
            let owner = if moving { self.model.migrator.name.as_str() } else { function.owner.as_str() };
            if self.model.is_runtime_role(owner) {
                // A runtime role owning it is an ownership violation of its own.
                continue;
            }
            let power = if function.owner_superuser && !moving {
                "a superuser: callers get superuser powers"
            } else if function.owner_bypasses_rls || moving || owner == self.model.migrator.name {
                "which bypasses RLS: callers read and write every tenant's rows"
            } else {
                "callers get its privileges, not their own"
            };
            let how = match (function.runtime_executes, function.trigger, function.event_trigger, &function.aggregate) {
                (true, ..) => "a runtime role may call it".to_string(),
                (_, _, true, _) => {
                    "an event trigger runs it on any DDL attempt, before the permission check".to_string()
                }
                (_, _, _, Some(aggregate)) => {
                    format!("the aggregate {aggregate}, which a runtime role may call, runs it")
                }
                (_, true, ..) => "a trigger runs it when the app writes".to_string(),
                _ => "it sits in an app schema".to_string(),
            };
            paths.push(RightsPath {
                class: PathClass::DefinerFunction,
                subject: function.identity.clone(),
                message: format!("SECURITY DEFINER, owned by `{owner}`, {power}; {how}"),
                fix: format!(
                    "make it SECURITY INVOKER, or REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {}, {} if the app does \
                     not call it, or exempt it with a reason after review",
                    function.identity,
                    dbenv::quote_ident(&self.model.runtime.name),
                    dbenv::quote_ident(&self.model.service.name)
                ),
                carrier: Carrier::Function(function.identity.clone()),
                opened_by_conversion: moving,
            });
        }
        paths
    }

    fn children(&self) -> Vec<RightsPath> {
        let mut paths = Vec::new();
        for child in &self.db.reach.children {
            if !self.used(child.runtime_reads, &child.schema) {
                continue;
            }
            paths.push(RightsPath {
                class: PathClass::UnprotectedChild,
                subject: dbenv::unquote_ident(&child.qualified),
                message: format!(
                    "inherits from RLS table `{}` but has no row-level security of its own: read directly, it shows \
                     every tenant's rows",
                    dbenv::unquote_ident(&child.ancestor)
                ),
                fix: format!(
                    "ALTER TABLE {} ENABLE ROW LEVEL SECURITY with the parent's policies (queries through `{}` keep \
                     working), or exempt it with a reason",
                    child.qualified,
                    dbenv::unquote_ident(&child.ancestor)
                ),
                carrier: Carrier::Relation(child.oid),
                opened_by_conversion: self.opened(&child.owner, &child.schema, false)
                    || self.opened(&child.ancestor_owner, &child.ancestor_schema, false),
            });
        }
        paths
    }
}
