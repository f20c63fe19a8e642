//! Golden tests of the pure planner: a hand-built catalog snapshot in, each
//! step's summary and statements out (secrets redacted, each statement as
//! `db-provision --dry-run` prints it under its step). They document the SQL module (`roles::sql`): quoting, grants
//! before revokes, the `SET ROLE` prefix of a non-superuser admin, the
//! redaction of verifiers. `UPDATE_EXPECT=1 cargo test -p roles --test plan`
//! rewrites them after a deliberate change; review the diff.

use dbenv::{RoleKind, ServerVersion};
use expect_test::{expect, Expect};
use roles::acl::{Grantee, Privs};
use roles::scram::StoredPassword;
use roles::snapshot::{Membership, RoleAccess, RoleSetting, Schema, Snapshot};
use roles::Plan;
use testkit::snapshots::{converged, item, model, role_row, MIGRATOR, RUNTIME, SERVICE};

/// The plan as the dry run lists it, then what it refuses and warns about.
fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for step in &plan.steps {
        out.push_str(&format!("{}: {}\n", step.phase.title(), step.summary));
        for statement in &step.statements {
            out.push_str(&format!("    {statement};\n"));
        }
    }
    for refusal in &plan.refusals {
        out.push_str(&format!("refused: {refusal}\n"));
    }
    for warning in &plan.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    if out.is_empty() {
        out.push_str("nothing to change\n");
    }
    out
}

fn check(snap: &Snapshot, model: &roles::Model, expected: Expect) {
    expected.assert_eq(&render(&roles::plan(model, snap)));
}

/// A new cluster: only the admin, no app database; the database part is
/// `template1`'s (PostgreSQL 15: `public` owned by `pg_database_owner`).
fn fresh(model: &roles::Model) -> Snapshot {
    let mut snap = converged(model);
    snap.roles.clear();
    snap.database = None;
    snap.db = Default::default();
    snap.db.schemas = vec![Schema {
        name: "public".into(),
        owner: "pg_database_owner".into(),
        acl: vec![
            item(Grantee::role("pg_database_owner"), "pg_database_owner", Privs::from_letters("UC"), Privs::NONE),
            item(Grantee::Public, "pg_database_owner", Privs::from_letters("U"), Privs::NONE),
        ],
    }];
    snap
}

#[test]
fn a_fresh_cluster_gets_the_three_roles_the_database_and_its_grants() {
    let model = model(&["public"]);
    check(
        &fresh(&model),
        &model,
        expect![[r#"
        roles: create migrator role `app_migrator` (LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS)
            CREATE ROLE "app_migrator" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS PASSWORD '***';
            COMMENT ON ROLE "app_migrator" IS 'created by cargo xtask db-provision';
        roles: create runtime role `app_user` (LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS)
            CREATE ROLE "app_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '***';
            COMMENT ON ROLE "app_user" IS 'created by cargo xtask db-provision';
        roles: create service role `app_service` (LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS)
            CREATE ROLE "app_service" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS PASSWORD '***';
            COMMENT ON ROLE "app_service" IS 'created by cargo xtask db-provision';
        create database: create database `app` owned by `app_migrator`
            CREATE DATABASE "app" OWNER "app_migrator";
        database: access to database `app`: grant CONNECT to app_user, grant CONNECT to app_service, revoke CONNECT, TEMPORARY from PUBLIC
            GRANT CONNECT ON DATABASE "app" TO "app_user";
            GRANT CONNECT ON DATABASE "app" TO "app_service";
            REVOKE CONNECT, TEMPORARY ON DATABASE "app" FROM PUBLIC CASCADE;
        schemas: owner of schema `public`: `pg_database_owner` → `app_migrator`; access to schema `public`: grant USAGE to app_user, grant USAGE to app_service
            ALTER SCHEMA "public" OWNER TO "app_migrator";
            GRANT USAGE ON SCHEMA "public" TO "app_user";
            GRANT USAGE ON SCHEMA "public" TO "app_service";
        schemas: create schema `drizzle` owned by `app_migrator`
            CREATE SCHEMA "drizzle" AUTHORIZATION "app_migrator";
        default privileges: default privileges for sequences created by `app_migrator` in schema `public`: grant SELECT, USAGE to app_user, grant SELECT, USAGE to app_service
            ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "public" GRANT SELECT, USAGE ON SEQUENCES TO "app_user";
            ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "public" GRANT SELECT, USAGE ON SEQUENCES TO "app_service";
        default privileges: default privileges for tables created by `app_migrator` in schema `public`: grant SELECT, INSERT, UPDATE, DELETE to app_user, grant SELECT, INSERT, UPDATE, DELETE to app_service
            ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "public" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "app_user";
            ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "public" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "app_service";
    "#]],
    );
}

#[test]
fn a_converged_database_plans_nothing() {
    let model = model(&["public"]);
    check(
        &converged(&model),
        &model,
        expect![[r#"
        nothing to change
    "#]],
    );
}

#[test]
fn a_table_the_runtime_role_owns_moves_to_the_migrator_with_its_grants_in_one_step() {
    let model = model(&["public"]);
    let mut snap = converged(&model);
    let users = snap.db.relations.iter_mut().find(|r| r.name == "users").unwrap();
    users.owner = RUNTIME.into();
    users.acl = vec![item(Grantee::role(RUNTIME), RUNTIME, Privs::from_letters("arwdDxt"), Privs::NONE)];
    check(
        &snap,
        &model,
        expect![[r#"
        ownership: owner of table `public.users`: `app_user` → `app_migrator` (grants restored)
            ALTER TABLE "public"."users" OWNER TO "app_migrator";
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."users" TO "app_user";
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."users" TO "app_service";
    "#]],
    );
}

#[test]
fn role_drift_is_undone_and_passwords_are_shown_redacted() {
    let mut model = model(&["public"]);
    model.confirmed.take_over = vec![RUNTIME.into()];
    let mut snap = converged(&model);
    let runtime = snap.roles.get_mut(RUNTIME).unwrap();
    runtime.createdb = true;
    runtime.password = StoredPassword::Md5;
    snap.roles.get_mut(SERVICE).unwrap().password = StoredPassword::Absent;
    snap.memberships.push(Membership {
        role: "pg_read_all_data".into(),
        member: RUNTIME.into(),
        grantor: "postgres".into(),
        admin_option: false,
    });
    snap.settings.push(RoleSetting {
        role: Some(RUNTIME.into()),
        database: None,
        name: "row_security".into(),
        value: "off".into(),
    });
    check(
        &snap,
        &model,
        expect![[r#"
        roles: set attributes of `app_user`: NOCREATEDB
            ALTER ROLE "app_user" WITH NOCREATEDB;
        roles: `app_user`: md5 hash replaced by a SCRAM verifier
            ALTER ROLE "app_user" WITH PASSWORD '***';
        roles: `app_service`: password set (there was none)
            ALTER ROLE "app_service" WITH PASSWORD '***';
        roles: default of role `app_user` removed: row_security = off: every query of `app_user` on an RLS table fails ("query would be affected by row-level security policy")
            ALTER ROLE "app_user" RESET "row_security";
        roles: remove membership of `app_user` in `pg_read_all_data`
            REVOKE "pg_read_all_data" FROM "app_user" CASCADE;
    "#]],
    );
}

#[test]
fn a_non_superuser_admin_grants_as_the_owner_and_gives_itself_the_membership_it_may() {
    let model = model(&["public"]);
    let mut snap = converged(&model);
    snap.server_version = ServerVersion::major_release(16);
    snap.admin.superuser = false;
    snap.admin.createrole = true;
    snap.admin.access.insert(MIGRATOR.into(), RoleAccess { usage: false, set: false, admin: true });
    for kind in RoleKind::ALL {
        snap.admin.access.entry(kind.default_name().into()).or_insert(RoleAccess {
            usage: true,
            set: true,
            admin: true,
        });
    }
    let users = snap.db.relations.iter_mut().find(|r| r.name == "users").unwrap();
    users.acl.retain(|i| i.grantee != Grantee::role(SERVICE));
    snap.roles.insert(SERVICE.into(), role_row(RoleKind::Service));
    check(
        &snap,
        &model,
        expect![[r#"
        roles: `postgres` may act as `app_migrator` (membership for the admin, not the app)
            GRANT "app_migrator" TO "postgres" WITH INHERIT TRUE, SET TRUE;
        database: access to database `app`: grant CONNECT to postgres
            SET ROLE "app_migrator"; GRANT CONNECT ON DATABASE "app" TO "postgres";
        grants: grant SELECT, INSERT, UPDATE, DELETE to app_service: table `public.users`
            SET ROLE "app_migrator"; GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."users" TO "app_service";
    "#]],
    );
}
