//! What could change the meaning of an unqualified name in somebody else's
//! SQL (CVE-2018-1058's class): `search_path` defaults that put a schema
//! before `pg_catalog` (on the database, on a model role, or on every
//! role), and functions or operators outside the system schemas that share
//! a name with a built-in one. A migrator-owned `public.quote_ident(name)` is
//! a better match than `pg_catalog.quote_ident(text)` for a `name` argument
//! even with `pg_catalog` first; with `public` put first, any function of
//! the same signature wins. The tool's own sessions are pinned
//! (`dbenv::PINNED_SEARCH_PATH`); the app's, an admin's `psql` and other
//! tools are not, so `db-check` names every such object. Extension members
//! are left out when a superuser owns them: an extension's script made them
//! (a trusted extension's members belong to the bootstrap superuser); one
//! that another role owns was added to the extension after the fact
//! (`ALTER EXTENSION … ADD`, then maybe given to `pg_database_owner`) and is
//! judged like any other.

use postgres::types::Type;
use roles::snapshot::Queries;
use roles::Model;

use crate::checks::CheckId;
use crate::exemptions::{Exemptions, Kind};
use crate::report::{CheckSummary, Verdict};

/// What the one query found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shadowing {
    /// `(where, value)` of each `search_path` default that applies in the app
    /// database to a model role or to every role.
    pub search_paths: Vec<(String, String)>,
    /// `(schema.name(argument types), the built-ins it shadows)`.
    pub functions: Vec<(String, String)>,
    /// `(schema.op(left, right), the built-ins it shadows)`.
    pub operators: Vec<(String, String)>,
    /// `LEAKPROOF` functions a runtime role may call that neither `initdb`
    /// nor an extension made.
    pub leakproof: Vec<String>,
    /// `(schema.table, server)` of each foreign table a runtime role may read
    /// whose server has a user mapping for a runtime role or PUBLIC.
    pub foreign_logins: Vec<(String, String)>,
}

/// One query: the `search_path` defaults, and the functions and operators
/// that shadow a built-in one. A function shadows when it has the name of a
/// `pg_catalog` function and some number of arguments fits both (defaults
/// and `VARIADIC` counted); an operator when it has the name and kind of a
/// built-in one.
pub fn read(db: &mut Queries<'_>, model: &Model) -> Result<Shadowing, postgres::Error> {
    let roles: Vec<String> = model.roles().iter().map(|r| r.name.clone()).collect();
    // The session is pinned (`pg_catalog, pg_temp`), so the names below
    // can only mean the built-ins.
    let rows = db.query(
        "WITH user_ns AS (SELECT oid, nspname FROM pg_namespace \
                          WHERE nspname <> 'information_schema' AND nspname::text NOT LIKE 'pg\\_%'), \
              ext AS (SELECT objid, classid FROM pg_depend WHERE deptype = 'e'), \
              procs AS (SELECT p.oid, p.proname, p.pronamespace, p.proowner, p.pronargs - p.pronargdefaults AS lo, \
                               CASE WHEN p.provariadic <> 0 THEN 10000 ELSE p.pronargs END AS hi \
                        FROM pg_proc p) \
         SELECT 'setting', CASE WHEN s.setrole = 0 THEN 'ALL' ELSE r.rolname::text END \
                  || '@' || coalesce(d.datname::text, ''), c \
         FROM pg_db_role_setting s \
         LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase, \
              unnest(s.setconfig) c \
         WHERE (s.setrole = 0 OR r.rolname = ANY ($1)) AND (s.setdatabase = 0 OR d.datname = $2) \
           AND lower(c) LIKE 'search\\_path=%' \
         UNION ALL \
         SELECT 'function', a.oid::regprocedure::text, string_agg(DISTINCT b.oid::regprocedure::text, ', ') \
         FROM procs a JOIN user_ns n ON n.oid = a.pronamespace \
         JOIN procs b ON b.proname = a.proname AND b.pronamespace = 'pg_catalog'::regnamespace \
                     AND a.lo <= b.hi AND b.lo <= a.hi \
         WHERE (NOT EXISTS (SELECT 1 FROM ext e WHERE e.objid = a.oid AND e.classid = 'pg_proc'::regclass) \
                OR NOT (SELECT rolsuper FROM pg_roles WHERE oid = a.proowner)) \
         GROUP BY a.oid \
         UNION ALL \
         SELECT 'operator', n.nspname || '.' || o.oprname || '(' \
                  || coalesce(format_type(nullif(o.oprleft, 0), NULL), 'NONE') || ', ' \
                  || coalesce(format_type(nullif(o.oprright, 0), NULL), 'NONE') || ')', \
                'pg_catalog.' || o.oprname \
         FROM pg_operator o JOIN user_ns n ON n.oid = o.oprnamespace \
         WHERE EXISTS (SELECT 1 FROM pg_operator b WHERE b.oprnamespace = 'pg_catalog'::regnamespace \
                         AND b.oprname = o.oprname AND b.oprkind = o.oprkind) \
           AND (NOT EXISTS (SELECT 1 FROM ext e WHERE e.objid = o.oid AND e.classid = 'pg_operator'::regclass) \
                OR NOT (SELECT rolsuper FROM pg_roles WHERE oid = o.oprowner)) \
         UNION ALL \
         SELECT 'leakproof', p.oid::regprocedure::text, '' FROM pg_proc p \
         WHERE p.proleakproof AND p.oid >= 16384 \
           AND NOT EXISTS (SELECT 1 FROM ext e WHERE e.objid = p.oid AND e.classid = 'pg_proc'::regclass) \
           AND EXISTS (SELECT 1 FROM pg_roles u WHERE u.rolname = ANY ($3) \
                         AND has_function_privilege(u.oid, p.oid, 'EXECUTE')) \
         UNION ALL \
         SELECT 'foreign', n.nspname || '.' || c.relname, s.srvname::text \
         FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_foreign_server s ON s.oid = ft.ftserver \
         WHERE EXISTS (SELECT 1 FROM pg_roles u WHERE u.rolname = ANY ($3) \
                         AND has_any_column_privilege(u.oid, c.oid, 'SELECT')) \
           AND EXISTS (SELECT 1 FROM pg_user_mappings m WHERE m.srvid = s.oid \
                         AND (m.umuser = 0 OR m.usename = ANY ($3))) \
         ORDER BY 1, 2",
        &[(&roles, Type::TEXT_ARRAY), (&model.db_name, Type::TEXT), (&model.runtime_names(), Type::TEXT_ARRAY)],
    )?;
    let mut found = Shadowing::default();
    for row in rows {
        let (kind, subject, detail): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        match kind.as_str() {
            "setting" => {
                let value = detail.split_once('=').map(|(_, v)| v).unwrap_or_default().to_string();
                let (role, database) = subject.split_once('@').unwrap_or((subject.as_str(), ""));
                found.search_paths.push((setting_place(role, database), value));
            }
            "function" => found.functions.push((subject, detail)),
            "leakproof" => found.leakproof.push(subject),
            "foreign" => found.foreign_logins.push((subject, detail)),
            _ => found.operators.push((subject, detail)),
        }
    }
    Ok(found)
}

/// `ALTER ROLE x IN DATABASE d SET`, as the fix spells it.
fn setting_place(role: &str, database: &str) -> String {
    let database = (!database.is_empty()).then(|| dbenv::quote_ident(database));
    match (role, database) {
        ("ALL", Some(db)) => format!("ALTER DATABASE {db}"),
        ("ALL", None) => "ALTER ROLE ALL".to_string(),
        (role, Some(db)) => format!("ALTER ROLE {} IN DATABASE {db}", dbenv::quote_ident(role)),
        (role, None) => format!("ALTER ROLE {}", dbenv::quote_ident(role)),
    }
}

/// The schemas a `search_path` value searches before `pg_catalog`, when it
/// names `pg_catalog` at all (without it, `pg_catalog` comes first).
pub fn before_pg_catalog(value: &str) -> Vec<String> {
    let entries: Vec<String> = split_list(value).iter().map(|e| dbenv::unquote_ident(e.trim())).collect();
    match entries.iter().position(|e| e == "pg_catalog") {
        Some(at) => entries[..at].iter().filter(|e| !e.is_empty()).cloned().collect(),
        None => Vec::new(),
    }
}

/// A `search_path` value's entries: commas inside double quotes belong to
/// the name (`"pg_catalog, x"` is one schema, not `pg_catalog`).
fn split_list(value: &str) -> Vec<String> {
    let (mut entries, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => entries.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    entries.push(current);
    entries
}

/// What the policy file reviews, and the entries used so far.
type Review<'a> = (&'a Exemptions, &'a mut std::collections::BTreeSet<(Kind, String)>);

/// Fails `subject` with `message`, unless the policy file reviews it under
/// `kind` (then an exempt note, and the entry counts as used).
fn exempt_or_fail(check: &mut CheckSummary, (exemptions, used): Review<'_>, kind: Kind, subject: &str, message: &str) {
    match exemptions.find(kind, subject) {
        Some(exemption) => {
            used.insert((kind, exemption.name.clone()));
            check.note(Verdict::Exempt, subject, format!("{message}; exempted: {}", exemption.reason));
        }
        None => check.fail(subject, message),
    }
}

/// The `search-path` check: what it found fails, unless a shadowing
/// function or operator is reviewed in the policy file (`[[function]]`).
pub fn check(
    found: &Shadowing,
    exemptions: &Exemptions,
    used: &mut std::collections::BTreeSet<(Kind, String)>,
) -> CheckSummary {
    let mut check = CheckSummary::new(CheckId::SearchPath);
    check.checked = found.search_paths.len() + found.functions.len() + found.operators.len();
    for (place, value) in &found.search_paths {
        let first = before_pg_catalog(value);
        if !first.is_empty() {
            check.fail(
                format!("{place} SET search_path"),
                format!(
                    "search_path = {value} searches {} before pg_catalog: its functions and operators take the place \
                     of the built-in ones in every session it applies to; remove it (`{} RESET search_path`) or put \
                     pg_catalog first",
                    first.join(", "),
                    place
                ),
            );
        }
    }
    let objects =
        found.functions.iter().map(|f| ("function", f)).chain(found.operators.iter().map(|o| ("operator", o)));
    for (noun, (subject, shadowed)) in objects {
        let message = format!(
            "{} named like the built-in {shadowed}: an unqualified call may run it instead (an exacter \
             argument type wins even with pg_catalog first); rename it, or review it in the policy file \
             ([[function]])",
            if noun == "operator" { "an operator" } else { "a function" }
        );
        exempt_or_fail(&mut check, (exemptions, used), Kind::Function, subject, &message);
    }
    check
}

/// The `leakproof` check: a `LEAKPROOF` function runs before the RLS
/// policies' own conditions, on rows the policies would hide; one that is not
/// built in may show them (in an error, a notice, a timing). Only a superuser
/// marks a function so; a reviewed one goes in the policy file.
pub fn leakproof_check(
    found: &Shadowing,
    exemptions: &Exemptions,
    used: &mut std::collections::BTreeSet<(Kind, String)>,
) -> CheckSummary {
    let mut check = CheckSummary::new(CheckId::Leakproof);
    check.checked = found.leakproof.len();
    for function in &found.leakproof {
        let message =
            "LEAKPROOF and not built in: RLS lets it see rows before the policies filter them, and a runtime \
                       role may call it; make it NOT LEAKPROOF (ALTER FUNCTION … NOT LEAKPROOF), or review it in the \
                       policy file ([[function]])";
        exempt_or_fail(&mut check, (exemptions, used), Kind::Function, function, message);
    }
    check
}

/// The `foreign-logins` check: a foreign table reads with the credentials
/// of its server's user mapping, so a runtime role reading it acts on the
/// remote side as whatever role the mapping names (a BYPASSRLS role of this
/// very cluster, say), not as itself.
pub fn foreign_logins_check(
    found: &Shadowing,
    exemptions: &Exemptions,
    used: &mut std::collections::BTreeSet<(Kind, String)>,
) -> CheckSummary {
    let mut check = CheckSummary::new(CheckId::ForeignLogins);
    check.checked = found.foreign_logins.len();
    for (table, server) in &found.foreign_logins {
        let message = format!(
            "foreign table on server `{server}`, which has a user mapping for a runtime role or PUBLIC: reading it \
             logs in as the role the mapping names, whose rights (and RLS) apply, not the runtime role's; drop \
             the mapping or revoke SELECT, or review it in the policy file ([[view]])"
        );
        exempt_or_fail(&mut check, (exemptions, used), Kind::View, table, &message);
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_schemas_named_before_pg_catalog_count() {
        assert_eq!(before_pg_catalog("public, pg_catalog"), vec!["public"]);
        assert_eq!(before_pg_catalog("\"$user\", public"), Vec::<String>::new());
        assert_eq!(before_pg_catalog("pg_catalog, public"), Vec::<String>::new());
        assert_eq!(before_pg_catalog("\"My App\", \"pg_catalog\""), vec!["My App"]);
        assert_eq!(before_pg_catalog("pg_temp, pg_catalog"), vec!["pg_temp"]);
        // A quoted name with a comma is one schema, not pg_catalog first.
        assert_eq!(before_pg_catalog("\"pg_catalog, x\", public, pg_catalog"), vec!["pg_catalog, x", "public"]);
        assert_eq!(before_pg_catalog("\"a\"\"b\", pg_catalog"), vec!["a\"b"]);
    }

    #[test]
    fn the_fix_names_the_place_of_the_setting() {
        assert_eq!(setting_place("ALL", "app"), "ALTER DATABASE \"app\"");
        assert_eq!(setting_place("ALL", ""), "ALTER ROLE ALL");
        assert_eq!(setting_place("app_migrator", "app"), "ALTER ROLE \"app_migrator\" IN DATABASE \"app\"");
        assert_eq!(setting_place("app_user", ""), "ALTER ROLE \"app_user\"");
    }
}
