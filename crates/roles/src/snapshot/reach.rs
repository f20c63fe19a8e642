//! The catalog reads of the owner's-rights analysis ([`crate::reach`]):
//! views, materialized views and rules with what their queries read,
//! `SECURITY DEFINER` functions, and children without RLS of RLS tables.
//! Three queries, whatever the size of the database.

use anyhow::{Context, Result};
use postgres::types::Type;

use crate::kinds::RelKind;
use crate::model::Model;
use crate::snapshot::Queries;

/// A view, a materialized view, or a rule, with what its query reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsObject {
    /// The relation: the view itself, or the table (or view) a rule is on.
    pub oid: i64,
    /// Its schema and name.
    pub schema: String,
    pub name: String,
    pub kind: RelKind,
    /// The rule's name; `None` for a view's or materialized view's own query.
    pub rule: Option<String>,
    /// Whose rights the query runs with.
    pub owner: String,
    /// The owner is a superuser or has BYPASSRLS.
    pub owner_escapes_rls: bool,
    /// `security_invoker` is set (views, PostgreSQL 15+), parsed as the server does.
    pub security_invoker: bool,
    /// A runtime role may read (views) or read or write (a rule's table) it now.
    pub runtime_uses: bool,
    /// RLS-enabled relations the query reads directly, `schema.name`.
    pub rls_reads: Vec<String>,
    /// Views and materialized views the query reads directly.
    pub view_reads: Vec<i64>,
    /// Functions of the database the query calls: not built in, and not an
    /// extension's unless a role other than a superuser owns them (added to
    /// an extension after the fact).
    pub functions: Vec<String>,
    /// Relations the query reads directly outside the app schemas (and
    /// outside `pg_catalog` and `information_schema`): the bookkeeping always
    /// (the runtime roles must never read it), anything else the runtime
    /// roles may not read themselves (another app's, an auth provider's).
    pub outside_reads: Vec<String>,
    /// Built-in functions the query calls that run SQL text of their own
    /// (`query_to_xml` and its family, `ts_stat`): built-ins are not
    /// recorded in `pg_depend`, so the query's text is searched for them.
    pub sql_runners: Vec<String>,
    /// The relation belongs to an extension.
    pub extension: bool,
}

/// A `SECURITY DEFINER` function or procedure, anywhere in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinerFunction {
    /// `schema.name(argument types)`, as the exemptions file names it.
    pub identity: String,
    pub schema: String,
    pub owner: String,
    pub owner_superuser: bool,
    pub owner_bypasses_rls: bool,
    /// A runtime role may call it (PUBLIC has EXECUTE by default).
    pub runtime_executes: bool,
    /// A trigger runs it.
    pub trigger: bool,
    /// The extension it belongs to.
    pub extension: Option<String>,
    /// An enabled event trigger runs it: on any role's DDL attempt, before
    /// the permission check, with no EXECUTE needed.
    pub event_trigger: bool,
    /// An aggregate a runtime role may call uses it as a support function
    /// (transition, final, combine, serial, moving): the aggregate's EXECUTE
    /// is enough to run it.
    pub aggregate: Option<String>,
}

/// A partition or inheritance child without RLS of its own, below a table with RLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnprotectedChild {
    pub oid: i64,
    pub qualified: String,
    pub schema: String,
    pub owner: String,
    pub ancestor_oid: i64,
    pub ancestor: String,
    pub ancestor_schema: String,
    pub ancestor_owner: String,
    pub runtime_reads: bool,
}

/// What the owner's-rights analysis reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    pub objects: Vec<RightsObject>,
    pub definers: Vec<DefinerFunction>,
    pub children: Vec<UnprotectedChild>,
}

/// How PostgreSQL reads a boolean option (`parse_bool`): `true`, `yes`,
/// `on`, `1` and their unambiguous prefixes, in any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    let lower = text.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !lower.is_empty() && word.starts_with(lower.as_str());
    match lower.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        "on" => Some(true),
        "off" | "of" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// Whether `reloptions` turn `security_invoker` on.
pub fn security_invoker(options: &[String]) -> bool {
    options
        .iter()
        .any(|o| o.split_once('=').is_some_and(|(k, v)| k == "security_invoker" && parse_bool(v) == Some(true)))
}

/// SQL over a `pg_class c`: the view runs as its caller (`security_invoker`
/// set true in `c.reloptions`, spelled in any way [`parse_bool`] reads).
pub const INVOKER_SQL: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_options_to_table(c.reloptions) o \
     WHERE o.option_name = 'security_invoker' AND (lower(o.option_value) IN ('1', 'on') \
       OR (o.option_value <> '' AND (left('true', length(o.option_value)) = lower(o.option_value) \
                                     OR left('yes', length(o.option_value)) = lower(o.option_value)))))";

/// SQL over a `pg_class c`: `schema.name` of the relation and of every
/// table it inherits from or is a partition of, at any depth.
pub const LINEAGE_SQL: &str = "ARRAY(WITH RECURSIVE up(oid) AS (SELECT c.oid UNION \
     SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.oid) \
     SELECT un.nspname || '.' || uc.relname FROM up JOIN pg_catalog.pg_class uc ON uc.oid = up.oid \
     JOIN pg_catalog.pg_namespace un ON un.oid = uc.relnamespace)";

/// Built-in functions that run SQL text given to them as their caller: in
/// a materialized view's query or a rule's action, as its owner.
pub const SQL_RUNNERS: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
];

/// The runtime roles that exist, as a subquery for `has_*_privilege`.
const RUNTIME: &str = "runtime AS (SELECT oid FROM pg_roles WHERE rolname = ANY($1))";

/// Reads views, materialized views, rules, definer functions and unprotected
/// children: three queries, whatever the size of the database.
pub fn read(db: &mut Queries<'_>, model: &Model) -> Result<Reach> {
    let runtime = model.runtime_names();
    let objects = read_objects(db, &runtime, &model.app_schemas, &model.bookkeeping_schema)
        .context("read views, materialized views and rules")?;
    let mut definers = Vec::new();
    for row in db
        .query(
            &format!(
                "WITH {RUNTIME} \
                 SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')', n.nspname::text, \
                        pg_get_userbyid(p.proowner)::text, o.rolsuper, o.rolbypassrls, \
                        EXISTS (SELECT 1 FROM runtime u WHERE has_function_privilege(u.oid, p.oid, 'EXECUTE')), \
                        EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid), \
                        (SELECT x.extname::text FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid \
                         WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e' LIMIT 1), \
                        EXISTS (SELECT 1 FROM pg_event_trigger t WHERE t.evtfoid = p.oid AND t.evtenabled <> 'D'), \
                        (SELECT min(a.aggfnoid::regprocedure::text) FROM pg_aggregate a \
                         WHERE p.oid IN (a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, \
                                         a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn) \
                           AND EXISTS (SELECT 1 FROM runtime u WHERE has_function_privilege(u.oid, a.aggfnoid, 'EXECUTE'))) \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles o ON o.oid = p.proowner \
                 WHERE p.prosecdef AND (n.nspname NOT IN ('pg_catalog', 'information_schema') OR p.oid >= 16384) \
                 ORDER BY 1"
            ),
            &[(&runtime, Type::TEXT_ARRAY)],
        )
        .context("read SECURITY DEFINER functions")?
    {
        definers.push(DefinerFunction {
            identity: row.get(0),
            schema: row.get(1),
            owner: row.get(2),
            owner_superuser: row.get(3),
            owner_bypasses_rls: row.get(4),
            runtime_executes: row.get(5),
            trigger: row.get(6),
            extension: row.get(7),
            event_trigger: row.get(8),
            aggregate: row.get(9),
        });
    }
    let mut children = Vec::new();
    for row in db
        .query(
            &format!(
                "WITH RECURSIVE {RUNTIME}, \
                 below(child, ancestor) AS (SELECT inhrelid, inhparent FROM pg_inherits \
                   UNION SELECT b.child, i.inhparent FROM below b JOIN pg_inherits i ON i.inhrelid = b.ancestor) \
                 SELECT DISTINCT ON (c.oid) c.oid::int8, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                        n.nspname::text, pg_get_userbyid(c.relowner)::text, a.oid::int8, \
                        quote_ident(an.nspname) || '.' || quote_ident(a.relname), an.nspname::text, \
                        pg_get_userbyid(a.relowner)::text, \
                        EXISTS (SELECT 1 FROM runtime u WHERE has_table_privilege(u.oid, c.oid, 'SELECT')) \
                 FROM below b JOIN pg_class c ON c.oid = b.child JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_class a ON a.oid = b.ancestor JOIN pg_namespace an ON an.oid = a.relnamespace \
                 WHERE a.relrowsecurity AND NOT c.relrowsecurity AND c.relkind IN ('r', 'p', 'f') \
                 ORDER BY c.oid, a.oid"
            ),
            &[(&runtime, Type::TEXT_ARRAY)],
        )
        .context("read partitions and inheritance children")?
    {
        children.push(UnprotectedChild {
            oid: row.get(0),
            qualified: row.get(1),
            schema: row.get(2),
            owner: row.get(3),
            ancestor_oid: row.get(4),
            ancestor: row.get(5),
            ancestor_schema: row.get(6),
            ancestor_owner: row.get(7),
            runtime_reads: row.get(8),
        });
    }
    Ok(Reach { objects, definers, children })
}

/// The query of [`read_objects`]: every view's query and rule, with what it
/// reads and calls.
fn objects_sql() -> String {
    format!(
        "WITH {RUNTIME}, \
         rules AS (SELECT w.oid AS rule, w.ev_class, w.rulename, c.relkind, n.nspname, c.relname, c.relowner, \
                          coalesce(c.reloptions::text[], '{{}}') AS options \
                   FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     AND (c.relkind IN ('v', 'm') OR w.rulename <> '_RETURN')) \
         SELECT r.ev_class::int8, r.nspname::text, r.relname::text, r.relkind::text, \
                CASE WHEN r.rulename = '_RETURN' THEN NULL ELSE r.rulename::text END, \
                pg_get_userbyid(r.relowner)::text, o.rolsuper OR o.rolbypassrls, r.options, \
                EXISTS (SELECT 1 FROM runtime u WHERE has_table_privilege(u.oid, r.ev_class, \
                        CASE WHEN r.rulename = '_RETURN' THEN 'SELECT' ELSE 'SELECT, INSERT, UPDATE, DELETE' END)), \
                coalesce(array_agg(DISTINCT quote_ident(dn.nspname) || '.' || quote_ident(dc.relname)) \
                         FILTER (WHERE dc.relrowsecurity), '{{}}'), \
                coalesce(array_agg(DISTINCT dc.oid::int8) FILTER (WHERE dc.relkind IN ('v', 'm')), '{{}}'), \
                coalesce(array_agg(DISTINCT dp.oid::regprocedure::text) FILTER (WHERE dp.oid IS NOT NULL \
                         AND (NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass \
                                          AND e.objid = dp.oid AND e.deptype = 'e') \
                              OR NOT (SELECT rolsuper FROM pg_roles WHERE oid = dp.proowner))), '{{}}'), \
                EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = r.ev_class \
                        AND e.deptype = 'e'), \
                coalesce(array_agg(DISTINCT quote_ident(dn.nspname) || '.' || quote_ident(dc.relname)) \
                         FILTER (WHERE dc.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
                         AND dn.nspname NOT IN ('pg_catalog', 'information_schema') \
                         AND dc.oid <> r.ev_class AND (dc.relkind <> 'S' OR r.rulename <> '_RETURN') \
                         AND (dn.nspname = $4 \
                              OR (dn.nspname <> ALL ($3) AND NOT EXISTS (SELECT 1 FROM runtime u \
                                    WHERE has_table_privilege(u.oid, dc.oid, 'SELECT'))) \
                              OR (r.rulename <> '_RETURN' AND EXISTS (SELECT 1 FROM runtime u \
                                    WHERE has_table_privilege(u.oid, r.ev_class, 'INSERT, UPDATE, DELETE') \
                                      AND NOT CASE WHEN dc.relkind = 'S' \
                                              THEN has_sequence_privilege(u.oid, dc.oid, 'UPDATE') \
                                              ELSE has_table_privilege(u.oid, dc.oid, 'SELECT') \
                                               AND has_table_privilege(u.oid, dc.oid, 'INSERT') \
                                               AND has_table_privilege(u.oid, dc.oid, 'UPDATE') \
                                               AND has_table_privilege(u.oid, dc.oid, 'DELETE') END)))), \
                         '{{}}'), \
                ARRAY(SELECT f FROM unnest($2::text[]) f \
                      WHERE pg_get_ruledef(r.rule) ~* ('(^|[^a-z0-9_$])' || f || '\\s*\\(')) \
         FROM rules r JOIN pg_roles o ON o.oid = r.relowner \
         LEFT JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule AND d.deptype = 'n' \
           AND (r.rulename <> '_RETURN' OR d.refobjid <> r.ev_class) \
         LEFT JOIN pg_class dc ON d.refclassid = 'pg_class'::regclass AND dc.oid = d.refobjid \
         LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace \
         LEFT JOIN pg_proc dp ON d.refclassid = 'pg_proc'::regclass AND dp.oid = d.refobjid \
         GROUP BY r.rule, r.ev_class, r.nspname, r.relname, r.relkind, r.rulename, r.relowner, o.rolsuper, \
                  o.rolbypassrls, r.options \
         ORDER BY 2, 3, 5 NULLS FIRST"
    )
}

fn read_objects(
    db: &mut Queries<'_>,
    runtime: &[String],
    app_schemas: &[String],
    bookkeeping_schema: &str,
) -> Result<Vec<RightsObject>, postgres::Error> {
    // Driven from pg_rewrite: every view's query and every rule is a row
    // there, and pg_depend records what each reads and calls (built-in
    // objects are pinned and never recorded).
    let rows = db.query(
        &objects_sql(),
        &[
            (&runtime, Type::TEXT_ARRAY),
            (&SQL_RUNNERS, Type::TEXT_ARRAY),
            (&app_schemas, Type::TEXT_ARRAY),
            (&bookkeeping_schema, Type::TEXT),
        ],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let kind: String = row.get(3);
            let (schema, name): (String, String) = (row.get(1), row.get(2));
            // A rule's own table is among what it "reads" (NEW and OLD are
            // its rows): name any other RLS table first.
            let own = format!("{}.{}", dbenv::quote_ident(&schema), dbenv::quote_ident(&name));
            let mut rls_reads: Vec<String> = row.get(9);
            rls_reads
                .sort_by_key(|t| t.eq_ignore_ascii_case(&own) || dbenv::unquote_ident(t) == format!("{schema}.{name}"));
            RightsObject {
                oid: row.get(0),
                schema,
                name,
                kind: RelKind::from_code(kind.chars().next().unwrap_or('?')),
                rule: row.get(4),
                owner: row.get(5),
                owner_escapes_rls: row.get(6),
                security_invoker: security_invoker(&row.get::<_, Vec<String>>(7)),
                runtime_uses: row.get(8),
                rls_reads,
                view_reads: row.get(10),
                functions: row.get(11),
                extension: row.get(12),
                outside_reads: row.get(13),
                sql_runners: row.get(14),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_parse_as_the_server_parses_them() {
        for yes in ["true", "TRUE", "t", "T", "yes", "Y", "on", "ON", "1", "tr"] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["false", "f", "no", "N", "off", "OFF", "of", "0"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        for neither in ["", "o", "2", "truex", "enable"] {
            assert_eq!(parse_bool(neither), None, "{neither}");
        }
        assert!(security_invoker(&["security_barrier=true".into(), "security_invoker=TRUE".into()]));
        assert!(!security_invoker(&["security_invoker=off".into()]));
    }
}
