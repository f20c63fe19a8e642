//! The logins of a role, so that its password can be rotated without
//! downtime (`cargo xtask db-rotate`, docs/runbooks/rotate-credentials.md).
//!
//! PostgreSQL keeps one password per role, so each of the three roles gets
//! two logins used in turn: the role itself, as `db-provision` makes it,
//! and `<role>_alt`. The role keeps its name and everything that is its
//! (attributes, ownership, grants, default privileges, policies, settings;
//! PostgreSQL applies the login's session defaults, not the role's, so the
//! role's own defaults do not reach the alternate login's sessions);
//! the alternate login owns nothing, holds no grant and starts every
//! session as the role:
//!
//! - `ALTER ROLE <role>_alt SET role = '<role>'`: `current_user` is the role
//!   from the first statement, so RLS bypass, the owner of new objects and
//!   default privileges are the role's (PostgreSQL decides all three by the
//!   current role); `session_user` is the login. `RESET ROLE` and
//!   `DISCARD ALL` (a pooler's reset) return to the role.
//! - The login reaches the role through a gate, `<role>_logins`: a
//!   NOLOGIN, NOINHERIT role that is a member of the role and holds CONNECT
//!   on the app database (checked at connection time against the login,
//!   before the session becomes the role). The login inherits the gate, so
//!   it may connect, and may SET ROLE through it; the gate does not inherit
//!   the role (its NOINHERIT attribute before 16, `INHERIT FALSE` on the
//!   membership since), so after `SET ROLE NONE` the login holds CONNECT and
//!   nothing else: it can do nothing as itself that its role cannot.
//!
//! Nothing here is owned by or granted to a login: the gate's one grant is
//! CONNECT on the app database, and [`RoleLogins::problems`] checks every
//! shared dependency of both.

use std::fmt;

use anyhow::{Context, Result};
use dbenv::{Secret, ServerVersion};
use postgres::types::Type;
use postgres::Client;

use crate::acl::{Grantee, CONNECT};
use crate::sql::{Change, MemberOptions};

/// The comment on a gate `db-rotate` made.
pub const GATE_MARKER: &str = "gate of the logins of a role, made by cargo xtask db-rotate";
/// The comment on a login `db-rotate` made.
pub const LOGIN_MARKER: &str = "login of a role, made by cargo xtask db-rotate";

/// A role's attributes as its alternate login and gate must not have them:
/// everything a login needs comes from the role it becomes.
const NO_POWERS: &str = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

/// The names around one role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginNames {
    pub role: String,
    /// `<role>_logins`: what the alternate login enters through.
    pub gate: String,
    /// `<role>_alt`: the role's second login.
    pub alt: String,
}

/// A role name too long to have an alternate login (PostgreSQL names are at
/// most 63 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTooLong {
    pub role: String,
}

impl fmt::Display for NameTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "role `{}` is {} bytes long: its logins' gate `{}` would pass PostgreSQL's 63-byte limit; \
             rotation needs a role name of at most {} bytes",
            self.role,
            self.role.len(),
            dbenv::logins_gate(&self.role),
            dbenv::MAX_ROTATABLE_ROLE_LEN
        )
    }
}

impl std::error::Error for NameTooLong {}

impl LoginNames {
    pub fn of(role: &str) -> Result<LoginNames, NameTooLong> {
        if role.len() > dbenv::MAX_ROTATABLE_ROLE_LEN {
            return Err(NameTooLong { role: role.to_string() });
        }
        Ok(LoginNames { role: role.to_string(), gate: dbenv::logins_gate(role), alt: dbenv::alt_login(role) })
    }

    /// The two logins, the role's own first.
    pub fn logins(&self) -> [&str; 2] {
        [&self.role, &self.alt]
    }

    /// The login that is not `login`.
    pub fn other(&self, login: &str) -> &str {
        if login == self.alt {
            &self.role
        } else {
            &self.alt
        }
    }
}

/// One of the catalog rows read for a role's logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRow {
    pub name: String,
    pub login: bool,
    /// SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS it holds.
    pub powers: Vec<&'static str>,
    pub comment: String,
    /// The roles it is a member of (`… WITH ADMIN OPTION` when it may
    /// grant them).
    pub member_of: Vec<String>,
    /// The roles that are members of it, but superusers and CREATEROLE
    /// roles (the cluster's administrators, who could make themselves
    /// members anyway).
    pub members: Vec<String>,
    /// Its session defaults, `database:name=value` (no database: every
    /// database).
    pub settings: Vec<String>,
    /// Its privileges on databases, `database:PRIVILEGE` (`… WITH GRANT
    /// OPTION`).
    pub database_grants: Vec<String>,
    /// Its shared dependencies (`pg_shdepend`: owned objects, grants,
    /// policies, initial privileges) in every database, as `catalog:type`.
    pub dependencies: Vec<String>,
    /// May it SET ROLE to the role (directly or through the gate)?
    pub can_set_role: bool,
    /// Does it hold the role's privileges without SET ROLE?
    pub inherits_role: bool,
    /// May it connect to the app database (as itself, before any SET ROLE)?
    pub can_connect: bool,
}

/// What the catalog says about one role's logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleLogins {
    pub names: LoginNames,
    /// The app database, whose CONNECT the gate holds.
    pub database: String,
    pub role: Option<LoginRow>,
    pub gate: Option<LoginRow>,
    pub alt: Option<LoginRow>,
}

/// What is wrong with a role's gate or alternate login: each is an error
/// before any change, and a finding of `db-check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A role of that name exists and `db-rotate` did not make it.
    NotOurs { name: String },
    /// It holds an attribute that would reach past its role.
    Power { name: String, power: &'static str },
    /// The gate can log in.
    GateLogin { name: String },
    /// It is a member of another role than the one it leads to.
    MemberOf { name: String, role: String },
    /// Another role than its login (or the admin) is a member of it.
    Member { name: String, member: String },
    /// It owns an object, holds a grant or is named in a policy or default
    /// privileges (`pg_shdepend`).
    Depends { name: String, dependency: String },
    /// The login does not start its sessions as the role.
    Setting { name: String, settings: Vec<String> },
    /// It holds the role's privileges without SET ROLE.
    Inherits { name: String },
    /// The login cannot SET ROLE to the role.
    CannotBecome { name: String },
    /// The login cannot connect to the app database.
    CannotConnect { name: String },
    /// The gate holds more on a database than CONNECT on the app database.
    DatabaseGrant { name: String, grants: Vec<String> },
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::NotOurs { name } => write!(
                f,
                "a role named `{name}` exists and db-rotate did not make it: rename or drop it (after checking \
                 what uses it), or give the role another name"
            ),
            Shape::Power { name, power } => write!(f, "`{name}` has {power}: a login gets its powers from its role"),
            Shape::GateLogin { name } => write!(f, "`{name}` can log in; it is a gate, never a login"),
            Shape::MemberOf { name, role } => {
                write!(f, "`{name}` is a member of `{role}`: it may act as a role that is not its own")
            }
            Shape::Member { name, member } => write!(
                f,
                "`{member}` is a member of `{name}` and may act as it; only its logins may (REVOKE \"{name}\" FROM \"{member}\")"
            ),
            Shape::Depends { name, dependency } => {
                write!(
                    f,
                    "`{name}` owns or holds something ({dependency} in pg_shdepend); a login owns and holds nothing"
                )
            }
            Shape::Setting { name, settings } => {
                write!(f, "`{name}` does not start its sessions as its role (its settings: {settings:?})")
            }
            Shape::Inherits { name } => write!(f, "`{name}` holds its role's privileges without SET ROLE"),
            Shape::CannotBecome { name } => write!(f, "`{name}` cannot SET ROLE to its role"),
            Shape::CannotConnect { name } => write!(f, "`{name}` cannot connect to the app database"),
            Shape::DatabaseGrant { name, grants } => write!(
                f,
                "`{name}` holds {grants:?} on databases; a gate holds CONNECT on the app database and nothing else"
            ),
        }
    }
}

impl RoleLogins {
    /// Reads the rows of the role, its gate and its alternate login.
    pub fn read(client: &mut Client, names: &LoginNames, database: &str) -> Result<RoleLogins> {
        let version = ServerVersion::read(client)?;
        let mut all = RoleLogins::read_all(client, version, std::slice::from_ref(names), database)?;
        Ok(all.remove(0))
    }

    /// [`RoleLogins::read`] for several roles, in one query.
    pub fn read_all(
        client: &mut Client,
        version: ServerVersion,
        roles: &[LoginNames],
        database: &str,
    ) -> Result<Vec<RoleLogins>> {
        // Since 16 SET ROLE is its own option of a membership.
        let set = if version.has_membership_options() { "SET" } else { "MEMBER" };
        let (mut names, mut leads_to) = (Vec::new(), Vec::new());
        for role in roles {
            for name in [&role.role, &role.gate, &role.alt] {
                names.push(name.clone());
                leads_to.push(role.role.clone());
            }
        }
        let sql = format!(
            "SELECT r.rolname::text, r.rolcanlogin, \
                    ARRAY_REMOVE(ARRAY[CASE WHEN r.rolsuper THEN 'SUPERUSER' END, \
                        CASE WHEN r.rolcreatedb THEN 'CREATEDB' END, CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, \
                        CASE WHEN r.rolreplication THEN 'REPLICATION' END, \
                        CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END], NULL), \
                    coalesce(shobj_description(r.oid, 'pg_authid'), ''), \
                    ARRAY(SELECT g.rolname::text || CASE WHEN m.admin_option THEN ' WITH ADMIN OPTION' ELSE '' END \
                          FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                          WHERE m.member = r.oid ORDER BY 1), \
                    ARRAY(SELECT DISTINCT u.rolname::text FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member \
                          WHERE m.roleid = r.oid AND NOT (u.rolsuper OR u.rolcreaterole) ORDER BY 1), \
                    ARRAY(SELECT coalesce(db.datname::text, '') || ':' || c FROM pg_db_role_setting s \
                          LEFT JOIN pg_database db ON db.oid = s.setdatabase CROSS JOIN LATERAL unnest(s.setconfig) c \
                          WHERE s.setrole = r.oid ORDER BY 1), \
                    ARRAY(SELECT d.datname::text || ':' || a.privilege_type \
                                 || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END \
                          FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a WHERE a.grantee = r.oid \
                          ORDER BY 1), \
                    ARRAY(SELECT d.classid::regclass::text || ':' || d.deptype::text FROM pg_shdepend d \
                          WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid AND d.deptype <> 'p' \
                          ORDER BY 1), \
                    pg_has_role(r.oid, n.role, '{set}'), \
                    r.rolname <> n.role AND pg_has_role(r.oid, n.role, 'USAGE'), \
                    has_database_privilege(r.oid, $3, 'CONNECT') \
             FROM unnest($1::text[], $2::text[]) AS n(name, role) JOIN pg_roles r ON r.rolname = n.name"
        );
        let rows = client
            .query_typed(&sql, &[(&names, Type::TEXT_ARRAY), (&leads_to, Type::TEXT_ARRAY), (&database, Type::TEXT)])
            .context("read the logins of the roles")?;
        let mut all: Vec<RoleLogins> = roles
            .iter()
            .map(|names| RoleLogins {
                names: names.clone(),
                database: database.to_string(),
                role: None,
                gate: None,
                alt: None,
            })
            .collect();
        for row in rows {
            let powers: Vec<String> = row.get(2);
            let login = LoginRow {
                name: row.get(0),
                login: row.get(1),
                powers: powers.iter().filter_map(|p| power(p)).collect(),
                comment: row.get(3),
                member_of: row.get(4),
                members: row.get(5),
                settings: row.get(6),
                database_grants: row.get(7),
                dependencies: row.get(8),
                can_set_role: row.get(9),
                inherits_role: row.get(10),
                can_connect: row.get(11),
            };
            for logins in &mut all {
                let names = &logins.names;
                let slot = if login.name == names.gate {
                    &mut logins.gate
                } else if login.name == names.alt {
                    &mut logins.alt
                } else if login.name == names.role {
                    &mut logins.role
                } else {
                    continue;
                };
                *slot = Some(login.clone());
            }
        }
        Ok(all)
    }

    /// What is wrong with the gate and the alternate login, if they exist.
    /// `admin`: the role that made them, which PostgreSQL 16+ makes a member
    /// of what a non-superuser creates.
    pub fn problems(&self, admin: &str) -> Vec<Shape> {
        let names = &self.names;
        let mut found = Vec::new();
        // A role db-rotate did not make is named as that, and nothing more.
        let mut ours = |row: &&LoginRow, marker: &str| {
            let ours = row.comment == marker;
            if !ours {
                found.push(Shape::NotOurs { name: row.name.clone() });
            }
            ours
        };
        let gate = self.gate.as_ref().filter(|gate| ours(gate, GATE_MARKER));
        let alt = self.alt.as_ref().filter(|alt| ours(alt, LOGIN_MARKER));
        // Nobody acts as the role but through its gate.
        if let Some(role) = &self.role {
            for member in role.members.iter().filter(|m| **m != names.gate && *m != admin) {
                found.push(Shape::Member { name: role.name.clone(), member: member.clone() });
            }
        }
        if let Some(gate) = gate {
            found.extend(common(gate, &names.role, &[names.alt.as_str(), admin]));
            if gate.login {
                found.push(Shape::GateLogin { name: gate.name.clone() });
            }
            // Its one grant: CONNECT on the app database.
            if gate.database_grants != [format!("{}:CONNECT", self.database)] {
                found.push(Shape::DatabaseGrant { name: gate.name.clone(), grants: gate.database_grants.clone() });
            }
            for dependency in gate.dependencies.iter().filter(|d| *d != "pg_database:a") {
                found.push(Shape::Depends { name: gate.name.clone(), dependency: dependency.clone() });
            }
            if !gate.settings.is_empty() {
                found.push(Shape::Setting { name: gate.name.clone(), settings: gate.settings.clone() });
            }
        }
        if let Some(alt) = alt {
            found.extend(common(alt, &names.gate, &[admin]));
            for dependency in &alt.dependencies {
                found.push(Shape::Depends { name: alt.name.clone(), dependency: dependency.clone() });
            }
            if alt.settings != [format!(":role={}", names.role)] {
                found.push(Shape::Setting { name: alt.name.clone(), settings: alt.settings.clone() });
            }
            if !alt.can_connect {
                found.push(Shape::CannotConnect { name: alt.name.clone() });
            }
        }
        found
    }

    /// The changes that make `standby` a login of the role with `verifier`
    /// as its password: the gate and the alternate login when they are
    /// missing, else LOGIN and the password.
    pub fn prepare(&self, standby: &str, verifier: Secret, database: &str, version: ServerVersion) -> Vec<Change> {
        let names = &self.names;
        let options = |inherit| version.has_membership_options().then_some(MemberOptions { inherit, set: true });
        let mut changes = Vec::new();
        if standby == names.alt && self.gate.is_none() {
            changes.extend([
                Change::CreateGroup { role: names.gate.clone(), attributes: format!("NOLOGIN NOINHERIT {NO_POWERS}") },
                Change::CommentRole { role: names.gate.clone(), comment: GATE_MARKER.into() },
                Change::GrantMembership {
                    role: names.role.clone(),
                    member: names.gate.clone(),
                    options: options(false),
                },
                Change::grant("DATABASE", vec![dbenv::quote_ident(database)], CONNECT, Grantee::role(&names.gate)),
            ]);
        }
        if standby == names.alt && self.alt.is_none() {
            changes.extend([
                Change::CreateRole {
                    role: names.alt.clone(),
                    attributes: format!("LOGIN INHERIT {NO_POWERS}"),
                    verifier,
                },
                Change::CommentRole { role: names.alt.clone(), comment: LOGIN_MARKER.into() },
                Change::GrantMembership { role: names.gate.clone(), member: names.alt.clone(), options: options(true) },
                Change::SetRoleDefault { role: names.alt.clone(), setting: "role".into(), value: names.role.clone() },
            ]);
        } else {
            changes.extend([
                Change::SetAttributes { role: standby.to_string(), attributes: "LOGIN".into() },
                Change::SetPassword { role: standby.to_string(), verifier },
            ]);
        }
        changes
    }

    /// The changes that retire `login`: no LOGIN, no password. It keeps
    /// everything else (the role keeps what is its).
    pub fn retire(login: &str) -> Vec<Change> {
        vec![
            Change::SetAttributes { role: login.to_string(), attributes: "NOLOGIN".into() },
            Change::ClearPassword { role: login.to_string() },
        ]
    }
}

/// What the gate and the login share: no powers, one membership (in
/// `leads_to`), no member but `allowed`, the role's privileges only through
/// SET ROLE.
fn common(row: &LoginRow, leads_to: &str, allowed: &[&str]) -> Vec<Shape> {
    let name = || row.name.clone();
    let mut found: Vec<Shape> = row.powers.iter().map(|power| Shape::Power { name: name(), power }).collect();
    for role in row.member_of.iter().filter(|r| *r != leads_to) {
        found.push(Shape::MemberOf { name: name(), role: role.clone() });
    }
    for member in row.members.iter().filter(|m| !allowed.contains(&m.as_str())) {
        found.push(Shape::Member { name: name(), member: member.clone() });
    }
    if row.inherits_role {
        found.push(Shape::Inherits { name: name() });
    }
    if !row.can_set_role {
        found.push(Shape::CannotBecome { name: name() });
    }
    found
}

fn power(keyword: &str) -> Option<&'static str> {
    ["SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"].into_iter().find(|p| *p == keyword)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_their_limit() {
        let names = LoginNames::of("app_user").unwrap();
        assert_eq!((names.gate.as_str(), names.alt.as_str()), ("app_user_logins", "app_user_alt"));
        assert_eq!(names.other("app_user"), "app_user_alt");
        assert_eq!(names.other("app_user_alt"), "app_user");
        assert!(LoginNames::of(&"r".repeat(56)).is_ok());
        assert_eq!(LoginNames::of(&"r".repeat(57)), Err(NameTooLong { role: "r".repeat(57) }));
    }

    #[test]
    fn the_first_rotation_makes_the_gate_and_the_login_and_spells_no_secret() {
        let logins = RoleLogins {
            names: LoginNames::of("app_user").unwrap(),
            database: "app".into(),
            role: None,
            gate: None,
            alt: None,
        };
        let verifier = Secret::new("SCRAM-SHA-256$4096:c2FsdA==$a:b");
        let v16 = ServerVersion::from_num(160_004);
        let sql: Vec<String> =
            logins.prepare("app_user_alt", verifier.clone(), "app", v16).iter().map(Change::to_string).collect();
        assert_eq!(
            sql,
            [
                r#"CREATE ROLE "app_user_logins" WITH NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"#,
                r#"COMMENT ON ROLE "app_user_logins" IS 'gate of the logins of a role, made by cargo xtask db-rotate'"#,
                r#"GRANT "app_user" TO "app_user_logins" WITH INHERIT FALSE, SET TRUE"#,
                r#"GRANT CONNECT ON DATABASE "app" TO "app_user_logins""#,
                r#"CREATE ROLE "app_user_alt" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '***'"#,
                r#"COMMENT ON ROLE "app_user_alt" IS 'login of a role, made by cargo xtask db-rotate'"#,
                r#"GRANT "app_user_logins" TO "app_user_alt" WITH INHERIT TRUE, SET TRUE"#,
                r#"ALTER ROLE "app_user_alt" SET "role" = 'app_user'"#,
            ]
        );
        let v15 = ServerVersion::from_num(150_008);
        let sql: Vec<String> =
            logins.prepare("app_user_alt", verifier, "app", v15).iter().map(Change::to_string).collect();
        assert_eq!(sql[2], r#"GRANT "app_user" TO "app_user_logins""#, "before 16 the gate's NOINHERIT decides");
    }
}
