//! The catalog audit (spec §6): a pure function of the model, the snapshot
//! the provisioner also reads, the exemptions and the bookkeeping status.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use roles::drift::{self, qualified, Check, Drift};
use roles::reach::{self, PathClass, State};
use roles::snapshot::{Relation, Snapshot};
use roles::{wants, Model};

use crate::checks::CheckId;
use crate::exemptions::{Exemptions, Kind};
use crate::policies::Policy;
use crate::report::{CheckSummary, Verdict};

/// Every catalog check. `bookkeeping` is the Drizzle status when it could be
/// read, or why not. The model's checks render [`drift`] (the reading
/// `db-provision` plans from); the rest are the audit's alone.
pub fn audit(
    model: &Model,
    snap: &Snapshot,
    exemptions: &Exemptions,
    policy_rows: &[Policy],
    roots: &Roots,
    bookkeeping: Result<Vec<String>, String>,
    used: &mut BTreeSet<(Kind, String)>,
) -> Vec<CheckSummary> {
    let drift = drift::drift(model, snap);
    // A `[[private]]` entry does its work wherever its relation exists: the
    // table ACL check expects nothing there for its roles.
    for entry in exemptions.entries.iter().filter(|e| e.kind == Kind::Private) {
        if snap.db.relations.iter().any(|r| qualified(r) == entry.name) {
            used.insert((Kind::Private, entry.name.clone()));
        }
    }
    let mut checks = model_checks(model, snap, &drift);
    let mut exempt_or_fail = |check: &mut CheckSummary, kind: Kind, subject: String, message: String| match exemptions
        .find(kind, &subject)
    {
        Some(exemption) => {
            used.insert((kind, exemption.name.clone()));
            check.note(Verdict::Exempt, subject, format!("{message}; exempted: {}", exemption.reason));
        }
        None => check.fail(subject, message),
    };
    checks.push(rls_policies(snap, exemptions, &mut exempt_or_fail));
    checks.push(rls_tenancy(model, snap, exemptions, roots, &mut exempt_or_fail));
    checks.extend(owners_rights(model, snap, &mut exempt_or_fail));
    checks.push(crate::policies::check(model, &snap.db, policy_rows, exemptions, used));
    checks.push(role_settings(model, snap, &drift, policy_rows));
    checks.push(drift_check(Check::SchemaCreate, snap.db.other_schemas.len(), &drift));
    checks.push(foreign_data(snap, &drift));
    checks.push(other_databases(&drift));
    checks.push(drizzle_bookkeeping(bookkeeping));
    checks
}

/// A check that fails once per drift item of its kind.
fn drift_check(check: Check, checked: usize, drift: &[Drift]) -> CheckSummary {
    let mut summary = CheckSummary::new(CheckId::Model(check));
    summary.checked = checked;
    for item in drift.iter().filter(|d| d.check() == check) {
        if item.is_missing_grant() {
            summary.fail_missing_grant(item.subject(), item.to_string());
        } else {
            summary.fail(item.subject(), item.to_string());
        }
    }
    summary
}

/// The checks of the model itself, from role attributes to default
/// privileges, in report order.
fn model_checks(model: &Model, snap: &Snapshot, drift: &[Drift]) -> Vec<CheckSummary> {
    let db = &snap.db;
    let app = |schema: &str| model.is_app_schema(schema);
    let relations = |check: Check| db.relations.iter().filter(|r| drift::relation_check(model, r) == check).count();
    let bookkeeping = db.schemas.iter().filter(|s| !app(&s.name)).count() + relations(Check::BookkeepingAccess);
    vec![
        roles_check(model, drift),
        drift_check(Check::Memberships, model.roles().len(), drift),
        owners_check(model, snap, drift),
        drift_check(Check::StraySchemas, drift.iter().filter(|d| d.check() == Check::StraySchemas).count(), drift),
        drift_check(Check::DatabaseAcl, usize::from(snap.database.is_some()), drift),
        drift_check(Check::SchemaAcl, db.schemas.iter().filter(|s| app(&s.name)).count(), drift),
        drift_check(Check::TableAcl, relations(Check::TableAcl), drift),
        drift_check(Check::SequenceAcl, relations(Check::SequenceAcl), drift),
        drift_check(Check::ColumnAcl, db.columns.len(), drift),
        drift_check(Check::BookkeepingAccess, bookkeeping, drift),
        drift_check(Check::DefaultPrivileges, default_rows_checked(model, snap), drift),
    ]
}

/// One row per role: what it has and lacks of the model's attributes.
fn roles_check(model: &Model, drift: &[Drift]) -> CheckSummary {
    let mut check = CheckSummary::new(CheckId::Model(Check::Roles));
    check.checked = model.roles().len();
    for spec in model.roles() {
        let items: Vec<&Drift> =
            drift.iter().filter(|d| d.check() == Check::Roles && d.subject() == spec.name).collect();
        if !items.is_empty() {
            check.fail(&spec.name, items.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
        }
    }
    check
}

/// Ownership, plus a note for each app schema the migrations have not
/// created yet.
fn owners_check(model: &Model, snap: &Snapshot, drift: &[Drift]) -> CheckSummary {
    let managed = model.managed_schemas();
    let objects = snap.db.objects.iter().filter(|o| drift::owner_checked(model, o));
    let checked = 1 + managed.len() + snap.db.relations.len() + objects.count();
    let mut check = drift_check(Check::Owners, checked, drift);
    for schema in managed.iter().filter(|s| drift::left_to_migrations(model, snap, s)) {
        let why = "does not exist yet: the migrations create it (`cargo xtask db-migrate`)";
        check.note(Verdict::NotApplicable, schema.as_str(), why);
    }
    check
}

/// How many default-privilege rows the check reads: the migrator's wanted
/// rows in schemas that exist, and every other row.
fn default_rows_checked(model: &Model, snap: &Snapshot) -> usize {
    let wanted = wants::default_rows(model);
    let schemas = &snap.db.schemas;
    let wanted_existing = wanted
        .iter()
        .filter(|(schema, _)| schema.as_ref().is_none_or(|s| schemas.iter().any(|h| h.name == *s)))
        .count();
    let others = snap
        .db
        .default_acls
        .iter()
        .filter(|row| !(row.role == model.migrator.name && wanted.contains(&(row.schema.clone(), row.objtype))));
    wanted_existing + others.count()
}

type ExemptOrFail<'a> = dyn FnMut(&mut CheckSummary, Kind, String, String) + 'a;

fn is_table(rel: &Relation) -> bool {
    rel.kind.is_table()
}

fn not_applicable(check: &mut CheckSummary, exemptions: &Exemptions) {
    check.note(
        Verdict::NotApplicable,
        "rls",
        format!("not applicable: the app declares no RLS ({})", exemptions.source_text()),
    )
}

fn rls_policies(snap: &Snapshot, exemptions: &Exemptions, exempt_or_fail: &mut ExemptOrFail<'_>) -> CheckSummary {
    let mut policies = CheckSummary::new(CheckId::RlsPolicies);
    if !exemptions.rls.enabled {
        not_applicable(&mut policies, exemptions);
        return policies;
    }
    for rel in snap.db.relations.iter().filter(|r| is_table(r) && r.policies > 0) {
        policies.checked += 1;
        if !rel.rls_enabled {
            exempt_or_fail(
                &mut policies,
                Kind::Table,
                qualified(rel),
                format!("has {} policies but RLS is disabled: they do nothing", rel.policies),
            );
        }
    }
    policies
}

/// Declared roots that do not exist: unproven, not failed (a pending
/// migration may create them; the report's notes name the entries too).
fn missing_roots(tenancy: &mut CheckSummary, missing: &[String], exemptions: &Exemptions) {
    for name in missing {
        tenancy.note(
            Verdict::Unproven,
            name.clone(),
            format!(
                "declared as a tenant root in {}, but no such table exists in the app schemas (a pending migration \
                 may create it): tenancy from it is unproven",
                exemptions.source_text()
            ),
        );
    }
}

fn rls_tenancy(
    model: &Model,
    snap: &Snapshot,
    exemptions: &Exemptions,
    roots: &Roots,
    exempt_or_fail: &mut ExemptOrFail<'_>,
) -> CheckSummary {
    let db = &snap.db;
    let mut tenancy = CheckSummary::new(CheckId::RlsTenancy);
    if !exemptions.rls.enabled {
        not_applicable(&mut tenancy, exemptions);
        if let Some(rel) = db.relations.iter().find(|r| r.rls_enabled && model.is_app_schema(&r.schema)) {
            tenancy.note(
                Verdict::NotApplicable,
                qualified(rel),
                "has RLS although the policy file says the app uses none; it is not checked",
            );
        }
        return tenancy;
    }
    match roots {
        Roots::Found { tables, how, missing } => {
            tenancy.note(Verdict::Pass, "tenant roots", how.clone());
            missing_roots(&mut tenancy, missing, exemptions);
            let by_oid: BTreeMap<i64, &Relation> = db.relations.iter().map(|r| (r.oid, r)).collect();
            for root in tables {
                tenancy_from(root, db, model, &by_oid, &mut tenancy, exempt_or_fail);
            }
        }
        Roots::Missing(missing) if !db.relations.iter().any(|r| model.is_app_schema(&r.schema) && is_table(r)) => {
            tenancy.note(
                Verdict::NotApplicable,
                "tenant roots",
                format!("{} not created yet: no table in the app schemas (migrations pending?)", missing.join(", ")),
            )
        }
        Roots::Missing(missing) => missing_roots(&mut tenancy, missing, exemptions),
        Roots::None(why) => tenancy.note(Verdict::Unproven, "tenant roots", why.clone()),
    }
    tenancy
}

fn drizzle_bookkeeping(bookkeeping: Result<Vec<String>, String>) -> CheckSummary {
    let mut drizzle = CheckSummary::new(CheckId::Bookkeeping);
    match bookkeeping {
        Ok(problems) => {
            drizzle.checked = 1;
            for problem in problems {
                drizzle.fail("drizzle", problem);
            }
        }
        Err(why) => drizzle.note(Verdict::NotApplicable, "drizzle", why),
    }
    drizzle
}

/// Owner's-rights paths (`roles::reach`) as they are: views and
/// materialized views, rules, definer functions, children without RLS.
fn owners_rights(model: &Model, snap: &Snapshot, exempt_or_fail: &mut ExemptOrFail<'_>) -> Vec<CheckSummary> {
    let reach = &snap.db.reach;
    let mut views = CheckSummary::new(CheckId::ViewsOverRls);
    views.checked = reach.objects.iter().filter(|o| o.rule.is_none()).count();
    let mut rules = CheckSummary::new(CheckId::Rules);
    rules.checked = reach.objects.iter().filter(|o| o.rule.is_some()).count();
    let mut definers = CheckSummary::new(CheckId::SecurityDefiner);
    definers.checked = reach.definers.len();
    let mut children = CheckSummary::new(CheckId::RlsChildren);
    children.checked = reach.children.len();
    for path in reach::paths(model, &snap.db, State::AsIs, snap.server_version) {
        let check = match path.class {
            PathClass::View | PathClass::MaterializedView => &mut views,
            PathClass::Rule => &mut rules,
            PathClass::DefinerFunction => &mut definers,
            PathClass::UnprotectedChild => &mut children,
        };
        exempt_or_fail(check, path.class.exemption(), path.subject, format!("{}; fix: {}", path.message, path.fix));
    }
    vec![views, rules, definers, children]
}

/// Role and database defaults that break or weaken the model for the
/// runtime roles (drift), and defaults of any setting the policies read (the
/// audit's alone: the snapshot does not know the policies).
fn role_settings(model: &Model, snap: &Snapshot, drift: &[Drift], policies: &[Policy]) -> CheckSummary {
    let mut check = drift_check(Check::RoleSettings, snap.settings.len(), drift);
    let read_by_policies: BTreeSet<String> =
        policies.iter().flat_map(|p| p.settings_read()).map(|s| s.to_ascii_lowercase()).collect();
    for setting in &snap.settings {
        if drift.iter().any(|d| matches!(d, Drift::Setting { setting: s, .. } if s == setting)) {
            continue;
        }
        let runtime = setting.role.as_deref().is_none_or(|r| r == model.runtime.name);
        if runtime && read_by_policies.contains(&setting.name.to_ascii_lowercase()) {
            check.fail(
                drift::setting_place(setting),
                format!(
                    "{} = '{}' by default, and the RLS policies read it: a session that sets nothing acts with it; \
                     remove it (`{}`)",
                    setting.name,
                    setting.value,
                    drift::setting_place(setting).replacen(" SET ", " RESET ", 1)
                ),
            );
        }
    }
    check
}

/// USAGE on foreign-data wrappers and servers lets a role create servers and
/// user mappings; user mappings of the runtime roles are listed.
fn foreign_data(snap: &Snapshot, drift: &[Drift]) -> CheckSummary {
    let mut check = drift_check(Check::ForeignData, snap.db.foreign.len(), drift);
    for (server, user) in &snap.db.user_mappings {
        check.note(
            Verdict::Residual,
            format!("user mapping {user}@{server}"),
            "the mapped remote credentials are used for the foreign tables the role may read",
        );
    }
    check
}

/// Databases and tablespaces the runtime roles own elsewhere in the cluster;
/// what other databases contain is out of this check's scope.
fn other_databases(drift: &[Drift]) -> CheckSummary {
    let owned = drift.iter().filter(|d| d.check() == Check::OtherDatabases).count();
    let mut check = drift_check(Check::OtherDatabases, owned, drift);
    check.note(
        Verdict::NotApplicable,
        "scope",
        "objects inside other databases of the cluster are not checked here; run db-check against each app database",
    );
    check
}

/// The tables tenancy hangs from, and how they were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// `schema.name` of each root table, and a sentence saying why.
    Found { tables: Vec<String>, how: String, missing: Vec<String> },
    /// Declared roots that do not exist.
    Missing(Vec<String>),
    /// None found: why, and what to declare.
    None(String),
}

impl Roots {
    /// The first root, for the live proof.
    pub fn first(&self) -> Option<&str> {
        match self {
            Roots::Found { tables, .. } => tables.first().map(String::as_str),
            _ => None,
        }
    }
}

/// Whether a table's name says it holds the users (or accounts) of a
/// multi-tenant app: `users`, `user`, `accounts`, `account`, or a
/// prefixed `<app>_user` as better-auth writes it.
pub fn looks_like_user_table(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "users" | "user" | "accounts" | "account")
        || name.ends_with("_user")
        || name.ends_with("_users")
}

/// The tenant roots: declared in the policy file, or the table named like a
/// user table that most foreign keys reference, or none (said, never a
/// silent pass).
pub fn tenant_roots(model: &Model, snap: &Snapshot, rls: &roles::exemptions::RlsDeclaration) -> Roots {
    let db = &snap.db;
    let tables: Vec<&Relation> =
        db.relations.iter().filter(|r| r.kind.is_table() && model.is_app_schema(&r.schema)).collect();
    if !rls.tenant_roots.is_empty() {
        let (found, missing): (Vec<String>, Vec<String>) =
            rls.tenant_roots.iter().cloned().partition(|root| tables.iter().any(|t| qualified(t) == *root));
        if found.is_empty() {
            return Roots::Missing(missing);
        }
        // The roots that exist are checked; each missing one is unproven.
        return Roots::Found {
            how: format!("declared in the policy file: {}", found.join(", ")),
            tables: found,
            missing,
        };
    }
    let uses_rls = tables.iter().any(|t| t.rls_enabled || t.policies > 0);
    if !uses_rls {
        return Roots::None(
            "no table of the app schemas uses RLS, so no tenancy was checked; if the app uses none by design, say \
             `[rls] enabled = false` in the policy file (platform/db/rls-policy.toml)"
                .to_string(),
        );
    }
    let referenced = |oid: i64| db.foreign_keys.iter().filter(|(from, to)| *to == oid && *from != oid).count();
    let best = tables
        .iter()
        .filter(|t| looks_like_user_table(&t.name))
        .max_by_key(|t| (referenced(t.oid), t.rls_enabled, std::cmp::Reverse(qualified(t))));
    match best {
        Some(root) => Roots::Found {
            missing: Vec::new(),
            tables: vec![qualified(root)],
            how: format!(
                "took `{}` as the tenant root: it is named like a user table and {} foreign keys reference it; \
                 declare `[rls] tenant_roots` in the policy file to make it certain",
                qualified(root),
                referenced(root.oid)
            ),
        },
        None => Roots::None(
            "no table looks like the tenant root (users, user, accounts, <prefix>_user), so no tenancy through foreign \
             keys was checked; declare `[rls] tenant_roots` in the policy file"
                .to_string(),
        ),
    }
}

/// RLS on every table that reaches `root` through foreign keys.
fn tenancy_from(
    root: &str,
    db: &roles::snapshot::DbContents,
    model: &Model,
    by_oid: &BTreeMap<i64, &Relation>,
    tenancy: &mut CheckSummary,
    exempt_or_fail: &mut ExemptOrFail<'_>,
) {
    let Some(root_rel) = db.relations.iter().find(|r| qualified(r) == root) else { return };
    let mut referencing: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (from, to) in &db.foreign_keys {
        referencing.entry(*to).or_default().push(*from);
    }
    let mut reach: BTreeMap<i64, Option<i64>> = BTreeMap::from([(root_rel.oid, None)]);
    let mut queue = VecDeque::from([root_rel.oid]);
    while let Some(target) = queue.pop_front() {
        for from in referencing.get(&target).into_iter().flatten() {
            if !reach.contains_key(from) {
                reach.insert(*from, Some(target));
                queue.push_back(*from);
            }
        }
    }
    for (oid, via) in &reach {
        let Some(rel) = by_oid.get(oid).filter(|r| r.kind.is_table() && model.is_app_schema(&r.schema)) else {
            continue;
        };
        tenancy.checked += 1;
        if !rel.rls_enabled {
            let path = via
                .and_then(|v| by_oid.get(&v))
                .map(|v| format!(" (references `{}`)", qualified(v)))
                .unwrap_or_default();
            exempt_or_fail(
                tenancy,
                Kind::Table,
                qualified(rel),
                format!(
                    "reaches `{}`{path} but has no row-level security: every tenant's rows are visible",
                    root_rel.name
                ),
            );
        }
    }
}
