//! Tenancy proven with probe rows, the way the app uses it, on empty tables
//! too. In one transaction of the runtime role, rolled back at the end:
//!
//! - with tenant A set, it writes one row for A into every RLS table whose
//!   policies apply to it (and the rows those need through foreign keys,
//!   starting at the tenant root), then the same for tenant C, then only the
//!   root row of tenant B: B exists and owns nothing;
//! - with B set, and on a pooled session (the setting reads ''), it must see
//!   none of A's or C's rows, nor any row already there;
//! - with B set, inserting a copy of A's row must be refused by the
//!   policies' `WITH CHECK` (42501);
//! - with A set, an `UPDATE` that turns A's row into C's must be refused too.
//!
//! The rows are written by the runtime role itself, as the app writes its
//! own tenant's rows: rows another session wrote would be invisible until
//! committed, and a probe commits nothing. Every column whose default would
//! take a sequence value gets an explicit value, so no sequence moves; a
//! table whose triggers or rules could act outside the transaction is not
//! touched and is reported unproven.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use dbenv::quote_literal;
use postgres::Client;
use roles::Model;

use crate::count::QueryCount;
use crate::report::{Probe, Verdict};
use crate::reviewed::{exempt_note, Reviewed};
use crate::writes::{
    copies, insert_probe, leaking_in, set_tenant, try_write, Known, Outcomes, Samples, Tenants, Write,
};

/// At most this many RLS tables get probe rows in one run; the rest are
/// named as unproven.
const MAX_TABLES: usize = 500;

/// Words in a trigger function's body that may act outside the transaction
/// (or call what does): such a table gets no probe row.
const OUTSIDE: &str = "\\m(nextval|setval|dblink\\w*|pg_advisory\\w*|insert|update|delete|merge|copy|execute|perform|\
                       notify|pg_notify|lo_\\w+|pg_file\\w*|pg_write\\w*|http\\w*)\\M";

#[derive(Clone, Debug)]
struct Column {
    attnum: i16,
    /// Quoted.
    name: String,
    raw: String,
    /// `format_type` with the type modifier: the cast of every value.
    sql_type: String,
    /// The base type (of a domain): its name, `typtype` and category.
    base: String,
    enum_type: Option<String>,
    category: char,
    /// varchar(n) / char(n): n.
    max_len: Option<usize>,
    not_null: bool,
    has_default: bool,
    /// A default that takes a sequence value or calls a function of the
    /// app's (which may), a domain's default, or an identity column: the
    /// probe always gives it a value.
    sequence: bool,
    identity_always: bool,
    generated: bool,
    primary: bool,
}

#[derive(Clone, Debug)]
struct ForeignKey {
    columns: Vec<i16>,
    parent: u32,
    parent_columns: Vec<i16>,
}

#[derive(Clone, Debug)]
struct Table {
    oid: u32,
    /// `schema.name`, as the policy file names it.
    name: String,
    quoted: String,
    /// An RLS table whose policies apply to the runtime role: proven.
    /// The others only hold rows the proven ones need.
    proven: bool,
    columns: Vec<Column>,
    keys: Vec<ForeignKey>,
    /// Triggers or rules that may act outside the transaction.
    outside: Option<String>,
}

/// The tables and the tenant values of one run.
pub struct Plan {
    tables: Vec<Table>,
    root: u32,
    /// The three tenants: A and C own a row in every table, B only its root row.
    tenants: [Tenant; 3],
    /// Proven tables beyond [`MAX_TABLES`].
    skipped: Vec<String>,
    /// This run's: two runs at once never write the same keys.
    seed: u64,
    /// Every table (by `schema.name`) whose triggers, rules, checks or
    /// index expressions may act outside the transaction, and which.
    outside: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct Tenant {
    /// The setting's value.
    setting: String,
    /// The root key's value, as an SQL expression.
    sql: String,
}

/// A row's explicit values by column number, as SQL expressions.
type Row = BTreeMap<i16, String>;

/// The rows one tenant got, by table, and the tables that got none, with why.
type Written = (BTreeMap<u32, Row>, Vec<(String, String)>);

/// Why there is no plan: the verdict and what to say.
pub type NoPlan = (Verdict, String);

/// Reads what the probe needs (four queries), or why there is nothing to
/// prove (no RLS table has a policy for the runtime role) or no way to (the
/// root has no single-column key).
pub fn plan(model: &Model, service: &mut Client, root: &str, queries: &QueryCount) -> Result<Result<Plan, NoPlan>> {
    match plan_with(model, service, root, queries) {
        // The service role may not read what the proof needs (grants the
        // catalog checks name): unproven, never a crash of the whole check.
        Err(error) if denied(&error) => {
            let message = error
                .downcast_ref::<postgres::Error>()
                .and_then(|e| e.as_db_error())
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| error.to_string());
            Ok(Err((
                Verdict::Unproven,
                format!(
                    "unproven: `{}` may not read what the probe rows need ({message}); the grants checks name what \
                     is missing",
                    model.service.name
                ),
            )))
        }
        other => other,
    }
}

/// A permission error (42501) of the session.
fn denied(error: &anyhow::Error) -> bool {
    error.downcast_ref::<postgres::Error>().and_then(|e| e.code()).is_some_and(|c| c.code() == "42501")
}

fn plan_with(model: &Model, service: &mut Client, root: &str, queries: &QueryCount) -> Result<Result<Plan, NoPlan>> {
    // `schema.name` as the policy file and the catalog audit spell it,
    // unquoted: quoted here, so `"Users"` is found as itself.
    let quoted_root = match root.split_once('.') {
        Some((schema, name)) => format!("{}.{}", dbenv::quote_ident(schema), dbenv::quote_ident(name)),
        None => dbenv::quote_ident(root),
    };
    queries.add(1);
    let candidates: Vec<(u32, bool)> = service
        .query(
            "WITH RECURSIVE proven AS ( \
               SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND NOT c.relispartition \
                 AND (n.nspname = ANY($1) OR (n.nspname NOT IN ('pg_catalog', 'information_schema') \
                      AND n.nspname::text NOT LIKE 'pg\\_%' \
                      AND EXISTS (SELECT 1 FROM pg_roles u WHERE u.rolname = $2 \
                                    AND has_schema_privilege(u.oid, n.oid, 'USAGE') \
                                    AND has_table_privilege(u.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE')))) \
                 AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive \
                               AND (0::oid = ANY (p.polroles) \
                                    OR (SELECT oid FROM pg_roles WHERE rolname = $2) = ANY (p.polroles)))), \
             needed(oid) AS ( \
               SELECT oid FROM proven UNION SELECT $3::text::regclass::oid \
               UNION SELECT f.confrelid FROM pg_constraint f JOIN needed d ON d.oid = f.conrelid \
               WHERE f.contype = 'f' AND f.conparentid = 0) \
             SELECT d.oid, d.oid IN (SELECT oid FROM proven) FROM needed d",
            &[&model.app_schemas, &model.runtime.name, &quoted_root],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if !candidates.iter().any(|(_, proven)| *proven) {
        return Ok(Err((
            Verdict::NotApplicable,
            "n/a: no RLS table has a policy for the runtime role (without one it sees and writes no row)".into(),
        )));
    }
    let oids: Vec<u32> = candidates.iter().map(|(oid, _)| *oid).collect();
    let (mut tables, outside) = describe(service, &oids, queries)?;
    for table in &mut tables {
        table.proven = candidates.iter().any(|(oid, proven)| *oid == table.oid && *proven);
    }
    let root_oid: u32 = service.query_one("SELECT $1::text::regclass::oid", &[&quoted_root])?.get(0);
    queries.add(1);
    let Some(root_key) = tables.iter().find(|t| t.oid == root_oid).and_then(|t| single_key(t)).cloned() else {
        return Ok(Err((
            Verdict::Unproven,
            format!("unproven: the tenant root `{root}` has no single-column primary key to make tenants of"),
        )));
    };
    let seed = seed();
    let tenants = tenants(service, &tables, root_oid, &root_key, seed, queries)?;
    let mut proven = 0;
    let mut skipped = Vec::new();
    tables.retain(|t| {
        if !t.proven {
            return true;
        }
        proven += 1;
        if proven > MAX_TABLES {
            skipped.push(t.name.clone());
            return false;
        }
        true
    });
    Ok(Ok(Plan { tables: order(tables), root: root_oid, tenants, skipped, seed, outside }))
}

/// The columns, foreign keys, triggers and rules of `oids`: three queries.
fn describe(
    service: &mut Client,
    oids: &[u32],
    queries: &QueryCount,
) -> Result<(Vec<Table>, BTreeMap<String, String>)> {
    queries.add(3);
    let mut tables: BTreeMap<u32, Table> = BTreeMap::new();
    let rows = service.query(
        "WITH tabs AS MATERIALIZED ( \
               SELECT c.oid, n.nspname || '.' || c.relname AS name, \
                      quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS quoted, \
                      NULL::text AS outside \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY ($1)) \
             SELECT c.oid, tabs.name, tabs.quoted, tabs.outside, \
                    a.attnum, quote_ident(a.attname), a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    bt.typname::text, CASE WHEN bt.typtype = 'e' THEN format_type(bt.oid, NULL) END, \
                    bt.typcategory::text, \
                    CASE WHEN bt.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 END, \
                    a.attnotnull, a.atthasdef, \
                    a.attidentity <> '' \
                      OR EXISTS (SELECT 1 FROM pg_proc f WHERE f.pronamespace = 'pg_catalog'::regnamespace \
                                   AND f.proname = ANY ($2) AND ad.adbin::text LIKE '%:funcid ' || f.oid || ' %') \
                      OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_attrdef'::regclass \
                                   AND d.objid = ad.oid AND d.refclassid IN ('pg_proc'::regclass, 'pg_class'::regclass)) \
                      OR (t.typtype = 'd' AND t.typdefaultbin IS NOT NULL AND NOT a.atthasdef), \
                    a.attidentity = 'a', a.attgenerated <> '', \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary \
                              AND a.attnum = ANY (i.indkey)) \
             FROM tabs JOIN pg_class c ON c.oid = tabs.oid \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
             LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum \
             ORDER BY c.oid, a.attnum",
        &[&oids, &side_effects()],
    )?;
    for r in &rows {
        let oid: u32 = r.get(0);
        let table = tables.entry(oid).or_insert_with(|| Table {
            oid,
            name: r.get(1),
            quoted: r.get(2),
            proven: false,
            columns: Vec::new(),
            keys: Vec::new(),
            outside: r.get(3),
        });
        table.columns.push(Column {
            attnum: r.get(4),
            name: r.get(5),
            raw: r.get(6),
            sql_type: r.get(7),
            base: r.get(8),
            enum_type: r.get(9),
            category: r.get::<_, String>(10).chars().next().unwrap_or('X'),
            max_len: r.get::<_, Option<i32>>(11).map(|n| n.max(1) as usize),
            not_null: r.get(12),
            has_default: r.get(13),
            sequence: r.get(14),
            identity_always: r.get(15),
            generated: r.get(16),
            primary: r.get(17),
        });
    }
    let outside = outside(service, &mut tables)?;
    for r in service.query(
        "SELECT conrelid, conkey, confrelid, confkey FROM pg_constraint \
         WHERE contype = 'f' AND conparentid = 0 AND conrelid = ANY ($1) ORDER BY conrelid, conname",
        &[&oids],
    )? {
        let key = ForeignKey { columns: r.get(1), parent: r.get(2), parent_columns: r.get(3) };
        if let Some(table) = tables.get_mut(&r.get(0)) {
            table.keys.push(key);
        }
    }
    Ok((tables.into_values().collect(), outside))
}

/// Triggers and rules that may act outside the transaction, once for the
/// database (a table that many foreign keys reference has thousands of
/// internal triggers an index scan would walk per table), by the top of
/// their partition tree.
fn outside(service: &mut Client, tables: &mut BTreeMap<u32, Table>) -> Result<BTreeMap<String, String>> {
    let lineage = roles::snapshot::reach::LINEAGE_SQL;
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for r in service.query(
        &format!(
            "WITH found(rel, what) AS ( \
               SELECT t.tgrelid, 'trigger ' || t.tgname FROM pg_trigger t \
               JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_language l ON l.oid = p.prolang \
               WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' \
                 AND (l.lanname NOT IN ('plpgsql', 'sql') OR p.prosrc ~* '{OUTSIDE}' \
                      OR p.prosrc ~* ('\\m(' || array_to_string($1::text[], '|') || ')\\M') \
                      OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_trigger'::regclass \
                                   AND d.objid = t.oid AND d.refclassid = 'pg_proc'::regclass \
                                   AND d.refobjid <> t.tgfoid)) \
               UNION ALL SELECT r.ev_class, 'rule ' || r.rulename FROM pg_rewrite r WHERE r.rulename <> '_RETURN' \
               UNION ALL SELECT k.conrelid, 'check ' || k.conname FROM pg_constraint k \
               WHERE k.contype = 'c' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_constraint'::regclass \
                                                   AND d.objid = k.oid AND d.refclassid = 'pg_proc'::regclass) \
               UNION ALL SELECT i.indrelid, 'index ' || ic.relname FROM pg_index i \
               JOIN pg_class ic ON ic.oid = i.indexrelid \
               WHERE i.indexprs IS NOT NULL AND EXISTS (SELECT 1 FROM pg_depend d \
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid \
                       AND d.refclassid = 'pg_proc'::regclass)) \
             SELECT up.name, f.what FROM found f JOIN pg_class c ON c.oid = f.rel \
             CROSS JOIN LATERAL unnest({lineage}) AS up(name) ORDER BY 1, 2"
        ),
        &[&side_effects()],
    )? {
        let (name, what): (String, String) = (r.get(0), r.get(1));
        let entry = by_name.entry(name).or_default();
        if !entry.is_empty() {
            entry.push_str(", ");
        }
        entry.push_str(&what);
    }
    for table in tables.values_mut() {
        table.outside = by_name.get(&table.name).cloned();
    }
    Ok(by_name)
}

/// Built-in functions with an effect a rollback does not undo, or that run
/// SQL text: a column default or trigger that calls one is never run.
fn side_effects() -> Vec<String> {
    let mut names: Vec<String> = roles::snapshot::reach::SQL_RUNNERS.iter().map(|n| n.to_string()).collect();
    names.extend(
        [
            "nextval",
            "setval",
            "pg_advisory_lock",
            "pg_advisory_lock_shared",
            "pg_try_advisory_lock",
            "pg_try_advisory_lock_shared",
            "pg_notify",
            "lo_import",
            "lo_export",
            "lo_create",
            "lo_creat",
            "lo_from_bytea",
            "lo_unlink",
            "pg_file_write",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_reload_conf",
            "pg_rotate_logfile",
        ]
        .iter()
        .map(|n| n.to_string()),
    );
    names
}

/// The table's single-column primary key.
fn single_key(table: &Table) -> Option<&Column> {
    let mut keys = table.columns.iter().filter(|c| c.primary);
    let key = keys.next()?;
    keys.next().is_none().then_some(key)
}

/// Parents before children (foreign keys to other tables); what a cycle
/// leaves comes last, in name order.
fn order(tables: Vec<Table>) -> Vec<Table> {
    let mut left: Vec<Table> = tables;
    let mut done: BTreeSet<u32> = BTreeSet::new();
    let mut ordered = Vec::new();
    loop {
        let present: BTreeSet<u32> = left.iter().map(|t| t.oid).collect();
        let (ready, rest): (Vec<Table>, Vec<Table>) = left.into_iter().partition(|t| {
            t.keys.iter().all(|k| k.parent == t.oid || done.contains(&k.parent) || !present.contains(&k.parent))
        });
        if ready.is_empty() {
            ordered.extend(rest);
            return ordered;
        }
        done.extend(ready.iter().map(|t| t.oid));
        ordered.extend(ready);
        left = rest;
        if left.is_empty() {
            return ordered;
        }
    }
}

/// Three tenant values no row holds, of the root key's type: past the
/// largest integer key (far enough that the app's next keys never meet
/// them), or made up from this run's seed, with the part that differs kept
/// when a `varchar(n)` cuts them.
fn tenants(
    service: &mut Client,
    tables: &[Table],
    root: u32,
    key: &Column,
    seed: u64,
    queries: &QueryCount,
) -> Result<[Tenant; 3]> {
    let make = |i: u64, max: i64| -> Tenant {
        let value = match key.base.as_str() {
            "int2" => (32_700 + i).to_string(),
            "int4" | "int8" => (max.saturating_add(1_000_001 + i as i64)).to_string(),
            "uuid" => uuid(mix(seed, 1000 + i)),
            _ => {
                let text = format!("{:016x}", mix(seed, 1000 + i));
                let cut = key.max_len.map(|max| text.len().saturating_sub(max)).unwrap_or(0);
                text[cut..].to_string()
            }
        };
        Tenant { sql: format!("{}::{}", quote_literal(&value), key.sql_type), setting: value }
    };
    let max = if matches!(key.base.as_str(), "int4" | "int8") {
        queries.add(1);
        let table = tables.iter().find(|t| t.oid == root).map(|t| t.quoted.clone()).unwrap_or_default();
        service.query_one(&format!("SELECT coalesce(max({})::int8, 0) FROM {table}", key.name), &[])?.get(0)
    } else {
        0
    };
    Ok([make(0, max), make(1, max), make(2, max)])
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64) ^ ((std::process::id() as u64) << 32)
}

/// splitmix64: distinct values from a seed and a counter.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A version 4 UUID from `n`, every random bit drawn (the variant digit
/// too), so nothing marks it as the probe's.
fn uuid(n: u64) -> String {
    let m = mix(n, 7);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        n >> 32,
        (n >> 16) & 0xffff,
        n & 0xfff,
        8 + (m >> 62),
        (m >> 50) & 0xfff,
        m & 0xffff_ffff_ffff
    )
}

/// A value of the column's type that no other probe row repeats, or `None`
/// for a type the probe cannot make up.
fn value(column: &Column, n: u64) -> Option<String> {
    let small = n % 1_000_000;
    let expression = match (column.base.as_str(), column.category) {
        _ if column.enum_type.is_some() => {
            let labels = format!("pg_catalog.enum_range(NULL::{})", column.enum_type.as_deref()?);
            format!("({labels})[1 + {small} % pg_catalog.cardinality({labels})]")
        }
        ("uuid", _) => quote_literal(&uuid(n)),
        ("int2", _) => (1000 + n % 30_000).to_string(),
        ("int4" | "int8", _) => (1_000_000 + n % 1_000_000_000).to_string(),
        ("bool", _) => "false".into(),
        ("json" | "jsonb", _) => format!("'{{\"xtask_probe\": {small}}}'"),
        ("bytea", _) => format!("'\\x{:08x}'", n & 0xffff_ffff),
        ("inet" | "cidr", _) => format!("'10.{}.{}.{}'", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        (_, 'S') => {
            let text = if column.raw.to_ascii_lowercase().contains("email") {
                format!("p{:08x}@probe.invalid", n & 0xffff_ffff)
            } else {
                format!("{:016x}", mix(n, 11))
            };
            let cut = column.max_len.map(|max| text.len().saturating_sub(max)).unwrap_or(0);
            quote_literal(&text[cut..])
        }
        (_, 'N') => (1 + n % 900).to_string(),
        (_, 'D') => format!("pg_catalog.now() - interval '1 day' * {}", small % 3650),
        (_, 'T') => format!("interval '1 minute' * {}", 1 + small % 1000),
        (_, 'A') => "'{}'".into(),
        _ => return None,
    };
    Some(format!("({expression})::{}", column.sql_type))
}

/// Whether a column can hold the tenant key's values: the same type, or
/// both integers, or both text.
fn tenant_family(key: &Column, column: &Column) -> bool {
    let ints = |c: &Column| matches!(c.base.as_str(), "int2" | "int4" | "int8");
    let text = |c: &Column| matches!(c.base.as_str(), "text" | "varchar" | "bpchar");
    key.sql_type == column.sql_type
        || key.base == column.base
        || (ints(key) && ints(column))
        || (text(key) && text(column))
}

/// The explicit values of `table`'s row for `tenant`, given the rows
/// written so far, or why none can be made.
fn row(plan: &Plan, table: &Table, tenant: &Tenant, index: u64, written: &BTreeMap<u32, Row>) -> Result<Row, String> {
    row_with(plan, table, tenant, index, written, false)
}

/// A row of `tenant` for a write that the policies must refuse before any
/// key is checked (the `WITH CHECK` comes first): its parents need not
/// exist, a key to the root names the tenant, other keys made-up values.
fn orphan_row(plan: &Plan, table: &Table, tenant: &Tenant, index: u64) -> Result<Row, String> {
    row_with(plan, table, tenant, index, &BTreeMap::new(), true)
}

/// [`row`]; with `orphans`, a missing parent row is made up.
fn row_with(
    plan: &Plan,
    table: &Table,
    tenant: &Tenant,
    index: u64,
    written: &BTreeMap<u32, Row>,
    orphans: bool,
) -> Result<Row, String> {
    let referenced: BTreeSet<(u32, i16)> = plan
        .tables
        .iter()
        .flat_map(|t| t.keys.iter().flat_map(|k| k.parent_columns.iter().map(move |c| (k.parent, *c))))
        .collect();
    let root_key = plan.tables.iter().find(|t| t.oid == plan.root).and_then(single_key);
    let mut row = Row::new();
    let mut keyed: BTreeSet<i16> = BTreeSet::new();
    for key in table.keys.iter().filter(|k| k.parent != table.oid) {
        keyed.extend(&key.columns);
        let nullable = key.columns.iter().all(|c| table.columns.iter().any(|col| col.attnum == *c && !col.not_null));
        match written.get(&key.parent) {
            Some(parent) if key.parent_columns.iter().all(|c| parent.contains_key(c)) => {
                for (column, parent_column) in key.columns.iter().zip(&key.parent_columns) {
                    row.insert(*column, parent[parent_column].clone());
                }
            }
            _ if orphans => {
                for column in key.columns.iter().filter_map(|c| table.columns.iter().find(|col| col.attnum == *c)) {
                    let made_up = if key.parent == plan.root {
                        Some(tenant.sql.clone())
                    } else {
                        value(column, mix(plan.seed ^ index, (table.oid as u64) << 16 | column.attnum as u64))
                    };
                    let made_up = made_up.ok_or_else(|| format!("no value of type {}", column.sql_type))?;
                    row.insert(column.attnum, made_up);
                }
            }
            _ if nullable => {}
            _ => {
                let parent = plan.tables.iter().find(|t| t.oid == key.parent).map_or("?", |t| t.name.as_str());
                return Err(format!("needs a row of `{parent}` that the probe could not write"));
            }
        }
    }
    for (i, column) in table.columns.iter().enumerate() {
        if column.generated || row.contains_key(&column.attnum) || keyed.contains(&column.attnum) {
            continue;
        }
        let tenant_typed = root_key.is_some_and(|k| tenant_family(k, column));
        let needed = column.sequence
            || column.primary
            || referenced.contains(&(table.oid, column.attnum))
            || (column.not_null && !column.has_default);
        let n = mix(plan.seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d), (table.oid as u64) << 16 | i as u64);
        if table.oid == plan.root && column.primary {
            row.insert(column.attnum, tenant.sql.clone());
        } else if tenant_typed && !column.primary {
            // A column of the tenant key's type that no foreign key fills
            // is taken as the tenant column.
            row.insert(column.attnum, tenant.sql.clone());
        } else if needed {
            let value = value(column, n).ok_or_else(|| {
                format!("the probe makes up no value of type {} (column {})", column.sql_type, column.raw)
            })?;
            row.insert(column.attnum, value);
        }
    }
    // A foreign key to the table itself points at the row itself.
    for key in table.keys.iter().filter(|k| k.parent == table.oid) {
        let nullable = key.columns.iter().all(|c| table.columns.iter().any(|col| col.attnum == *c && !col.not_null));
        if !nullable {
            for (column, parent_column) in key.columns.iter().zip(&key.parent_columns) {
                let value = row.get(parent_column).cloned().ok_or("a key to itself the probe cannot fill")?;
                row.insert(*column, value);
            }
        } else {
            for column in &key.columns {
                row.remove(column);
            }
        }
    }
    Ok(row)
}

fn insert_sql(table: &Table, row: &Row) -> String {
    let names: Vec<&str> =
        row.keys().filter_map(|n| table.columns.iter().find(|c| c.attnum == *n)).map(|c| c.name.as_str()).collect();
    let values: Vec<&str> = row.values().map(String::as_str).collect();
    if names.is_empty() {
        return format!("INSERT INTO {} DEFAULT VALUES", table.quoted);
    }
    format!(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
        table.quoted,
        names.join(", "),
        values.join(", ")
    )
}

/// What the probe found, per table.
#[derive(Default)]
struct Found {
    /// Tables that got no probe rows, and why.
    unwritten: Vec<String>,
    read_leaks: Vec<String>,
    read_failing: Vec<String>,
    read_unproven: Vec<String>,
    /// Rows seen on tables whose policies the policy file declares reviewed.
    read_exempt: Vec<String>,
    insert: Outcomes,
    update: Outcomes,
    /// Copies of rows already there, written with B set.
    existing: Outcomes,
    /// Writes on a pooled session (the setting reads '').
    pooled: Outcomes,
    /// B's root row could not be written: B does not exist.
    no_b: Option<String>,
    proven: usize,
}

/// `oid` and every table it needs a row of through foreign keys.
fn ancestors(plan: &Plan, oid: u32) -> BTreeSet<u32> {
    let mut found = BTreeSet::from([oid]);
    let mut queue = vec![oid];
    while let Some(next) = queue.pop() {
        for table in plan.tables.iter().filter(|t| t.oid == next) {
            for key in &table.keys {
                if found.insert(key.parent) {
                    queue.push(key.parent);
                }
            }
        }
    }
    found
}

/// The tables whose row carries `tenant`: the root, a row with a column set
/// to the tenant's value, or one whose foreign key points at a row that
/// carries it. A write proof on any other row proves nothing: the row is
/// nobody's, or its tenant came from a default or a trigger.
fn carriers(plan: &Plan, rows: &BTreeMap<u32, Row>, tenant: &Tenant) -> BTreeSet<u32> {
    let mut carriers = BTreeSet::new();
    for table in &plan.tables {
        let Some(row) = rows.get(&table.oid) else { continue };
        let carries = table.oid == plan.root
            || row.values().any(|v| *v == tenant.sql)
            || table.keys.iter().any(|k| {
                k.parent != table.oid && carriers.contains(&k.parent) && k.columns.iter().all(|c| row.contains_key(c))
            });
        if carries {
            carriers.insert(table.oid);
        }
    }
    carriers
}

/// Writes the rows of one tenant: all in one round trip when they all
/// succeed, else table by table, each under its own savepoint.
fn write_rows(
    runtime: &mut Client,
    plan: &Plan,
    tenant: &Tenant,
    index: u64,
    only_root: bool,
    queries: &QueryCount,
) -> Result<Written, postgres::Error> {
    let root_side = if only_root { ancestors(plan, plan.root) } else { BTreeSet::new() };
    let tables: Vec<&Table> =
        plan.tables.iter().filter(|t| (!only_root || root_side.contains(&t.oid)) && t.outside.is_none()).collect();
    // Optimistic: every row can be made from the others.
    let mut written = BTreeMap::new();
    let mut statements = Vec::new();
    for table in &tables {
        if let Ok(row) = row(plan, table, tenant, index, &written) {
            statements.push(insert_sql(table, &row));
            written.insert(table.oid, row);
        }
    }
    if written.len() == tables.len() {
        queries.add(1);
        let batch = format!("SAVEPOINT xtask_rows; {}; RELEASE SAVEPOINT xtask_rows", statements.join("; "));
        if runtime.batch_execute(&batch).is_ok() {
            return Ok((written, Vec::new()));
        }
        runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_rows; RELEASE SAVEPOINT xtask_rows")?;
    }
    let mut written = BTreeMap::new();
    let mut failed = Vec::new();
    for table in tables {
        let row = match row(plan, table, tenant, index, &written) {
            Ok(row) => row,
            Err(why) => {
                failed.push((table.name.clone(), why));
                continue;
            }
        };
        queries.add(1);
        match runtime
            .batch_execute(&format!("SAVEPOINT xtask_row; {}; RELEASE SAVEPOINT xtask_row", insert_sql(table, &row)))
        {
            Ok(()) => {
                written.insert(table.oid, row);
            }
            Err(error) => {
                runtime.batch_execute("ROLLBACK TO SAVEPOINT xtask_row; RELEASE SAVEPOINT xtask_row")?;
                let code = error.code().map(|c| c.code().to_string()).unwrap_or_default();
                let message = error.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| error.to_string());
                failed.push((table.name.clone(), format!("its probe row was refused ({code}: {message})")));
            }
        }
    }
    Ok((written, failed))
}

/// The read proof's parts: per proven table, whether the session sees any
/// row but B's own root row and the rows declared public.
fn read_parts(plan: &Plan, exemptions: &Reviewed<'_>, written: &BTreeSet<u32>) -> Vec<(String, String)> {
    let b = &plan.tenants[1];
    let root_key = plan.tables.iter().find(|t| t.oid == plan.root).and_then(single_key);
    plan.tables
        .iter()
        .filter(|t| t.proven && written.contains(&t.oid))
        .filter_map(|t| {
            let mut filters = Vec::new();
            // A table every row of which is public is left out (`?`).
            if let Some(public) = exemptions.public(&t.name) {
                filters.push(format!("NOT coalesce(({}), false)", public.rows.as_deref()?));
            }
            if t.oid == plan.root {
                filters.push(format!("{} IS DISTINCT FROM {}", root_key?.name, b.sql));
            }
            let filter = if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
            let sql = format!("SELECT {}::text, EXISTS (SELECT 1 FROM {}{filter})", quote_literal(&t.name), t.quoted);
            Some((t.name.clone(), sql))
        })
        .collect()
}

/// Runs the proof in one transaction of the runtime role, rolled back.
pub fn prove(
    model: &Model,
    plan: &Plan,
    runtime: &mut Client,
    exemptions: &Reviewed<'_>,
    existing: &Samples,
    queries: &QueryCount,
) -> Result<Vec<Probe>> {
    queries.add(1);
    runtime.batch_execute(&crate::probes::begin_probe())?;
    let found = run(model, plan, runtime, exemptions, existing, queries);
    let _ = runtime.batch_execute("ROLLBACK");
    let mut found = match found {
        Ok(found) => found,
        // A statement that failed for another reason than the proof (a
        // timeout, a lock): said as inconclusive, never a pass.
        Err(error) => {
            let message = error.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| error.to_string());
            let why = format!("inconclusive: {message}");
            let mut all = vec![insert_probe(model, &Outcomes::default(), "a tenant that exists and owns nothing")];
            all[0].observed = why.clone();
            all[0].verdict = Verdict::Inconclusive;
            all.extend(not_tried(model, &why, Verdict::Inconclusive));
            return Ok(all);
        }
    };
    for (outcomes, command) in
        [(&mut found.insert, 'a'), (&mut found.update, 'w'), (&mut found.existing, 'a'), (&mut found.pooled, 'a')]
    {
        outcomes.review(exemptions, command);
    }
    let mut all = vec![insert_probe(model, &found.existing, "a tenant that exists and owns nothing")];
    all.extend(probes(model, plan, &found));
    Ok(all)
}

fn run(
    model: &Model,
    plan: &Plan,
    runtime: &mut Client,
    exemptions: &Reviewed<'_>,
    existing: &Samples,
    queries: &QueryCount,
) -> Result<Found, postgres::Error> {
    let setting = &model.tenant_setting;
    let [a, b, c] = &plan.tenants;
    let mut found = Found::default();
    for table in plan.tables.iter().filter(|t| t.proven) {
        if let Some(outside) = &table.outside {
            found.unwritten.push(format!("{} (not touched: {outside} may act outside the transaction)", table.name));
        }
    }
    queries.add(1);
    let t0 = std::time::Instant::now();
    runtime.batch_execute(&set_tenant(setting, &a.setting))?;
    let (rows_a, failed_a) = write_rows(runtime, plan, a, 1, false, queries)?;
    runtime.batch_execute(&set_tenant(setting, &c.setting))?;
    let (rows_c, failed_c) = write_rows(runtime, plan, c, 3, false, queries)?;
    runtime.batch_execute(&set_tenant(setting, &b.setting))?;
    let (rows_b, failed_b) = write_rows(runtime, plan, b, 2, true, queries)?;
    if !rows_b.contains_key(&plan.root) {
        found.no_b = Some(failed_b.first().map(|(_, why)| why.clone()).unwrap_or_else(|| "not written".into()));
    }
    let proven_names: BTreeSet<&str> = plan.tables.iter().filter(|t| t.proven).map(|t| t.name.as_str()).collect();
    for (table, why) in failed_a.iter().filter(|(t, _)| proven_names.contains(t.as_str())) {
        found.unwritten.push(format!("{table} ({why})"));
    }
    let written: BTreeSet<u32> = rows_a.keys().copied().collect();
    found.proven = plan.tables.iter().filter(|t| t.proven && written.contains(&t.oid)).count();
    // The write proofs need rows that carry A's and C's tenants.
    let (carry_a, carry_c) = (carriers(plan, &rows_a, a), carriers(plan, &rows_c, c));
    let mut unwritable = BTreeMap::new();
    for table in plan.tables.iter().filter(|t| t.proven && written.contains(&t.oid)) {
        let why = if !carry_a.contains(&table.oid) {
            "no column carries the tenant (no foreign key to the root, no column of its key's type)".to_string()
        } else if !rows_c.contains_key(&table.oid) {
            let failed = failed_c.iter().find(|(t, _)| *t == table.name).map(|(_, w)| w.as_str());
            format!("a second tenant's row could not be written: {}", failed.unwrap_or("?"))
        } else if !carry_c.contains(&table.oid) {
            "no column carries the second tenant".to_string()
        } else {
            continue;
        };
        unwritable.insert(table.oid, format!("{} ({why})", table.name));
    }
    // With A set: is A's own row public by the policy file (then the read
    // proof cannot see it hidden)?
    runtime.batch_execute(&set_tenant(setting, &a.setting))?;
    public_probe_rows(runtime, plan, exemptions, &rows_a, &mut found, queries)?;
    reads(runtime, model, plan, exemptions, &written, &mut found, queries)?;
    // Still with '' set (the reads end on the pooled session): no write of
    // a made-up row (the copies of rows already there were tried on the
    // fresh session).
    found.pooled = tenantless_writes(runtime, model, Some(plan), None, queries);
    // A copy of A's row, and of a row already there, with B set.
    runtime.batch_execute(&set_tenant(setting, &b.setting))?;
    let with_b = Tenants { setting, writer: &b.setting };
    found.existing = copies(runtime, existing, &with_b, &known(plan), queries);
    // A row of A's (A's parents, A's tenant column) with keys of its own, so
    // that a BEFORE trigger that moves it into B shows as such rather than
    // as a collision with A's row.
    for table in plan.tables.iter().filter(|t| t.proven && rows_a.contains_key(&t.oid)) {
        if let Some(why) = unwritable.get(&table.oid) {
            found.insert.unproven.push(why.clone());
            continue;
        }
        let row = match row(plan, table, a, 4, &rows_a) {
            Ok(row) => row,
            Err(why) => {
                found.insert.unproven.push(format!("{} ({why})", table.name));
                continue;
            }
        };
        queries.add(3);
        // Found again by its key; it was A's: A must not see it.
        let own = key_lookup(table, &row).map(|lookup| (lookup, a.setting.clone()));
        let write =
            Write { name: &table.name, table: &table.quoted, insert: true, tenants: &with_b, own, tenantless: false };
        found.insert.add(&table.name, try_write(runtime, &write, &insert_sql(table, &row)));
    }
    // A's row turned into C's, with A set; B is the tenant that is neither.
    runtime.batch_execute(&set_tenant(setting, &a.setting))?;
    let with_a = Tenants { setting, writer: &a.setting };
    found.update = update_moves(runtime, plan, (&rows_a, &rows_c), &unwritable, &with_a, queries);
    crate::trace("probe rows", t0);
    Ok(found)
}

/// Writes that must fail without a tenant, in the caller's transaction and
/// tenant state (fresh: NULL; pooled: ''): a copy of a row already there,
/// and a made-up row of tenant A per tenant table. A data error (the
/// setting cast to the key's type) fails the write as the app's would.
pub(crate) fn tenantless_writes(
    runtime: &mut Client,
    model: &Model,
    plan: Option<&Plan>,
    existing: Option<&Samples>,
    queries: &QueryCount,
) -> Outcomes {
    let tenants = Tenants { setting: &model.tenant_setting, writer: "" };
    let mut known = plan.map(known).unwrap_or_default();
    for entry in known.values_mut() {
        entry.fresh_pk = None; // nobody's own row without a tenant
    }
    let mut outcomes = match existing {
        Some(existing) => copies(runtime, existing, &tenants, &known, queries),
        None => Outcomes::default(),
    };
    let Some(plan) = plan else { return outcomes };
    for table in plan.tables.iter().filter(|t| t.proven && t.outside.is_none()) {
        let Ok(row) = orphan_row(plan, table, &plan.tenants[0], 6) else { continue };
        queries.add(3);
        let write = Write {
            name: &table.name,
            table: &table.quoted,
            insert: true,
            tenants: &tenants,
            own: None,
            tenantless: true,
        };
        outcomes.add(&table.name, try_write(runtime, &write, &insert_sql(table, &row)));
    }
    outcomes
}

/// A WHERE clause over the table's primary key with `row`'s values, when
/// the row gives every key column.
fn key_lookup(table: &Table, row: &Row) -> Option<String> {
    let keys: Vec<&Column> = table.columns.iter().filter(|c| c.primary).collect();
    if keys.is_empty() {
        return None;
    }
    let parts: Option<Vec<String>> =
        keys.iter().map(|c| row.get(&c.attnum).map(|v| format!("{} = {v}", c.name))).collect();
    Some(parts?.join(" AND "))
}

/// Fresh values for `keys` as a JSON patch, drawn from this run's seed, when
/// every key column is a uuid, an integer or text.
fn fresh_key_json(plan: &Plan, table: &Table, keys: &[&Column]) -> Option<String> {
    let mut patch = serde_json::Map::new();
    for column in keys {
        let n = mix(plan.seed ^ 0x6a09_e667_f3bc_c908, (table.oid as u64) << 16 | column.attnum as u64);
        let value = match (column.base.as_str(), column.category) {
            ("uuid", _) => serde_json::Value::from(uuid(n)),
            ("int2", _) => serde_json::Value::from(1000 + n % 30_000),
            ("int4" | "int8", _) => serde_json::Value::from(1_000_000 + n % 1_000_000_000),
            (_, 'S') if column.enum_type.is_none() => {
                let text = format!("{:016x}", mix(n, 13));
                let cut = column.max_len.map(|max| text.len().saturating_sub(max)).unwrap_or(0);
                serde_json::Value::from(&text[cut..])
            }
            _ => return None,
        };
        patch.insert(column.raw.clone(), value);
    }
    Some(serde_json::Value::Object(patch).to_string())
}

/// What the copies of existing rows need to know of each table: the
/// columns a fresh key must not change, the column that names the tenant,
/// whether the primary key may be made fresh, and what may act outside the
/// transaction.
fn known(plan: &Plan) -> BTreeMap<String, Known> {
    let root_key = plan.tables.iter().find(|t| t.oid == plan.root).and_then(single_key);
    let mut known: BTreeMap<String, Known> = plan
        .outside
        .iter()
        .map(|(name, what)| (name.clone(), Known { outside: Some(what.clone()), ..Known::default() }))
        .collect();
    for table in &plan.tables {
        let in_key: BTreeSet<i16> = table.keys.iter().flat_map(|k| k.columns.iter().copied()).collect();
        let tenant_typed = |c: &Column| root_key.is_some_and(|k| tenant_family(k, c));
        let fixed: Vec<String> = table
            .columns
            .iter()
            .filter(|c| in_key.contains(&c.attnum) || (tenant_typed(c) && !(c.primary && table.oid != plan.root)))
            .map(|c| c.raw.clone())
            .collect();
        let to_root = table
            .keys
            .iter()
            .find(|k| k.parent == plan.root && k.columns.len() == 1)
            .and_then(|k| table.columns.iter().find(|c| c.attnum == k.columns[0]).map(|c| c.raw.clone()));
        let typed = table.columns.iter().find(|c| tenant_typed(c) && !c.primary && !in_key.contains(&c.attnum));
        let tenant_column = if table.oid == plan.root {
            root_key.map(|k| k.raw.clone())
        } else {
            to_root.or_else(|| typed.map(|c| c.raw.clone()))
        };
        let primary: Vec<&Column> = table.columns.iter().filter(|c| c.primary).collect();
        let fresh_pk = if !primary.is_empty() && primary.iter().all(|c| !fixed.contains(&c.raw)) {
            fresh_key_json(plan, table, &primary)
        } else {
            None
        };
        let entry = known.entry(table.name.clone()).or_default();
        entry.fixed = fixed;
        entry.tenant_column = tenant_column;
        entry.fresh_pk = fresh_pk;
    }
    known
}

/// The read proof: with B set, then on a pooled session (''), no row but
/// B's own (and the rows declared public) is seen.
fn reads(
    runtime: &mut Client,
    model: &Model,
    plan: &Plan,
    exemptions: &Reviewed<'_>,
    written: &BTreeSet<u32>,
    found: &mut Found,
    queries: &QueryCount,
) -> Result<(), postgres::Error> {
    let parts = read_parts(plan, exemptions, written);
    let b = &plan.tenants[1];
    for (state, value, pooled) in [
        ("with a tenant that exists and owns nothing", b.setting.as_str(), false),
        ("after a pooled transaction ('')", "", true),
    ] {
        queries.add(1);
        runtime.batch_execute(&set_tenant(&model.tenant_setting, value))?;
        let (leaking, errors) = leaking_in(runtime, &parts, queries)?;
        let (leaking, exempt) = exemptions.split(leaking);
        found.read_exempt.extend(exempt.into_iter().map(|table| format!("{table} {state}")));
        if !leaking.is_empty() {
            found.read_leaks.push(format!("{state}, `{}` sees rows of {}", model.runtime.name, leaking.join(", ")));
        }
        for (table, message) in errors {
            let line = format!("{table} {state}: {message}");
            if pooled {
                found.read_failing.push(line)
            } else {
                found.read_unproven.push(line)
            }
        }
    }
    Ok(())
}

/// A's probe row of a table with public rows (`[[public]]` with `rows`)
/// that the predicate calls public hides nothing: the table is unproven.
/// Runs with A set, which sees its own rows.
fn public_probe_rows(
    runtime: &mut Client,
    plan: &Plan,
    exemptions: &Reviewed<'_>,
    rows_a: &BTreeMap<u32, Row>,
    found: &mut Found,
    queries: &QueryCount,
) -> Result<(), postgres::Error> {
    for table in plan.tables.iter().filter(|t| t.proven) {
        let (Some(row), Some(rows)) =
            (rows_a.get(&table.oid), exemptions.public(&table.name).and_then(|p| p.rows.as_deref()))
        else {
            continue;
        };
        let matches: Vec<String> = row
            .iter()
            .filter_map(|(n, v)| {
                table
                    .columns
                    .iter()
                    .find(|c| c.attnum == *n)
                    .map(|c| format!("{}::text IS NOT DISTINCT FROM ({v})::text", c.name))
            })
            .collect();
        queries.add(1);
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} AND coalesce(({rows}), false))",
            table.quoted,
            if matches.is_empty() { "true".to_string() } else { matches.join(" AND ") }
        );
        let public: bool = runtime.query_one(&sql, &[])?.get(0);
        if public {
            found.read_unproven.push(format!(
                "{} (the probe's row is public by the policy file's `rows`, so it hides nothing)",
                table.name
            ));
        }
    }
    Ok(())
}

/// With A set, an UPDATE without WHERE (only the UPDATE policies apply)
/// turns A's row of each table into one of C's (C's parents and tenant
/// column, keys of its own).
fn update_moves(
    runtime: &mut Client,
    plan: &Plan,
    (rows_a, rows_c): (&BTreeMap<u32, Row>, &BTreeMap<u32, Row>),
    unwritable: &BTreeMap<u32, String>,
    with_a: &Tenants<'_>,
    queries: &QueryCount,
) -> Outcomes {
    let c = &plan.tenants[2];
    let mut outcomes = Outcomes::default();
    for table in plan.tables.iter().filter(|t| t.proven) {
        // C's parents and tenant column, keys of its own.
        if !rows_a.contains_key(&table.oid) {
            continue;
        }
        if let Some(why) = unwritable.get(&table.oid) {
            outcomes.unproven.push(why.clone());
            continue;
        }
        let row_c = match row(plan, table, c, 5, rows_c) {
            Ok(row) => row,
            Err(why) => {
                outcomes.unproven.push(format!("{} ({why})", table.name));
                continue;
            }
        };
        let sets: Vec<(&str, &str)> = row_c
            .iter()
            .filter_map(|(n, v)| {
                table
                    .columns
                    .iter()
                    .find(|c| c.attnum == *n && !c.identity_always)
                    .map(|c| (c.name.as_str(), v.as_str()))
            })
            .collect();
        if sets.is_empty() {
            outcomes.unproven.push(format!("{} (no column to update)", table.name));
            continue;
        }
        let update = format!(
            "UPDATE ONLY {} SET ({}) = ROW({})",
            table.quoted,
            sets.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            sets.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(", ")
        );
        queries.add(3);
        // Found again by C's key; it is C's row now unless a trigger kept it
        // in A: C must not see it.
        let own = key_lookup(table, &row_c).map(|lookup| (lookup, c.setting.clone()));
        let write =
            Write { name: &table.name, table: &table.quoted, insert: false, tenants: with_a, own, tenantless: false };
        outcomes.add(&table.name, try_write(runtime, &write, &update));
    }
    outcomes
}

fn probes(model: &Model, plan: &Plan, found: &Found) -> Vec<Probe> {
    let role = &model.runtime.name;
    let setting = &model.tenant_setting;
    let mut unproven: Vec<String> = found.unwritten.clone();
    unproven.extend(plan.skipped.iter().map(|t| format!("{t} (beyond the first {MAX_TABLES} tables)")));
    vec![
        read_probe(role, setting, found, &unproven),
        write_probe(
            role,
            ("probe-rows-insert", "INSERT another tenant's row with a tenant that exists set, empty tables included"),
            &format!("SET LOCAL {setting} = <tenant B>; INSERT INTO <table> VALUES (<tenant A's probe row>)"),
            &found.insert,
            &unproven,
        ),
        write_probe(
            role,
            ("pooled-insert", "INSERT on a pooled session (the setting reads ''), empty tables included"),
            &format!("SET LOCAL {setting} = ''; INSERT INTO <table> VALUES (<a row of any tenant>)"),
            &found.pooled,
            &[],
        ),
        write_probe(
            role,
            ("update-moves-row", "UPDATE a row of its own tenant into another tenant's"),
            &format!("SET LOCAL {setting} = <tenant A>; UPDATE <table> SET (<columns>) = ROW(<tenant C's probe row>)"),
            &found.update,
            &unproven,
        ),
    ]
}

/// `; unproven on …`, or nothing.
fn unproven_note(unproven: &[String], separator: &str) -> String {
    if unproven.is_empty() {
        String::new()
    } else {
        format!("; unproven on {}", unproven.join(separator))
    }
}

/// `unproven: <why>`, naming every table the proof did not reach.
fn unproven_because(unproven: &[String], more: &[String]) -> String {
    let why: Vec<&str> = unproven.iter().chain(more).map(String::as_str).collect();
    format!("unproven: {}", if why.is_empty() { "no probe row could be written".into() } else { why.join("; ") })
}

fn read_probe(role: &str, setting: &str, found: &Found, unproven: &[String]) -> Probe {
    let mut read = Probe {
        role: role.to_string(),
        id: "probe-rows-read",
        capability: "read another tenant's rows, empty tables included (probe rows, rolled back)".into(),
        sql: format!("SET LOCAL {setting} = <a tenant that exists and owns nothing>, then ''; SELECT … FROM <table>"),
        expected: "no row".into(),
        observed: String::new(),
        verdict: Verdict::Pass,
    };
    let exempt = exempt_note(&found.read_exempt, "it sees rows of");
    if !found.read_leaks.is_empty() {
        read.observed = format!("{}{exempt}", found.read_leaks.join("; "));
        read.verdict = Verdict::Fail;
    } else if found.proven == 0 || !found.read_unproven.is_empty() || found.no_b.is_some() {
        let b_note = match &found.no_b {
            Some(why) => format!(" (tenant B could not be written, so it exists nowhere: {why})"),
            None => String::new(),
        };
        read.observed = format!("{}{b_note}", unproven_because(unproven, &found.read_unproven));
        read.verdict = Verdict::Unproven;
    } else {
        let failing = if found.read_failing.is_empty() {
            String::new()
        } else {
            format!("; the app's queries fail {}", found.read_failing.join("; "))
        };
        read.observed = format!(
            "no row of another tenant on {} tables{failing}{}{exempt}",
            found.proven,
            unproven_note(unproven, "; ")
        );
        if !unproven.is_empty() {
            read.verdict = Verdict::Unproven;
        }
    }
    read
}

pub(crate) fn write_probe(
    role: &str,
    (id, capability): (&'static str, &str),
    sql: &str,
    outcomes: &Outcomes,
    unproven: &[String],
) -> Probe {
    let mut probe = Probe {
        role: role.to_string(),
        id,
        capability: capability.into(),
        sql: sql.into(),
        expected: "denied (42501)".into(),
        observed: String::new(),
        verdict: Verdict::Pass,
    };
    let exempt = exempt_note(&outcomes.exempt, "let through on");
    let nothing_tried = outcomes.allowed.is_empty()
        && outcomes.denied.is_empty()
        && outcomes.own.is_empty()
        && outcomes.unproven.is_empty()
        && outcomes.exempt.is_empty()
        && unproven.is_empty();
    let nothing_proven = outcomes.denied.is_empty() && outcomes.own.is_empty();
    if nothing_tried {
        probe.observed = "n/a (no RLS table to write)".into();
        probe.verdict = Verdict::NotApplicable;
    } else if !outcomes.allowed.is_empty() {
        probe.observed = format!("ALLOWED on {}{exempt}", outcomes.allowed.join(", "));
        probe.verdict = Verdict::Fail;
    } else if nothing_proven && outcomes.unproven.is_empty() && unproven.is_empty() {
        probe.observed = format!("exempt only{exempt}");
        probe.verdict = Verdict::Exempt;
    } else if nothing_proven {
        probe.observed = format!("{}{exempt}", unproven_because(unproven, &outcomes.unproven));
        probe.verdict = Verdict::Unproven;
    } else {
        let own = if outcomes.own.is_empty() {
            String::new()
        } else {
            format!(
                "; proven by a BEFORE trigger that kept the row in the writer's tenant on {}",
                outcomes.own.join(", ")
            )
        };
        probe.observed = format!(
            "denied (42501) on {} tables{own}{}{}{exempt}",
            outcomes.denied.len(),
            unproven_note(&outcomes.unproven, ", "),
            unproven_note(unproven, "; ")
        );
        if !outcomes.unproven.is_empty() || !unproven.is_empty() {
            probe.verdict = Verdict::Unproven;
        }
    }
    probe
}

/// The three probes, said as not tried.
pub fn not_tried(model: &Model, why: &str, verdict: Verdict) -> Vec<Probe> {
    let found = Found::default();
    let plan = Plan {
        tables: Vec::new(),
        root: 0,
        tenants: std::array::from_fn(|_| Tenant { setting: String::new(), sql: String::new() }),
        skipped: Vec::new(),
        seed: 0,
        outside: BTreeMap::new(),
    };
    probes(model, &plan, &found)
        .into_iter()
        .map(|mut p| {
            p.observed = why.to_string();
            p.verdict = verdict;
            p
        })
        .collect()
}
