//! What the RLS policies allow, not only that RLS is on: a permissive
//! policy whose predicate is `true` lets every row through, and permissive
//! policies for one command add up (OR), so an extra one widens the rest.
//! Tables readable without a tenant by design are declared in the
//! exemptions file (`[[public]]`); the live write probe proves the rest.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::{bail, Result};
use postgres::types::Type;
use roles::snapshot::{DbContents, Queries};
use roles::Model;

use crate::checks::CheckId;
use crate::exemptions::{Exemptions, Kind};
use crate::report::{CheckSummary, Verdict};

/// One row of `pg_policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub table_oid: i64,
    /// `schema.table`, as the exemptions file names it.
    pub table: String,
    pub name: String,
    pub permissive: bool,
    /// `r` SELECT, `a` INSERT, `w` UPDATE, `d` DELETE, `*` ALL.
    pub command: char,
    /// Role names it applies to; `PUBLIC` for everyone.
    pub roles: Vec<String>,
    /// `USING`, as `pg_get_expr` prints it; empty when absent.
    pub using: String,
    /// `WITH CHECK`; empty when absent.
    pub with_check: String,
    /// The bodies of the functions (not built in) its expressions call
    /// directly: what they read of the session counts as the policy's.
    pub function_bodies: String,
    /// The bodies of its table's triggers: what they read of the session
    /// counts too (a trigger can tell a probe from the app), but they do
    /// not decide which rows the policy lets through.
    pub trigger_bodies: String,
}

impl Policy {
    /// Whether it applies to the runtime role.
    fn applies_to(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == "PUBLIC" || r == role)
    }

    /// Whether it governs `command` (one of `r`, `a`, `w`, `d`).
    fn covers(&self, command: char) -> bool {
        self.command == '*' || self.command == command
    }

    /// What new rows are checked against: `WITH CHECK`, or for ALL and
    /// UPDATE policies without one, `USING`.
    fn check_expression(&self) -> &str {
        if self.with_check.is_empty() && matches!(self.command, '*' | 'w') {
            &self.using
        } else {
            &self.with_check
        }
    }

    /// The settings its expressions, its functions and its table's triggers
    /// read with `current_setting('…')`, in lower case (as PostgreSQL reads
    /// setting names).
    pub fn settings_read(&self) -> Vec<String> {
        settings_in(&[&self.using, &self.with_check, &self.function_bodies, &self.trigger_bodies])
    }

    /// The settings that decide which rows it lets through: those its
    /// expressions and the functions they call read (not the triggers').
    pub fn predicate_settings(&self) -> Vec<String> {
        settings_in(&[&self.using, &self.with_check, &self.function_bodies])
    }
}

impl Policy {
    /// What the policy reads of the session besides custom settings (an
    /// `app.…` tenant or organisation): built-in settings, the query text,
    /// the backend, the client address, the activity view, or a setting whose
    /// name is computed. Any of these can tell `db-check`'s probe sessions
    /// from the app's, so a policy could pass the proof and fail the app.
    pub fn session_state_read(&self) -> Vec<String> {
        let mut found: Vec<String> =
            self.settings_read().into_iter().filter(|s| !s.contains('.')).map(|s| format!("setting {s}")).collect();
        for text in [&self.using, &self.with_check, &self.function_bodies, &self.trigger_bodies] {
            let lower = text.to_ascii_lowercase();
            let computed =
                lower.match_indices("current_setting(").any(|(at, m)| !lower[at + m.len()..].starts_with('\''));
            if computed {
                found.push("a setting whose name is computed".to_string());
            }
            for telltale in SESSION_TELLTALES {
                if lower.contains(telltale) {
                    found.push(telltale.trim_end_matches('(').to_string());
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

/// The names read with `current_setting('…')` in `texts`, lower-cased.
fn settings_in(texts: &[&String]) -> Vec<String> {
    let mut found = Vec::new();
    for text in texts {
        let lower = text.to_lowercase();
        let mut rest = lower.as_str();
        while let Some(at) = rest.find("current_setting('") {
            rest = &rest[at + "current_setting('".len()..];
            if let Some(end) = rest.find('\'') {
                found.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    found
}

/// Functions and views that describe the session rather than the tenant.
const SESSION_TELLTALES: &[&str] = &[
    "current_query(",
    "pg_backend_pid(",
    "inet_client_addr(",
    "inet_client_port(",
    "inet_server_addr(",
    "inet_server_port(",
    "pg_stat_activity",
    "pg_stat_get_activity(",
    "pg_blocking_pids(",
    "pg_current_xact_id(",
    "txid_current(",
    "pg_trigger_depth(",
    "pg_my_temp_schema(",
    "pg_conf_load_time(",
    "pg_postmaster_start_time(",
    "pg_settings",
    "pg_show_all_settings(",
    "pg_stat_get_backend",
    "pg_current_xact_id_if_assigned(",
    "txid_current_if_assigned(",
    "pg_prepared_statements",
    "pg_locks",
];

/// Reads every policy of the database (one query).
pub fn read(db: &mut Queries<'_>) -> Result<Vec<Policy>, postgres::Error> {
    let rows = db.query(
        "SELECT p.polrelid::int8, n.nspname || '.' || c.relname, p.polname::text, p.polpermissive, p.polcmd::text, \
                array(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) r), \
                coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''), \
                coalesce((SELECT string_agg(f.prosrc, ' ') FROM pg_depend d JOIN pg_proc f ON f.oid = d.refobjid \
                          WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid \
                            AND d.refclassid = 'pg_proc'::regclass AND f.oid >= 16384), ''), \
                coalesce((SELECT string_agg(f.prosrc, ' ') FROM pg_trigger t JOIN pg_proc f ON f.oid = t.tgfoid \
                          WHERE t.tgrelid = p.polrelid AND NOT t.tgisinternal AND f.oid >= 16384), '') \
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname <> ALL ($1) ORDER BY 2, 3",
        &[(&vec!["pg_catalog".to_string(), "information_schema".to_string()], Type::TEXT_ARRAY)],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let command: String = row.get(4);
            Policy {
                table_oid: row.get(0),
                table: row.get(1),
                name: row.get(2),
                permissive: row.get(3),
                command: command.chars().next().unwrap_or('*'),
                roles: row.get(5),
                using: row.get(6),
                with_check: row.get(7),
                function_bodies: row.get(8),
                trigger_bodies: row.get(9),
            }
        })
        .collect())
}

fn command_word(command: char) -> &'static str {
    match command {
        'r' => "SELECT",
        'a' => "INSERT",
        'w' => "UPDATE",
        'd' => "DELETE",
        _ => "ALL",
    }
}

/// A predicate that lets every row through, also in disguise: `true`,
/// `NOT false`, `x = x` (`1 = 1`), or an `OR` one of whose sides is such, as
/// `pg_get_expr` prints them.
pub fn always_true(expression: &str) -> bool {
    let e = strip_parens(expression.trim());
    if e.eq_ignore_ascii_case("true") {
        return true;
    }
    if let Some(rest) = e.strip_prefix("NOT ") {
        return always_false(rest);
    }
    // COALESCE(true, …) is true whatever follows.
    if e.len() > 9 && e[..9].eq_ignore_ascii_case("COALESCE(") && e.ends_with(')') {
        if let Some(first) = split_top(&e[9..e.len() - 1], ", ").first() {
            if always_true(first) {
                return true;
            }
        }
    }
    let disjuncts = split_top(e, " OR ");
    if disjuncts.len() > 1 {
        return disjuncts.iter().any(|d| always_true(d));
    }
    let conjuncts = split_top(e, " AND ");
    if conjuncts.len() > 1 {
        return conjuncts.iter().all(|c| always_true(c));
    }
    for operator in [" = ", " >= ", " <= "] {
        let sides = split_top(e, operator);
        if sides.len() == 2 && strip_parens(sides[0].trim()) == strip_parens(sides[1].trim()) {
            return true;
        }
    }
    false
}

/// A predicate that lets no row through: `false`, `NOT true`, an `AND` with
/// such a side, an `OR` of them.
fn always_false(expression: &str) -> bool {
    let e = strip_parens(expression.trim());
    if e.eq_ignore_ascii_case("false") {
        return true;
    }
    if let Some(rest) = e.strip_prefix("NOT ") {
        return always_true(rest);
    }
    let disjuncts = split_top(e, " OR ");
    if disjuncts.len() > 1 {
        return disjuncts.iter().all(|d| always_false(d));
    }
    let conjuncts = split_top(e, " AND ");
    conjuncts.len() > 1 && conjuncts.iter().any(|c| always_false(c))
}

/// `e` without parentheses that enclose all of it.
fn strip_parens(mut e: &str) -> &str {
    while e.starts_with('(') && e.ends_with(')') && closing_paren(e) == Some(e.len() - 1) {
        e = e[1..e.len() - 1].trim();
    }
    e
}

/// Where the parenthesis opening `e` closes (quotes respected).
fn closing_paren(e: &str) -> Option<usize> {
    let (mut depth, mut quoted) = (0usize, None::<char>);
    for (i, c) in e.char_indices() {
        match (quoted, c) {
            (Some(q), c) if c == q => quoted = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quoted = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `e` split at `separator` where it stands outside parentheses and quotes.
fn split_top<'a>(e: &'a str, separator: &str) -> Vec<&'a str> {
    let (mut parts, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0i32, None::<char>);
    let bytes = e.as_bytes();
    let mut i = 0;
    while i < e.len() {
        let c = bytes[i] as char;
        match (quoted, c) {
            (Some(q), c) if c == q => quoted = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quoted = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, _) if depth == 0 && e[i..].starts_with(separator) => {
                parts.push(&e[start..i]);
                i += separator.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&e[start..]);
    parts
}

/// Permissive policies of one table (those that apply to the runtime role)
/// whose `USING` or `WITH CHECK` is always true and that no restrictive
/// policy narrows. `public_read_all`: every row is declared public-readable.
fn always_true_problems(mine: &[&Policy], public_read_all: bool, tenant_setting: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    // Restrictive policies are ANDed with the permissive ones: one that
    // is not always true narrows a permissive `true` for its commands.
    // Only a restrictive policy that reads the tenant narrows: `id IS NOT
    // NULL` or a tautology the reading below misses would not.
    let reads_tenant = |p: &Policy| p.settings_read().iter().any(|s| s.eq_ignore_ascii_case(tenant_setting));
    let narrowed = |commands: &[char], check: bool| {
        commands.iter().all(|command| {
            mine.iter().any(|p| {
                let expression = if check { p.check_expression() } else { p.using.as_str() };
                !p.permissive
                    && p.covers(*command)
                    && !expression.is_empty()
                    && !always_true(expression)
                    && reads_tenant(p)
            })
        })
    };
    for policy in mine.iter().filter(|p| p.permissive) {
        let public_read = policy.command == 'r' && public_read_all;
        let reads: Vec<char> = ['r', 'w', 'd'].into_iter().filter(|c| policy.covers(*c)).collect();
        if always_true(&policy.using) && !public_read && !narrowed(&reads, false) {
            let text = format!(
                "policy `{}` (FOR {}) has USING ({}), which is always true: every row is visible or changeable",
                policy.name,
                command_word(policy.command),
                strip_parens(&policy.using)
            );
            // In the live probes it exempts what it lets through: reads.
            let probed: Vec<char> = reads.iter().copied().filter(|c| *c == 'r').collect();
            problems.push((probed, text));
        }
        let writes: Vec<char> = ['a', 'w'].into_iter().filter(|c| policy.covers(*c)).collect();
        let check = policy.check_expression();
        if !check.is_empty() && always_true(check) && !narrowed(&writes, true) {
            let text = format!(
                "policy `{}` (FOR {}) has WITH CHECK ({}), which is always true: any tenant's row may be written",
                policy.name,
                command_word(policy.command),
                strip_parens(check)
            );
            problems.push((writes.clone(), text));
        }
    }
    problems
}

/// What the policies of one table let through that the model does not
/// want: always-true predicates and permissive policies that add up, as
/// the `[[public]]` entry of the table (if any) allows.
fn content_problems(mine: &[&Policy], public: Option<&crate::exemptions::Exemption>, setting: &str) -> Vec<Problem> {
    let public_read_all = public.is_some_and(|e| e.rows.is_none());
    let mut problems = always_true_problems(mine, public_read_all, setting);
    for command in ['r', 'a', 'w', 'd'] {
        let permissive: Vec<&str> =
            mine.iter().filter(|p| p.permissive && p.covers(command)).map(|p| p.name.as_str()).collect();
        // A declared public-read table has its public SELECT policy beside the tenant's.
        let allowed = if command == 'r' && public.is_some() { 2 } else { 1 };
        if permissive.len() > allowed {
            let text = format!(
                "{} permissive policies allow {} ({}): they add up, so each widens the others",
                permissive.len(),
                command_word(command),
                permissive.join(", ")
            );
            problems.push((vec![command], text));
        }
    }
    problems
}

/// A problem of a table's policies: the live probes' commands (`r` reads,
/// `a` inserts, `w` updates) whose outcome it explains, and what it is.
type Problem = (Vec<char>, String);

/// One table's policy problems, and whether its `[[public]]` entry (if
/// any) kept a problem away.
struct TableProblems<'p> {
    table: &'p str,
    problems: Vec<Problem>,
    public_needed: bool,
}

/// The problems of every table with RLS on and policies, and how many
/// tables were looked at.
fn table_problems<'p>(
    model: &Model,
    db: &DbContents,
    policies: &'p [Policy],
    exemptions: &Exemptions,
) -> (usize, Vec<TableProblems<'p>>) {
    let runtime = &model.runtime.name;
    let tables: BTreeSet<(&str, i64)> = policies.iter().map(|p| (p.table.as_str(), p.table_oid)).collect();
    let without_rls: HashSet<i64> = db.relations.iter().filter(|r| !r.rls_enabled).map(|r| r.oid).collect();
    let mut checked = 0;
    let mut found = Vec::new();
    for (table, oid) in tables {
        if without_rls.contains(&oid) {
            continue; // policies without RLS are the `rls-policies` check's
        }
        checked += 1;
        let mine: Vec<&Policy> = policies.iter().filter(|p| p.table_oid == oid && p.applies_to(runtime)).collect();
        let public = exemptions.find(Kind::Public, table);
        let mut problems = content_problems(&mine, public, &model.tenant_setting);
        let public_needed =
            public.is_some() && content_problems(&mine, None, &model.tenant_setting).len() > problems.len();
        for policy in &mine {
            let reads = policy.session_state_read();
            if !reads.is_empty() {
                // Reviewed, it exempts nothing in the live probes: it is not
                // a cross-tenant hole but a way to tell the probes apart.
                let commands = Vec::new();
                let text = format!(
                    "policy `{}` reads session state that is not the tenant ({}): it can let db-check's probe \
                     sessions and the app's see different rows; read only the tenant setting",
                    policy.name,
                    reads.join(", ")
                );
                problems.push((commands, text));
            }
        }
        found.push(TableProblems { table, problems, public_needed });
    }
    (checked, found)
}

/// The commands (`r`, `a`, `w`, `d`) of each table whose policy problems
/// the policy file declares reviewed (`[[policy]]`): what the live probes
/// exempt there, exactly what the catalog check exempts.
pub fn reviewed_commands(
    model: &Model,
    db: &DbContents,
    policies: &[Policy],
    exemptions: &Exemptions,
) -> BTreeMap<String, BTreeSet<char>> {
    let mut reviewed = BTreeMap::new();
    if !exemptions.rls.enabled {
        return reviewed;
    }
    for found in table_problems(model, db, policies, exemptions).1 {
        if exemptions.find(Kind::Policy, found.table).is_some() && !found.problems.is_empty() {
            let commands: &mut BTreeSet<char> = reviewed.entry(found.table.to_string()).or_default();
            commands.extend(found.problems.iter().flat_map(|(commands, _)| commands.iter().copied()));
        }
    }
    reviewed
}

/// Where the policy file contradicts the database, refused before any
/// verdict (`db-check` exits 1): `enabled = false` on a database whose app
/// tables have RLS with policies (every RLS check would say "not
/// applicable"), and a tenant setting that no policy for the runtime role
/// reads while such policies read another custom setting (every probe write
/// would be denied for the wrong reason, hiding a real hole). Only what
/// decides rows counts: the policies' expressions and the functions they
/// call, on app tables with RLS on. Returns a warning per table whose
/// policies read custom settings but not the tenant one: the probes cannot
/// prove it.
pub fn contradictions(
    model: &Model,
    db: &DbContents,
    policies: &[Policy],
    exemptions: &Exemptions,
) -> Result<Vec<String>> {
    let file = exemptions.source_text();
    let with_rls: HashSet<i64> =
        db.relations.iter().filter(|r| r.rls_enabled && model.is_app_schema(&r.schema)).map(|r| r.oid).collect();
    let in_scope: Vec<&Policy> = policies.iter().filter(|p| with_rls.contains(&p.table_oid)).collect();
    if !exemptions.rls.enabled && !in_scope.is_empty() {
        let tables: BTreeSet<&str> = in_scope.iter().map(|p| p.table.as_str()).collect();
        let tables: Vec<&str> = tables.into_iter().collect();
        bail!(
            "{file}: `[rls] enabled = false`, but {} table{} of the app schemas {} row-level security with policies \
             ({}): remove `enabled = false` (and declare `tenant_roots`) so that db-check proves them",
            tables.len(),
            if tables.len() == 1 { "" } else { "s" },
            if tables.len() == 1 { "has" } else { "have" },
            summarise(&tables)
        );
    }
    if !exemptions.rls.enabled {
        return Ok(Vec::new());
    }
    let setting = model.tenant_setting.to_lowercase();
    // Per table: the custom settings its policies for the runtime role read.
    let mut read: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for policy in in_scope.iter().filter(|p| p.applies_to(&model.runtime.name)) {
        let custom = policy.predicate_settings().into_iter().filter(|s| s.contains('.'));
        read.entry(policy.table.as_str()).or_default().extend(custom);
    }
    read.retain(|_, settings| !settings.is_empty());
    let readers = read.values().filter(|settings| settings.contains(&setting)).count();
    let others: BTreeSet<&String> = read.values().flatten().filter(|s| **s != setting).collect();
    if readers == 0 && !others.is_empty() {
        let declared = match &exemptions.rls.tenant_setting {
            Some(_) => format!("`[rls] tenant_setting = \"{}\"`", model.tenant_setting),
            None => format!("the default tenant setting `{}` (no `[rls] tenant_setting`)", model.tenant_setting),
        };
        bail!(
            "{file}: {declared}, but no RLS policy of the database reads it; they read {}. With it the probes would \
             write with a setting the policies never see, so every write is denied for the wrong reason. Set \
             `[rls] tenant_setting` to the setting the app sets per transaction",
            others.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(read
        .iter()
        .filter(|(_, settings)| !settings.contains(&setting))
        .map(|(table, settings)| {
            format!(
                "the policies of {table} read {} but not the tenant setting `{}`: the probes, which set only that, \
                 prove nothing there",
                settings.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                model.tenant_setting
            )
        })
        .collect())
}

/// `a, b, c`, or `a, b, c and n more`.
fn summarise(names: &[&str]) -> String {
    if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..5].join(", "), names.len() - 5)
    }
}

/// Entries of the policy file that name no object of the database: a
/// warning each (a pending migration may create it).
pub fn unknown_entries(model: &Model, db: &DbContents, exemptions: &Exemptions) -> Vec<String> {
    let relation = |name: &str| db.relations.iter().any(|r| format!("{}.{}", r.schema, r.name) == name);
    let mut notes: Vec<String> = exemptions
        .rls
        .tenant_roots
        .iter()
        .filter(|root| !relation(root))
        .map(|root| format!("the tenant root `{root}`"))
        .collect();
    for entry in &exemptions.entries {
        let names_relation =
            matches!(entry.kind, Kind::Table | Kind::View | Kind::Policy | Kind::Public | Kind::Private);
        if names_relation && model.is_app_schema(entry.name.split('.').next().unwrap_or("")) && !relation(&entry.name) {
            notes.push(format!("[[{}]] `{}`", entry.kind.key(), entry.name));
        }
    }
    notes
        .into_iter()
        .map(|what| {
            format!(
                "{}: {what} names no relation of the database (a pending migration may create it; otherwise fix \
                 or remove the entry)",
                exemptions.source_text()
            )
        })
        .collect()
}

/// The `rls-policy-content` check.
pub fn check(
    model: &Model,
    db: &DbContents,
    policies: &[Policy],
    exemptions: &Exemptions,
    used: &mut BTreeSet<(Kind, String)>,
) -> CheckSummary {
    let mut check = CheckSummary::new(CheckId::RlsPolicyContent);
    if !exemptions.rls.enabled {
        check.note(Verdict::NotApplicable, "rls", "not applicable: the app declares no RLS");
        return check;
    }
    let (checked, found) = table_problems(model, db, policies, exemptions);
    check.checked = checked;
    for TableProblems { table, problems, public_needed } in found {
        if public_needed {
            used.insert((Kind::Public, table.to_string()));
        }
        if problems.is_empty() {
            continue;
        }
        let texts: Vec<String> = problems.into_iter().map(|(_, text)| text).collect();
        match exemptions.find(Kind::Policy, table) {
            Some(exemption) => {
                used.insert((Kind::Policy, table.to_string()));
                check.note(Verdict::Exempt, table, format!("{}; exempted: {}", texts.join("; "), exemption.reason));
            }
            None => {
                for problem in texts {
                    check.fail(table, problem);
                }
            }
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permissive policy for every role and command.
    fn policy(using: &str, with_check: &str) -> Policy {
        Policy {
            table_oid: 1,
            table: "public.t".into(),
            name: "p".into(),
            permissive: true,
            command: '*',
            roles: vec!["PUBLIC".into()],
            using: using.into(),
            with_check: with_check.into(),
            function_bodies: String::new(),
            trigger_bodies: String::new(),
        }
    }

    #[test]
    fn finds_the_settings_a_policy_reads() {
        let policy = policy(
            "(owner = (NULLIF(current_setting('app.current_user_id'::text, true), ''::text))::uuid)",
            "(org = current_setting('app.org'::text))",
        );
        assert_eq!(policy.settings_read(), ["app.current_user_id", "app.org"]);
        assert!(always_true("true") && always_true("(true)") && !always_true("(owner = 1)") && !always_true(""));
        assert!(policy.session_state_read().is_empty(), "{:?}", policy.session_state_read());
    }

    #[test]
    fn predicates_that_are_always_true_in_disguise() {
        for e in [
            "true",
            "(true)",
            "(1 = 1)",
            "(id = id)",
            "(NOT false)",
            "((owner = x) OR true)",
            "(true OR (a = b))",
            "(('a'::text = 'a'::text))",
            "((x)::text >= (x)::text)",
            "((1 = 1) AND (NOT false))",
            "(NOT (NOT true))",
            "(NOT (false AND (a = b)))",
            "COALESCE(true, (a = b))",
        ] {
            assert!(always_true(e), "{e}");
        }
        for e in [
            "",
            "(owner = 1)",
            "(a = b)",
            "((a = b) OR (c = d))",
            "(NOT true)",
            "((a = 'x OR true'::text))",
            "((a) = (b)) AND (c = c)",
        ] {
            assert!(!always_true(e), "{e}");
        }
    }

    #[test]
    fn a_policy_that_can_tell_the_probe_from_the_app_is_named() {
        let reads = |using: &str| policy(using, "").session_state_read();
        assert_eq!(reads("(current_setting('lock_timeout'::text) <> '50ms'::text)"), ["setting lock_timeout"]);
        assert_eq!(
            reads("(current_setting(('lock'::text || '_timeout'::text)) = 'x')"),
            ["a setting whose name is computed"]
        );
        assert_eq!(reads("(position('xtask' in current_query()) = 0)"), ["current_query"]);
        assert_eq!(reads("(EXISTS ( SELECT 1 FROM pg_stat_activity))"), ["pg_stat_activity"]);
    }
}
