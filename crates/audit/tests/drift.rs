//! The pure core without a server: hand-built snapshots for each kind of
//! drift, and a property over generated snapshots: no drift ⇔ the plan has
//! nothing to change or refuse ⇔ the catalog checks that read drift pass.

use std::collections::BTreeSet;

use audit::catalog::{audit, Roots};
use audit::checks::CheckId;
use audit::report::{CheckSummary, Verdict};
use dbenv::RoleKind;
use proptest::prelude::*;
use roles::acl::{AclItem, Grantee, Privs};
use roles::drift::{drift, Check, Drift, Remedy};
use roles::kinds::DefaultObjects;
use roles::model::{Attribute, Model};
use roles::snapshot::{
    Database, DefaultAcl, ForeignObject, Membership, OwnedObject, RoleSetting, Schema, Snapshot, Tablespace,
};
use roles::Refusal;
use roles::{plan, Exemptions, Plan};

use testkit::snapshots::{converged, item, model, MIGRATOR, RUNTIME, SERVICE};

/// The audit's checks that read drift, by id.
fn drift_checks(model: &Model, snap: &Snapshot) -> Vec<CheckSummary> {
    let ids: BTreeSet<CheckId> = Check::ALL.into_iter().map(CheckId::Model).collect();
    let roots = Roots::None("none".into());
    let mut used = BTreeSet::new();
    let all = audit(model, snap, &Exemptions::default(), &[], &roots, Err("not read".into()), &mut used);
    all.into_iter().filter(|c| ids.contains(&c.id)).collect()
}

fn failed(checks: &[CheckSummary]) -> Vec<String> {
    checks
        .iter()
        .flat_map(|c| {
            c.findings.iter().filter(|f| f.verdict == Verdict::Fail).map(move |f| format!("{}: {}", c.id, f.subject))
        })
        .collect()
}

fn changes_or_refuses(plan: &Plan) -> bool {
    !plan.steps.is_empty() || !plan.refusals.is_empty()
}

#[test]
fn a_converged_snapshot_has_no_drift_an_empty_plan_and_passing_checks() {
    for schemas in [&["public"][..], &["public", "app"]] {
        let model = model(schemas);
        let snap = converged(&model);
        assert_eq!(drift(&model, &snap), Vec::new());
        let plan = plan(&model, &snap);
        assert!(plan.steps.is_empty() && plan.refusals.is_empty() && plan.warnings.is_empty(), "{plan:#?}");
        assert_eq!(failed(&drift_checks(&model, &snap)), Vec::<String>::new());
    }
}

/// One hand-built case per kind of drift: the item, its check, and what the
/// plan does about it.
struct Case {
    name: &'static str,
    change: fn(&mut Snapshot),
    check: Check,
    remedy: Remedy,
}

fn runtime_item(privs: &str) -> AclItem {
    item(Grantee::role(RUNTIME), MIGRATOR, Privs::from_letters(privs), Privs::NONE)
}

const CASES: &[Case] = &[
    Case {
        name: "missing role",
        change: |s| drop(s.roles.remove(SERVICE)),
        check: Check::Roles,
        remedy: Remedy::Change,
    },
    Case {
        name: "attribute",
        change: |s| s.roles.get_mut(RUNTIME).unwrap().bypassrls = true,
        check: Check::Roles,
        remedy: Remedy::Change,
    },
    Case {
        name: "membership",
        change: |s| {
            s.memberships.push(Membership {
                role: "pg_read_all_data".into(),
                member: RUNTIME.into(),
                grantor: "postgres".into(),
                admin_option: false,
            })
        },
        check: Check::Memberships,
        remedy: Remedy::Change,
    },
    Case { name: "missing database", change: |s| s.database = None, check: Check::Owners, remedy: Remedy::Change },
    Case {
        name: "missing bookkeeping schema",
        change: |s| s.db.schemas.retain(|x| x.name != "drizzle"),
        check: Check::Owners,
        remedy: Remedy::Change,
    },
    Case {
        name: "relation owner",
        change: |s| s.db.relations[0].owner = RUNTIME.into(),
        check: Check::Owners,
        remedy: Remedy::Change,
    },
    Case {
        name: "function owner",
        change: |s| {
            s.db.objects.push(OwnedObject {
                catalog: "pg_proc".into(),
                oid: 99,
                owner: RUNTIME.into(),
                kind: "function".into(),
                schema: Some("public".into()),
                identity: "public.tenant()".into(),
                acl: None,
                security_definer: false,
            })
        },
        check: Check::Owners,
        remedy: Remedy::Change,
    },
    Case {
        name: "stray schema",
        change: |s| s.db.other_schemas.push(Schema { name: "extra".into(), owner: MIGRATOR.into(), acl: Vec::new() }),
        check: Check::StraySchemas,
        remedy: Remedy::Refuse,
    },
    Case {
        name: "database acl",
        change: |s| {
            // After the "missing database" case there is no database to grant on.
            if let Some(db) = s.database.as_mut() {
                db.acl.push(item(Grantee::Public, MIGRATOR, Privs::from_letters("Tc"), Privs::NONE))
            }
        },
        check: Check::DatabaseAcl,
        remedy: Remedy::Change,
    },
    Case {
        name: "schema acl",
        change: |s| s.db.schemas[0].acl.push(item(Grantee::Public, MIGRATOR, Privs::from_letters("C"), Privs::NONE)),
        check: Check::SchemaAcl,
        remedy: Remedy::Change,
    },
    Case {
        name: "table acl",
        change: |s| s.db.relations[0].acl.push(runtime_item("D")),
        check: Check::TableAcl,
        remedy: Remedy::Change,
    },
    Case {
        name: "grant option",
        change: |s| {
            let acl = &mut s.db.relations[0].acl;
            acl.retain(|i| i.grantee != Grantee::role(RUNTIME));
            acl.push(item(Grantee::role(RUNTIME), MIGRATOR, Privs::from_letters("arwd"), Privs::from_letters("r")));
        },
        check: Check::TableAcl,
        remedy: Remedy::Change,
    },
    Case {
        name: "sequence acl",
        change: |s| s.db.relations[1].acl.retain(|i| i.grantee != Grantee::role(SERVICE)),
        check: Check::SequenceAcl,
        remedy: Remedy::Change,
    },
    Case {
        name: "column acl",
        change: |s| {
            s.db.columns.push(roles::snapshot::ColumnAcl {
                table_oid: 10,
                column: "email".into(),
                acl: vec![runtime_item("x")],
            })
        },
        check: Check::ColumnAcl,
        remedy: Remedy::Change,
    },
    Case {
        name: "bookkeeping access",
        change: |s| s.db.relations[2].acl.push(runtime_item("r")),
        check: Check::BookkeepingAccess,
        remedy: Remedy::Change,
    },
    Case {
        name: "migrator default privileges",
        change: |s| s.db.default_acls.retain(|d| d.objtype != DefaultObjects::Sequences),
        check: Check::DefaultPrivileges,
        remedy: Remedy::Change,
    },
    Case {
        name: "runtime role's default privileges",
        change: |s| {
            s.db.default_acls.push(DefaultAcl {
                role: RUNTIME.into(),
                schema: Some("public".into()),
                objtype: DefaultObjects::Tables,
                acl: vec![item(Grantee::role(SERVICE), RUNTIME, Privs::from_letters("arwd"), Privs::NONE)],
                builtin: Vec::new(),
            })
        },
        check: Check::DefaultPrivileges,
        remedy: Remedy::Change,
    },
    Case {
        name: "runtime role's defaults for every schema, PUBLIC's EXECUTE taken away",
        change: |s| {
            let own = item(Grantee::role(RUNTIME), RUNTIME, Privs::from_letters("X"), Privs::NONE);
            let public = item(Grantee::Public, RUNTIME, Privs::from_letters("X"), Privs::NONE);
            s.db.default_acls.push(DefaultAcl {
                role: RUNTIME.into(),
                schema: None,
                objtype: DefaultObjects::Functions,
                acl: vec![own.clone()],
                builtin: vec![own, public],
            })
        },
        check: Check::DefaultPrivileges,
        remedy: Remedy::Change,
    },
    Case {
        name: "another role's default privileges to a runtime role",
        change: |s| {
            s.db.default_acls.push(DefaultAcl {
                role: "postgres".into(),
                schema: None,
                objtype: DefaultObjects::Tables,
                acl: vec![item(Grantee::role(RUNTIME), "postgres", Privs::from_letters("r"), Privs::NONE)],
                builtin: Vec::new(),
            })
        },
        check: Check::DefaultPrivileges,
        remedy: Remedy::Change,
    },
    Case {
        name: "another role's default privileges to PUBLIC",
        change: |s| {
            s.db.default_acls.push(DefaultAcl {
                role: "postgres".into(),
                schema: None,
                objtype: DefaultObjects::Tables,
                acl: vec![item(Grantee::Public, "postgres", Privs::from_letters("r"), Privs::NONE)],
                builtin: Vec::new(),
            })
        },
        check: Check::DefaultPrivileges,
        remedy: Remedy::Warn,
    },
    Case {
        name: "role setting",
        change: |s| {
            s.settings.push(RoleSetting {
                role: Some(RUNTIME.into()),
                database: None,
                name: "row_security".into(),
                value: "off".into(),
            })
        },
        check: Check::RoleSettings,
        remedy: Remedy::Change,
    },
    Case {
        name: "database setting",
        change: |s| {
            s.settings.push(RoleSetting {
                role: None,
                database: Some("app".into()),
                name: "app.current_user_id".into(),
                value: "1".into(),
            })
        },
        check: Check::RoleSettings,
        remedy: Remedy::Change,
    },
    Case {
        name: "setting for every role everywhere",
        change: |s| {
            s.settings.push(RoleSetting {
                role: None,
                database: None,
                name: "session_replication_role".into(),
                value: "replica".into(),
            })
        },
        check: Check::RoleSettings,
        remedy: Remedy::Warn,
    },
    Case {
        name: "CREATE on another schema",
        change: |s| {
            s.db.other_schemas.push(Schema {
                name: "scratch".into(),
                owner: "postgres".into(),
                acl: vec![item(Grantee::Public, "postgres", Privs::from_letters("UC"), Privs::NONE)],
            })
        },
        check: Check::SchemaCreate,
        remedy: Remedy::Change,
    },
    Case {
        name: "foreign server for a runtime role",
        change: |s| {
            s.db.foreign.push(ForeignObject {
                keyword: "FOREIGN SERVER",
                name: "remote".into(),
                owner: "postgres".into(),
                acl: vec![item(Grantee::role(SERVICE), "postgres", Privs::from_letters("U"), Privs::NONE)],
            })
        },
        check: Check::ForeignData,
        remedy: Remedy::Change,
    },
    Case {
        name: "foreign-data wrapper for PUBLIC",
        change: |s| {
            s.db.foreign.push(ForeignObject {
                keyword: "FOREIGN DATA WRAPPER",
                name: "postgres_fdw".into(),
                owner: "postgres".into(),
                acl: vec![item(Grantee::Public, "postgres", Privs::from_letters("U"), Privs::NONE)],
            })
        },
        check: Check::ForeignData,
        remedy: Remedy::Warn,
    },
    Case {
        name: "another database",
        change: |s| s.other_databases.push(Database { name: "side".into(), owner: RUNTIME.into(), acl: Vec::new() }),
        check: Check::OtherDatabases,
        remedy: Remedy::Warn,
    },
    Case {
        name: "a tablespace",
        change: |s| s.tablespaces.push(Tablespace { name: "fast".into(), owner: SERVICE.into(), acl: Vec::new() }),
        check: Check::OtherDatabases,
        remedy: Remedy::Warn,
    },
];

#[test]
fn each_kind_of_drift_is_planned_and_fails_its_check() {
    let model = model(&["public"]);
    for case in CASES {
        let mut snap = converged(&model);
        (case.change)(&mut snap);
        let drift = drift(&model, &snap);
        assert!(!drift.is_empty(), "{}: no drift", case.name);
        for item in &drift {
            assert_eq!(item.check(), case.check, "{}: {item:?}", case.name);
            assert_eq!(item.remedy(&model), case.remedy, "{}: {item:?}", case.name);
            assert!(!item.to_string().is_empty() && !item.subject().is_empty());
        }
        let plan = plan(&model, &snap);
        match case.remedy {
            Remedy::Change => assert!(!plan.steps.is_empty(), "{}: no step in {plan:#?}", case.name),
            Remedy::Refuse => assert!(!plan.refusals.is_empty(), "{}: no refusal in {plan:#?}", case.name),
            Remedy::Warn => {
                assert!(!changes_or_refuses(&plan) && !plan.warnings.is_empty(), "{}: {plan:#?}", case.name)
            }
        }
        let failures = failed(&drift_checks(&model, &snap));
        assert!(!failures.is_empty(), "{}: the audit passes", case.name);
        assert!(failures.iter().all(|f| f.starts_with(case.check.id())), "{}: {failures:?}", case.name);
    }
}

#[test]
fn a_stray_schema_the_migrator_owns_is_refused_by_the_plan_and_failed_by_the_audit() {
    let model = model(&["public"]);
    let mut snap = converged(&model);
    snap.db.other_schemas.push(Schema { name: "reports".into(), owner: MIGRATOR.into(), acl: Vec::new() });
    let plan = plan(&model, &snap);
    assert!(plan.steps.is_empty(), "{plan:#?}");
    assert_eq!(plan.refusals.len(), 1, "{plan:#?}");
    assert_eq!(plan.refusals[0], Refusal::StraySchema { schema: "reports".into(), owner: MIGRATOR.into() });
    assert_eq!(failed(&drift_checks(&model, &snap)), vec!["stray-schemas: reports".to_string()]);
}

/// Every statement of the plan, as `--dry-run` prints it.
fn statements(plan: &Plan) -> Vec<String> {
    plan.steps.iter().flat_map(|step| step.statements.iter().map(|sql| sql.to_string())).collect()
}

#[test]
fn a_server_a_runtime_role_owns_moves_and_its_old_owner_is_not_revoked_from_afterwards() {
    let model = model(&["public"]);
    let mut snap = converged(&model);
    snap.db.foreign.push(ForeignObject {
        keyword: "FOREIGN SERVER",
        name: "warehouse".into(),
        owner: RUNTIME.into(),
        acl: vec![item(Grantee::role(RUNTIME), RUNTIME, Privs::from_letters("U"), Privs::NONE)],
    });
    snap.db.objects.push(OwnedObject {
        catalog: "pg_foreign_server".into(),
        oid: 77,
        owner: RUNTIME.into(),
        kind: "server".into(),
        schema: None,
        identity: "warehouse".into(),
        acl: None,
        security_definer: false,
    });
    let sql = statements(&plan(&model, &snap));
    assert_eq!(sql, vec!["ALTER SERVER warehouse OWNER TO \"app_migrator\"".to_string()]);
}

#[test]
fn a_schema_made_by_the_plan_starts_from_the_migrators_defaults_for_schemas() {
    let model = model(&["public"]);
    let mut snap = converged(&model);
    snap.db.schemas.retain(|s| s.name != "drizzle");
    let own = item(Grantee::role(MIGRATOR), MIGRATOR, Privs::from_letters("UC"), Privs::NONE);
    snap.db.default_acls.push(DefaultAcl {
        role: MIGRATOR.into(),
        schema: None,
        objtype: DefaultObjects::Schemas,
        acl: vec![own.clone(), item(Grantee::Public, MIGRATOR, Privs::from_letters("UC"), Privs::NONE)],
        builtin: vec![own],
    });
    let sql = statements(&plan(&model, &snap));
    assert_eq!(
        sql,
        vec![
            "CREATE SCHEMA \"drizzle\" AUTHORIZATION \"app_migrator\"".to_string(),
            "REVOKE USAGE, CREATE ON SCHEMA \"drizzle\" FROM PUBLIC CASCADE".to_string(),
        ]
    );
}

// ---- the property ----

/// Privileges that matter on one kind of object.
fn privs_from(letters: &'static str) -> impl Strategy<Value = Privs> {
    proptest::collection::vec(proptest::sample::select(letters.chars().collect::<Vec<_>>()), 0..3)
        .prop_map(|chosen| Privs::from_letters(&chosen.into_iter().collect::<String>()))
}

fn grantee() -> impl Strategy<Value = Grantee> {
    prop_oneof![
        Just(Grantee::Public),
        Just(Grantee::role(RUNTIME)),
        Just(Grantee::role(SERVICE)),
        Just(Grantee::role(MIGRATOR)),
    ]
}

/// An extra ACL entry, or the removal of one.
#[derive(Clone, Debug)]
enum AclEdit {
    Add(Grantee, Privs, bool),
    Remove(usize),
}

fn acl_edit(letters: &'static str) -> impl Strategy<Value = AclEdit> {
    prop_oneof![
        (grantee(), privs_from(letters), any::<bool>()).prop_map(|(g, p, o)| AclEdit::Add(g, p, o)),
        (0usize..4).prop_map(AclEdit::Remove),
    ]
}

fn apply(acl: &mut Vec<AclItem>, edit: &AclEdit, grantor: &str) {
    match edit {
        AclEdit::Add(_, privs, _) if privs.is_empty() => {}
        AclEdit::Add(grantee, privs, option) => {
            acl.push(item(grantee.clone(), grantor, *privs, if *option { *privs } else { Privs::NONE }))
        }
        AclEdit::Remove(i) if *i < acl.len() => drop(acl.remove(*i)),
        AclEdit::Remove(_) => {}
    }
}

/// Where a generated edit lands.
#[derive(Clone, Debug)]
enum Edit {
    /// One case of [`CASES`], by index.
    Case(usize),
    Database(AclEdit),
    Schema(usize, AclEdit),
    Relation(usize, AclEdit),
    Owner(usize, usize),
    Attribute(usize, usize),
    DefaultRow(usize, AclEdit),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..CASES.len()).prop_map(Edit::Case),
        acl_edit("CTc").prop_map(Edit::Database),
        (0usize..2, acl_edit("UC")).prop_map(|(i, e)| Edit::Schema(i, e)),
        (0usize..3, acl_edit("arwdDxtU")).prop_map(|(i, e)| Edit::Relation(i, e)),
        (0usize..3, 0usize..4).prop_map(|(i, o)| Edit::Owner(i, o)),
        (0usize..3, 0usize..6).prop_map(|(r, a)| Edit::Attribute(r, a)),
        (0usize..2, acl_edit("arwdDxtU")).prop_map(|(i, e)| Edit::DefaultRow(i, e)),
    ]
}

fn edit_snapshot(snap: &mut Snapshot, edit: &Edit) {
    let owners = [MIGRATOR, RUNTIME, SERVICE, "postgres"];
    match edit {
        Edit::Case(i) => (CASES[*i].change)(snap),
        Edit::Database(e) => {
            if let Some(db) = snap.database.as_mut() {
                apply(&mut db.acl, e, MIGRATOR)
            }
        }
        Edit::Schema(i, e) => {
            if let Some(s) = snap.db.schemas.get_mut(*i) {
                apply(&mut s.acl, e, MIGRATOR)
            }
        }
        Edit::Relation(i, e) => {
            if let Some(r) = snap.db.relations.get_mut(*i) {
                let owner = r.owner.clone();
                apply(&mut r.acl, e, &owner)
            }
        }
        Edit::Owner(i, o) => {
            if let Some(r) = snap.db.relations.get_mut(*i) {
                r.owner = owners[*o].into()
            }
        }
        Edit::Attribute(r, a) => {
            if let Some(row) = snap.roles.get_mut(RoleKind::ALL[*r].default_name()) {
                match Attribute::ALL[*a] {
                    Attribute::Login => row.login = !row.login,
                    Attribute::Superuser => row.superuser = !row.superuser,
                    Attribute::CreateDb => row.createdb = !row.createdb,
                    Attribute::CreateRole => row.createrole = !row.createrole,
                    Attribute::Replication => row.replication = !row.replication,
                    Attribute::BypassRls => row.bypassrls = !row.bypassrls,
                }
            }
        }
        Edit::DefaultRow(i, e) => {
            if let Some(d) = snap.db.default_acls.get_mut(*i) {
                let role = d.role.clone();
                apply(&mut d.acl, e, &role)
            }
        }
    }
}

/// The property itself, for one model and one edited snapshot.
fn the_three_readings_agree(model: &Model, snap: &Snapshot) -> Result<(), TestCaseError> {
    let drift: Vec<Drift> = drift(model, snap);
    let plan = plan(model, snap);
    let failures = failed(&drift_checks(model, snap));
    prop_assert_eq!(drift.is_empty(), failures.is_empty(), "drift {:?} failures {:?}", drift, failures);
    let fixable = drift.iter().any(|d| d.remedy(model) != Remedy::Warn);
    prop_assert_eq!(fixable, changes_or_refuses(&plan), "drift {:?} plan {:#?}", drift, plan);
    if !drift.is_empty() && !fixable {
        prop_assert!(!plan.warnings.is_empty(), "drift {:?} named nowhere in {:#?}", drift, plan);
    }
    if drift.is_empty() {
        prop_assert!(plan.warnings.is_empty(), "{:#?}", plan);
    }
    Ok(())
}

/// Every ordered pair of hand-built cases, on both models: the
/// combinations the random search reaches only now and then (a database
/// gone, then an ACL on it) are all tried on every run.
#[test]
fn every_pair_of_cases_keeps_the_three_readings_in_agreement() {
    for schemas in [&["public"][..], &["public", "app"]] {
        let model = model(schemas);
        for (first, second) in CASES.iter().flat_map(|a| CASES.iter().map(move |b| (a, b))) {
            let mut snap = converged(&model);
            (first.change)(&mut snap);
            (second.change)(&mut snap);
            if let Err(e) = the_three_readings_agree(&model, &snap) {
                panic!("{} then {}: {e}", first.name, second.name);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// No drift ⇔ nothing for the plan to change or refuse ⇔ the checks
    /// pass; drift the plan leaves alone is always named in a warning.
    #[test]
    fn no_drift_iff_empty_plan_iff_the_checks_pass(edits in proptest::collection::vec(edit(), 0..4), app in any::<bool>()) {
        let model = model(if app { &["public", "app"] } else { &["public"] });
        let mut snap = converged(&model);
        for edit in &edits {
            edit_snapshot(&mut snap, edit);
        }
        the_three_readings_agree(&model, &snap)?;
    }
}
