//! Name rules for roles, databases and schemas, and SQL quoting.
//!
//! Names come from env files and end up inside SQL, so they are validated
//! once at the edge (the upstream `provision.sh` rule, `^[a-zA-Z0-9_]+$`) and
//! still always quoted when they reach a statement.

use anyhow::{bail, Result};

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Role names PostgreSQL reserves; `CREATE ROLE` refuses them.
const RESERVED_ROLE_NAMES: &[&str] = &["public", "none", "current_user", "session_user", "current_role"];

/// Databases that are never an app's: the templates.
const SYSTEM_DATABASES: &[&str] = &["template0", "template1"];

/// The cluster's maintenance database: an app database only on purpose
/// (provisioning asks for `--allow-postgres-database`).
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// What a name names, for the rules that differ and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Role,
    Database,
    Schema,
    Table,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Role => "role name",
            NameKind::Database => "database name",
            NameKind::Schema => "schema name",
            NameKind::Table => "table name",
        }
    }
}

/// Checks `value` (read from `variable`) against the name rules: ASCII
/// letters, digits and `_`, at most 63 bytes, not starting with `pg_`.
pub fn validate_name(variable: &str, kind: NameKind, value: &str) -> Result<()> {
    let noun = kind.noun();
    if value.is_empty() {
        bail!("{variable} is empty; set it to a {noun} such as `app_user`");
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        bail!(
            "{variable}: {noun} `{}` contains {bad:?}; use only ASCII letters, digits and `_` \
             (the rule ^[a-zA-Z0-9_]+$)",
            value.escape_debug()
        );
    }
    if value.len() > MAX_IDENTIFIER_BYTES {
        bail!(
            "{variable}: {noun} `{value}` is {} bytes long; PostgreSQL keeps at most {MAX_IDENTIFIER_BYTES}, \
             so shorten it",
            value.len()
        );
    }
    if value.to_ascii_lowercase().starts_with("pg_") {
        bail!("{variable}: {noun} `{value}` starts with `pg_`, which PostgreSQL reserves; pick another name");
    }
    if kind == NameKind::Role && RESERVED_ROLE_NAMES.contains(&value.to_ascii_lowercase().as_str()) {
        bail!("{variable}: `{value}` is reserved by PostgreSQL and cannot be a role name; pick another name");
    }
    // The templates every new database is copied from, and the SQL-standard
    // catalog schema: provisioning them would change every database made
    // afterwards, or PostgreSQL's own catalog views.
    if kind == NameKind::Database && SYSTEM_DATABASES.contains(&value.to_ascii_lowercase().as_str()) {
        bail!(
            "{variable}: `{value}` is a template database PostgreSQL copies into every new database; give the app \
             a database of its own"
        );
    }
    if kind == NameKind::Schema && value.eq_ignore_ascii_case("information_schema") {
        bail!("{variable}: `{value}` is PostgreSQL's own catalog schema; list the app's schemas only");
    }
    Ok(())
}

/// Quotes an identifier for SQL (`"name"`, doubling inner quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A name as the server prints it (`"public"."we""ird"`, `public.users`)
/// back to its plain spelling (`public.we"ird`): for reports, exemption
/// names and lookups.
pub fn unquote_ident(quoted: &str) -> String {
    let mut out = String::new();
    let mut chars = quoted.chars().peekable();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if inside && chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            '"' => inside = !inside,
            _ => out.push(c),
        }
    }
    out
}

/// Quotes a string literal for SQL with standard-conforming strings
/// (`'text'`, doubling inner quotes). Backslashes are literal with
/// `standard_conforming_strings = on`, the default since 9.1; callers that
/// cannot rely on it use `E''` themselves.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The suffix of a role's alternate login (`app_user` → `app_user_alt`):
/// the second login `db-rotate` gives each role.
pub const ALT_LOGIN_SUFFIX: &str = "_alt";

/// The alternate login of `role`.
pub fn alt_login(role: &str) -> String {
    format!("{role}{ALT_LOGIN_SUFFIX}")
}

/// The suffix of the gate role through which a role's logins reach it
/// (`app_user` → `app_user_logins`).
pub const LOGINS_GATE_SUFFIX: &str = "_logins";

/// The gate of `role`'s logins.
pub fn logins_gate(role: &str) -> String {
    format!("{role}{LOGINS_GATE_SUFFIX}")
}

/// The longest role name that has logins: its gate must fit PostgreSQL's
/// 63-byte names.
pub const MAX_ROTATABLE_ROLE_LEN: usize = MAX_IDENTIFIER_BYTES - LOGINS_GATE_SUFFIX.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_what_quote_ident_quotes() {
        assert_eq!(unquote_ident("\"public\".\"events_p0\""), "public.events_p0");
        assert_eq!(unquote_ident("public.\"we\"\"ird\""), "public.we\"ird");
        for name in ["plain", "we\"ird", "a.b", "\"\"", "Mixed Case"] {
            assert_eq!(unquote_ident(&quote_ident(name)), name);
        }
    }

    #[test]
    fn accepts_the_upstream_names() {
        for name in ["app_user", "app_service", "app_migrator", "cogni_template_dev", "A1_b2"] {
            validate_name("X", NameKind::Role, name).unwrap();
        }
    }

    #[test]
    fn rejects_names_outside_the_rules_and_names_the_variable() {
        let cases: &[(&str, NameKind, &str)] = &[
            ("", NameKind::Role, "APP_DB_USER is empty"),
            ("app-user", NameKind::Role, "contains '-'"),
            ("app user", NameKind::Role, "contains ' '"),
            ("app\"user", NameKind::Role, "contains '\"'"),
            ("appé", NameKind::Role, "contains 'é'"),
            ("pg_app", NameKind::Role, "starts with `pg_`"),
            ("PG_app", NameKind::Database, "starts with `pg_`"),
            ("public", NameKind::Role, "reserved"),
            ("Current_User", NameKind::Role, "reserved"),
            ("template1", NameKind::Database, "template database"),
            ("Template0", NameKind::Database, "template database"),
            ("information_schema", NameKind::Schema, "catalog schema"),
        ];
        for (value, kind, expected) in cases {
            let error = validate_name("APP_DB_USER", *kind, value).unwrap_err().to_string();
            assert!(error.contains(expected), "{value:?}: {error}");
            assert!(error.starts_with("APP_DB_USER"), "{value:?}: {error}");
        }
        let long = "a".repeat(64);
        let error = validate_name("APP_DB_NAME", NameKind::Database, &long).unwrap_err().to_string();
        assert!(error.contains("64 bytes"), "{error}");
        validate_name("APP_DB_NAME", NameKind::Database, &"a".repeat(63)).unwrap();
        // `public` is a fine schema name; only roles reserve it.
        validate_name("APP_DB_SCHEMAS", NameKind::Schema, "public").unwrap();
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
