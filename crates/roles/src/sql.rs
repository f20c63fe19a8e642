//! The one place the changes of the model are spelled as SQL. The planner
//! (`plan/`) and the migration runner's grants (`drizzle::grants`) say
//! *what* changes as a [`Change`]; this module says how PostgreSQL reads it:
//! quoting, the merged grants a transaction sends ([`merge_grants`]), the
//! `SET ROLE` prefix of a statement run as another role, and the redaction
//! of secrets by variant (a password's verifier never reaches `Display`).

use std::fmt;
use std::time::Duration;

use dbenv::{quote_ident, quote_literal, Secret};

use crate::acl::{AclChange, Grantee, Privs};
use crate::snapshot::ROLE_MARKER;

/// Objects one GRANT statement names at most.
pub const OBJECTS_PER_GRANT: usize = 500;

/// One change to the cluster or the database. Names are plain (quoted
/// here) unless a field says it holds an identity as the catalog quotes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `CREATE ROLE … WITH <attributes> PASSWORD <verifier>`.
    CreateRole { role: String, attributes: String, verifier: Secret },
    /// The comment that marks a role `db-provision` created ([`ROLE_MARKER`]).
    MarkRole { role: String },
    /// `ALTER ROLE … WITH <attributes>` (`BYPASSRLS NOCREATEDB …`).
    SetAttributes { role: String, attributes: String },
    /// `ALTER ROLE … WITH PASSWORD <verifier>`.
    SetPassword { role: String, verifier: Secret },
    /// `ALTER ROLE … [IN DATABASE …] RESET <setting>`.
    ResetRoleSetting { role: String, database: Option<String>, setting: String },
    /// `ALTER DATABASE … RESET <setting>`.
    ResetDatabaseSetting { database: String, setting: String },
    /// `GRANT <role> TO <member>`, with `INHERIT TRUE, SET TRUE` spelled out
    /// where the server has membership options (16+).
    GrantMembership { role: String, member: String, options: Option<MemberOptions> },
    /// `REVOKE <role> FROM <member> [GRANTED BY …] CASCADE`.
    RevokeMembership { role: String, member: String, granted_by: Option<String> },
    /// `CREATE DATABASE … OWNER …`.
    CreateDatabase { database: String, owner: String },
    /// `CREATE SCHEMA … AUTHORIZATION …`.
    CreateSchema { schema: String, owner: String },
    /// `CREATE EXTENSION IF NOT EXISTS … CASCADE`.
    CreateExtension { extension: String },
    /// `ALTER <keyword> <object> OWNER TO <owner>`; `object` is an identity
    /// as the catalog quotes it.
    SetOwner { keyword: &'static str, object: String, owner: String },
    /// `REASSIGN OWNED BY … TO …`.
    ReassignOwned { from: Vec<String>, to: String },
    /// `ALTER VIEW <view> SET (security_invoker = true)`; `view` is quoted.
    SecurityInvoker { view: String },
    /// A grant or revoke on `objects` (quoted identities) of kind `keyword`
    /// (`TABLE`, `SEQUENCE`, `SCHEMA`, …). A grant names one grantee or
    /// more; a revoke, one.
    Acl { keyword: &'static str, objects: Vec<String>, change: AclChange, also_to: Vec<Grantee> },
    /// `REVOKE <privs> (<column>) ON TABLE <table> FROM <grantee> CASCADE`,
    /// one privilege per letter; `table` is quoted.
    RevokeColumn { table: String, column: String, privs: Privs, grantee: Grantee },
    /// `ALTER DEFAULT PRIVILEGES [FOR ROLE …] [IN SCHEMA …] <change> ON
    /// <objects>` (`TABLES`, `SEQUENCES`, …). Without `role`, the session's;
    /// `schema` is quoted.
    DefaultPrivileges { role: Option<String>, schema: Option<String>, objects: &'static str, change: AclChange },
    /// `REVOKE ALL ON TABLE <relation> FROM <role>`; `relation` is quoted.
    RevokeAll { relation: String, role: String },
    /// `CREATE SCHEMA IF NOT EXISTS …` (the migrations' bookkeeping schema).
    EnsureSchema { schema: String },
    /// `DROP DATABASE IF EXISTS … WITH (FORCE)` (`db-reset`).
    DropDatabase { database: String },
    /// A role without a password (a login's gate).
    CreateGroup { role: String, attributes: String },
    /// A role's comment (the marks `db-rotate` leaves on its logins).
    CommentRole { role: String, comment: String },
    /// A session default of a role, in every database (`ALTER ROLE … SET`).
    SetRoleDefault { role: String, setting: String, value: String },
    /// No password: nobody can log in as the role with one.
    ClearPassword { role: String },
}

impl Change {
    /// A grant of `privs` on `objects` to `grantee`.
    pub fn grant(keyword: &'static str, objects: Vec<String>, privs: Privs, grantee: Grantee) -> Change {
        Change::Acl { keyword, objects, change: AclChange::Grant { grantee, privs }, also_to: Vec::new() }
    }

    /// The SQL, secrets included: for the server only.
    fn render(&self, redact: bool) -> String {
        let q = |name: &str| quote_ident(name);
        let secret = |verifier: &Secret| if redact { "'***'".to_string() } else { quote_literal(verifier.expose()) };
        match self {
            Change::CreateRole { role, attributes, verifier } => {
                format!("CREATE ROLE {} WITH {attributes} PASSWORD {}", q(role), secret(verifier))
            }
            Change::MarkRole { role } => format!("COMMENT ON ROLE {} IS {}", q(role), quote_literal(ROLE_MARKER)),
            Change::SetAttributes { role, attributes } => format!("ALTER ROLE {} WITH {attributes}", q(role)),
            Change::SetPassword { role, verifier } => {
                format!("ALTER ROLE {} WITH PASSWORD {}", q(role), secret(verifier))
            }
            Change::ResetRoleSetting { role, database, setting } => {
                let scope = database.as_ref().map(|d| format!(" IN DATABASE {}", q(d))).unwrap_or_default();
                format!("ALTER ROLE {}{scope} RESET {}", q(role), q(setting))
            }
            Change::ResetDatabaseSetting { database, setting } => {
                format!("ALTER DATABASE {} RESET {}", q(database), q(setting))
            }
            Change::GrantMembership { role, member, options } => {
                let options = options
                    .map(|o| format!(" WITH INHERIT {}, SET {}", upper(o.inherit), upper(o.set)))
                    .unwrap_or_default();
                format!("GRANT {} TO {}{options}", q(role), q(member))
            }
            Change::CreateGroup { role, attributes } => format!("CREATE ROLE {} WITH {attributes}", q(role)),
            Change::CommentRole { role, comment } => {
                format!("COMMENT ON ROLE {} IS {}", q(role), quote_literal(comment))
            }
            Change::SetRoleDefault { role, setting, value } => {
                format!("ALTER ROLE {} SET {} = {}", q(role), q(setting), quote_literal(value))
            }
            Change::ClearPassword { role } => format!("ALTER ROLE {} WITH PASSWORD NULL", q(role)),
            Change::RevokeMembership { role, member, granted_by } => {
                let by = granted_by.as_ref().map(|g| format!(" GRANTED BY {}", q(g))).unwrap_or_default();
                format!("REVOKE {} FROM {}{by} CASCADE", q(role), q(member))
            }
            Change::CreateDatabase { database, owner } => format!("CREATE DATABASE {} OWNER {}", q(database), q(owner)),
            Change::CreateSchema { schema, owner } => format!("CREATE SCHEMA {} AUTHORIZATION {}", q(schema), q(owner)),
            Change::CreateExtension { extension } => format!("CREATE EXTENSION IF NOT EXISTS {} CASCADE", q(extension)),
            Change::SetOwner { keyword, object, owner } => format!("ALTER {keyword} {object} OWNER TO {}", q(owner)),
            Change::ReassignOwned { from, to } => {
                let from: Vec<String> = from.iter().map(|r| q(r)).collect();
                format!("REASSIGN OWNED BY {} TO {}", from.join(", "), q(to))
            }
            Change::SecurityInvoker { view } => format!("ALTER VIEW {view} SET (security_invoker = true)"),
            Change::Acl { keyword, objects, change, also_to } => {
                let on = format!("{keyword} {}", objects.join(", "));
                acl_sql(change, &on, also_to)
            }
            Change::RevokeColumn { table, column, privs, grantee } => {
                let each: Vec<String> = privs
                    .letters()
                    .chars()
                    .map(|l| format!("{} ({})", Privs::from_letters(&l.to_string()).sql(), q(column)))
                    .collect();
                format!("REVOKE {} ON TABLE {table} FROM {} CASCADE", each.join(", "), grantee.sql())
            }
            Change::DefaultPrivileges { role, schema, objects, change } => {
                let role = role.as_ref().map(|r| format!(" FOR ROLE {}", q(r))).unwrap_or_default();
                let scope = schema.as_ref().map(|s| format!(" IN SCHEMA {s}")).unwrap_or_default();
                format!("ALTER DEFAULT PRIVILEGES{role}{scope} {}", acl_sql(change, objects, &[]))
            }
            Change::RevokeAll { relation, role } => format!("REVOKE ALL ON TABLE {relation} FROM {}", q(role)),
            Change::EnsureSchema { schema } => format!("CREATE SCHEMA IF NOT EXISTS {}", q(schema)),
            Change::DropDatabase { database } => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", q(database)),
        }
    }
}

fn upper(flag: bool) -> &'static str {
    if flag {
        "TRUE"
    } else {
        "FALSE"
    }
}

/// The options of a membership since PostgreSQL 16 (before, the member's
/// INHERIT attribute decides and SET ROLE needs only the membership).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberOptions {
    pub inherit: bool,
    pub set: bool,
}

/// The one spelling of an ACL change, `on` being what follows `ON`
/// (`TABLE "public"."users"`, or `TABLES` after `ALTER DEFAULT PRIVILEGES`).
fn acl_sql(change: &AclChange, on: &str, also_to: &[Grantee]) -> String {
    match change {
        AclChange::Grant { grantee, privs } => {
            let grantees: Vec<String> = std::iter::once(grantee).chain(also_to).map(Grantee::sql).collect();
            format!("GRANT {} ON {on} TO {}", privs.sql(), grantees.join(", "))
        }
        AclChange::Revoke { grantee, privs, .. } => {
            format!("REVOKE {} ON {on} FROM {} CASCADE", privs.sql(), grantee.sql())
        }
        AclChange::RevokeGrantOption { grantee, privs, .. } => {
            format!("REVOKE GRANT OPTION FOR {} ON {on} FROM {} CASCADE", privs.sql(), grantee.sql())
        }
    }
}

impl fmt::Display for Change {
    /// The statement with secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))
    }
}

/// One statement of a plan: a change, run as the admin or under `SET ROLE`
/// (a revoke must come from the grantor; a non-superuser admin grants as
/// the owner). `Display` shows it with secrets redacted; the text with the
/// verifier is only handed to the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    pub change: Change,
    pub as_role: Option<String>,
}

impl Statement {
    pub fn new(change: Change) -> Statement {
        Statement { change, as_role: None }
    }

    pub fn run_as(mut self, role: Option<String>) -> Statement {
        self.as_role = role;
        self
    }

    /// The text for the server. Never print it.
    pub fn text(&self) -> String {
        self.change.render(false)
    }

    /// The statement as a transaction runs it: under `SET LOCAL ROLE` and
    /// back when it runs as another role, each line ended. For the server.
    pub fn in_transaction(&self) -> String {
        match &self.as_role {
            Some(role) => format!("SET LOCAL ROLE {};\n{};\nRESET ROLE;\n", quote_ident(role), self.text()),
            None => format!("{};\n", self.text()),
        }
    }

    /// `SET ROLE <role>`, for the prefix.
    pub fn set_role(&self) -> Option<String> {
        self.as_role.as_ref().map(|role| format!("SET ROLE {}", quote_ident(role)))
    }
}

impl From<Change> for Statement {
    fn from(change: Change) -> Statement {
        Statement::new(change)
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(set) = self.set_role() {
            write!(f, "{set}; ")?;
        }
        write!(f, "{}", self.change)
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Statement({self})")
    }
}

/// `SET [LOCAL] lock_timeout = '<n>ms'`: how long a statement waits for a
/// lock before it fails (55P03) rather than queue the app behind it.
pub fn lock_timeout(timeout: Duration, local: bool) -> String {
    format!("SET {}lock_timeout = '{}ms'", if local { "LOCAL " } else { "" }, timeout.as_millis())
}

/// The one place grants are merged. Grants of the same privileges to the
/// same grantee become one statement over many objects (at most
/// [`OBJECTS_PER_GRANT`]), after the rest of the transaction (after each
/// object's owner change, in the same transaction): thousands of owner
/// changes then cost a handful of GRANTs, not thousands. Grantees given the
/// same privileges on the same objects share the statement too: each
/// catalog row is then rewritten once, not per grantee. Returns the
/// statements that are not such grants, in order, and the merged GRANTs.
pub fn merge_grants<'a>(statements: &[&'a Statement]) -> (Vec<&'a Statement>, Vec<Change>) {
    let mut others = Vec::new();
    // (keyword, privs, grantee) → objects
    type Key<'k> = (&'static str, Privs, &'k Grantee);
    let mut by_grantee: Vec<(Key, Vec<String>)> = Vec::new();
    for statement in statements {
        let Change::Acl { keyword, objects, change: AclChange::Grant { grantee, privs }, also_to } = &statement.change
        else {
            others.push(*statement);
            continue;
        };
        if statement.as_role.is_some() || !also_to.is_empty() {
            others.push(*statement);
            continue;
        }
        for object in objects {
            let key = (*keyword, *privs, grantee);
            match by_grantee.iter_mut().find(|(k, o)| *k == key && o.len() < OBJECTS_PER_GRANT) {
                Some((_, objects)) => objects.push(object.clone()),
                None => by_grantee.push((key, vec![object.clone()])),
            }
        }
    }
    let mut merged: Vec<Change> = Vec::new();
    for ((keyword, privs, grantee), objects) in by_grantee {
        let same = merged.iter_mut().find_map(|change| match change {
            Change::Acl { keyword: k, objects: o, change: AclChange::Grant { privs: p, .. }, also_to }
                if *k == keyword && *p == privs && *o == objects =>
            {
                Some(also_to)
            }
            _ => None,
        });
        match same {
            Some(also_to) => also_to.push(grantee.clone()),
            None => merged.push(Change::grant(keyword, objects, privs, grantee.clone())),
        }
    }
    (others, merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{DML, USAGE};

    #[test]
    fn secrets_are_redacted_by_variant() {
        let verifier = Secret::new("SCRAM-SHA-256$4096:c2FsdA==$a:b");
        let create = Change::CreateRole { role: "app user".into(), attributes: "LOGIN".into(), verifier };
        assert_eq!(create.to_string(), r#"CREATE ROLE "app user" WITH LOGIN PASSWORD '***'"#);
        assert_eq!(
            Statement::new(create).text(),
            r#"CREATE ROLE "app user" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b'"#
        );
    }

    #[test]
    fn grants_merge_by_privileges_and_objects() {
        let a = Statement::new(Change::grant("TABLE", vec!["t1".into()], DML, Grantee::role("app_user")));
        let b = Statement::new(Change::grant("TABLE", vec!["t2".into()], DML, Grantee::role("app_user")));
        let c = Statement::new(Change::grant("TABLE", vec!["t1".into(), "t2".into()], DML, Grantee::role("svc")));
        let d = Statement::new(Change::grant("SCHEMA", vec!["s".into()], USAGE, Grantee::Public))
            .run_as(Some("Owner".into()));
        let (others, merged) = merge_grants(&[&a, &d, &b, &c]);
        assert_eq!(others, [&d]);
        let merged: Vec<String> = merged.iter().map(Change::to_string).collect();
        assert_eq!(merged, [r#"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE t1, t2 TO "app_user", "svc""#]);
        assert_eq!(d.to_string(), r#"SET ROLE "Owner"; GRANT USAGE ON SCHEMA s TO PUBLIC"#);
    }

    #[test]
    fn a_merged_grant_names_at_most_the_objects_one_statement_may() {
        let objects: Vec<String> = (0..OBJECTS_PER_GRANT + 1).map(|i| format!("t{i}")).collect();
        let chunks: Vec<Statement> = objects
            .chunks(200)
            .map(|chunk| Statement::new(Change::grant("TABLE", chunk.to_vec(), DML, Grantee::role("app_user"))))
            .collect();
        let (others, merged) = merge_grants(&chunks.iter().collect::<Vec<_>>());
        assert!(others.is_empty());
        let sizes: Vec<usize> = merged
            .iter()
            .map(|change| match change {
                Change::Acl { objects, .. } => objects.len(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(sizes, [OBJECTS_PER_GRANT, 1], "every object once, at most {OBJECTS_PER_GRANT} a statement");
    }
}
