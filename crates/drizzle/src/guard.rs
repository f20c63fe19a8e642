//! The migration guard: before anything runs, every pending migration is
//! read with PostgreSQL's own parser (`pg_query`, libpg_query) and a
//! statement that would undo the three-role split is refused, naming the
//! migration, the line, the statement and the fix. The parser, not a
//! pattern over text, decides what a statement is: `CREATE ROLE` in a
//! string or a comment is no statement, and one in a `DO` block or a
//! PL/pgSQL function body is found there (PL/pgSQL is read with
//! `pg_query::parse_plpgsql`). Dynamic SQL the parser cannot see into is
//! named as unverifiable. A statement the team reviewed passes when the
//! policy file lists it (`[[migration]]`: the tag, the statement's
//! fingerprint or line, and a reason).
//!
//! What it refuses today: role DDL and memberships; `OWNER TO`,
//! `REASSIGN OWNED` and `CREATE SCHEMA … AUTHORIZATION` to any role but the
//! migrator (or `CURRENT_USER`); acting as another role (`SET ROLE`,
//! `SET SESSION AUTHORIZATION`, `set_config('role', …)`, a database or role
//! default of `role`).

use std::fmt;

use pg_query::protobuf::{self, RoleSpecType};
use pg_query::{NodeEnum, ParserOptions};
use roles::MigrationReview;

/// What a statement would do to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `CREATE`/`ALTER`/`DROP ROLE` (or `USER`, `GROUP`), or a rename.
    RoleStatement { statement: &'static str },
    /// `GRANT role TO role` or `REVOKE role FROM role`.
    Membership { grant: bool },
    /// An object handed to a role other than the migrator.
    Owner { statement: &'static str, to: String },
    /// The session (or every later session) acting as another role.
    ActAs { statement: String },
    /// SQL the parser cannot see into: dynamic `EXECUTE`, a computed
    /// setting name, a `DO` block in another language.
    Unverifiable { what: String },
}

impl Problem {
    fn why(&self) -> String {
        match self {
            Problem::RoleStatement { statement } => format!(
                "{statement}: roles are the tool's (`cargo xtask db-provision`), and the migrator may not change them"
            ),
            Problem::Membership { grant: true } => {
                "GRANT of a role to a role: a membership hands one role's powers to another".to_string()
            }
            Problem::Membership { grant: false } => {
                "REVOKE of a role from a role: memberships are the tool's (`cargo xtask db-provision`)".to_string()
            }
            Problem::Owner { statement, to } => {
                format!(
                    "{statement} `{to}`: every object is the migrator's; another owner could drop it or switch RLS off"
                )
            }
            Problem::ActAs { statement } => {
                format!("{statement}: the migration would act as another role than the migrator")
            }
            Problem::Unverifiable { what } => format!("{what}: the guard cannot see what it runs"),
        }
    }

    fn fix(&self) -> &'static str {
        match self {
            Problem::RoleStatement { .. } => {
                "remove it (for drizzle-kit's CREATE ROLE: declare the role `pgRole(…).existing()`, as \
                 platform/db/schema/roles.ts does)"
            }
            Problem::Membership { .. } => "remove it; the three roles are members of nothing",
            Problem::Owner { .. } => "remove it, or leave the object to the migrator (`OWNER TO CURRENT_USER`)",
            Problem::ActAs { .. } => "remove it; a migration runs as the migrator from start to end",
            Problem::Unverifiable { .. } => "write the statements out, or review it",
        }
    }
}

/// One refused statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub tag: String,
    /// 1-based line of the file where the statement starts.
    pub line: usize,
    /// The statement, on one line, shortened.
    pub statement: String,
    /// `pg_query`'s fingerprint of the statement (whitespace and constants
    /// do not change it), for a `[[migration]]` entry.
    pub fingerprint: String,
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` line {}: `{}`: {}; {}, or, once reviewed, list it in the policy file: [[migration]] tag = \"{}\", \
             fingerprint = \"{}\", reason = \"…\"",
            self.tag,
            self.line,
            self.statement,
            self.problem.why(),
            self.problem.fix(),
            self.tag,
            self.fingerprint
        )
    }
}

/// The roles the guard knows by name.
#[derive(Clone, Debug)]
pub struct Names {
    /// The migrator: the one role objects may be handed to.
    pub migrator: String,
}

/// What the guard found in one migration, and the reviews it used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Statements refused: not reviewed.
    pub refused: Vec<Finding>,
    /// Statements a `[[migration]]` entry lets through.
    pub reviewed: Vec<Finding>,
}

/// What the guard says of a folder's pending migrations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub refused: Vec<Finding>,
    pub reviewed: Vec<Finding>,
    /// `[[migration]]` entries that match nothing, said (not refused).
    pub notes: Vec<String>,
}

/// Scans one migration's text; `reviews` are the policy file's entries.
pub fn scan(tag: &str, text: &str, names: &Names, reviews: &[MigrationReview]) -> Scan {
    // A byte order mark has its own refusal; read past it (three spaces keep the offsets).
    let unmarked;
    let text = match text.strip_prefix('\u{FEFF}') {
        Some(rest) => {
            unmarked = format!("   {rest}");
            unmarked.as_str()
        }
        None => text,
    };
    let mut found = Vec::new();
    match pg_query::parse(text, ParserOptions::DEFAULT) {
        Err(error) => found.push(Finding {
            tag: tag.to_string(),
            line: 1,
            statement: String::new(),
            fingerprint: String::new(),
            problem: Problem::Unverifiable { what: format!("the parser cannot read the file ({error})") },
        }),
        Ok(parsed) => {
            for raw in &parsed.protobuf.stmts {
                let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else { continue };
                let start = usize::try_from(raw.stmt_location).unwrap_or(0).min(text.len());
                let end = match usize::try_from(raw.stmt_len).unwrap_or(0) {
                    0 => text.len(),
                    len => (start + len).min(text.len()),
                };
                let sql = text.get(start..end).unwrap_or_default();
                let mut problems = Vec::new();
                statement_problems(node, sql, names, &mut problems);
                let (line, shown) = locate(text, start, sql);
                for problem in problems {
                    let fingerprint =
                        pg_query::fingerprint(sql, ParserOptions::DEFAULT, 0).map(|f| f.hex).unwrap_or_default();
                    found.push(Finding { tag: tag.to_string(), line, statement: shown.clone(), fingerprint, problem });
                }
            }
        }
    }
    let (reviewed, refused) = found.into_iter().partition(|f| reviews.iter().any(|r| matches(r, f)));
    Scan { refused, reviewed }
}

/// Whether a review entry names this finding.
pub fn matches(review: &MigrationReview, finding: &Finding) -> bool {
    review.tag == finding.tag
        && (review.fingerprint.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(&finding.fingerprint))
            || review.line == Some(finding.line))
}

/// The line the statement starts on (past blank lines and comments) and
/// the statement shortened to one line.
fn locate(text: &str, start: usize, sql: &str) -> (usize, String) {
    let mut offset = start;
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start();
        offset += rest.len() - trimmed.len();
        if let Some(comment) = trimmed.strip_prefix("--") {
            let skip = comment.find('\n').map_or(comment.len(), |i| i + 1) + 2;
            offset += skip;
            rest = &trimmed[skip..];
        } else if let (true, Some(end)) = (trimmed.starts_with("/*"), trimmed.find("*/")) {
            offset += end + 2;
            rest = &trimmed[end + 2..];
        } else {
            rest = trimmed;
            break;
        }
    }
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    let one_line: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown = match one_line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    };
    (line, shown)
}

/// The problems of one top-level statement, its PL/pgSQL bodies included.
fn statement_problems(node: &NodeEnum, sql: &str, names: &Names, problems: &mut Vec<Problem>) {
    tree_problems(node, names, problems);
    match node {
        NodeEnum::DoStmt(stmt) => {
            let language = option_string(&stmt.args, "language").unwrap_or_else(|| "plpgsql".to_string());
            if language.eq_ignore_ascii_case("plpgsql") {
                plpgsql_problems(sql, names, problems);
            } else {
                problems.push(Problem::Unverifiable { what: format!("a DO block in LANGUAGE {language}") });
            }
        }
        NodeEnum::CreateFunctionStmt(stmt) => {
            let language = option_string(&stmt.options, "language").unwrap_or_default();
            if language.eq_ignore_ascii_case("plpgsql") {
                plpgsql_problems(sql, names, problems);
            } else if language.eq_ignore_ascii_case("sql") {
                // `AS '…'`: the body is text; `BEGIN ATOMIC` was parsed with the statement.
                if let Some(body) = option_strings(&stmt.options, "as").first() {
                    sql_text_problems(body, ParserOptions::DEFAULT, names, problems);
                }
            }
        }
        _ => {}
    }
}

/// A `DefElem` option's string value (`language`, …).
fn option_string(options: &[protobuf::Node], name: &str) -> Option<String> {
    option_strings(options, name).into_iter().next()
}

fn option_strings(options: &[protobuf::Node], name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for option in options {
        let Some(NodeEnum::DefElem(def)) = option.node.as_ref() else { continue };
        if def.defname != name {
            continue;
        }
        match def.arg.as_ref().and_then(|a| a.node.as_ref()) {
            Some(NodeEnum::String(s)) => found.push(s.sval.clone()),
            Some(NodeEnum::List(list)) => found.extend(list.items.iter().filter_map(|item| match item.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })),
            _ => {}
        }
    }
    found
}

/// SQL text found inside a statement (a function body, a PL/pgSQL
/// expression, a constant `EXECUTE` string), read and checked the same way.
fn sql_text_problems(text: &str, mode: ParserOptions, names: &Names, problems: &mut Vec<Problem>) -> bool {
    let Ok(parsed) = pg_query::parse(text, mode) else { return false };
    for raw in &parsed.protobuf.stmts {
        if let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) {
            statement_problems(node, text, names, problems);
        }
    }
    true
}

/// A PL/pgSQL body (`DO` or `CREATE FUNCTION … LANGUAGE plpgsql`): every
/// embedded statement and expression, and every dynamic `EXECUTE`.
fn plpgsql_problems(sql: &str, names: &Names, problems: &mut Vec<Problem>) {
    match pg_query::parse_plpgsql(sql) {
        Ok(tree) => walk_plpgsql(&tree, names, problems),
        Err(error) => {
            problems.push(Problem::Unverifiable { what: format!("a PL/pgSQL body the parser cannot read ({error})") })
        }
    }
}

/// The statement kinds of PL/pgSQL that run SQL built at run time, and
/// the field holding the string.
const DYNAMIC: [(&str, &str); 4] = [
    ("PLpgSQL_stmt_dynexecute", "query"),
    ("PLpgSQL_stmt_dynfors", "query"),
    ("PLpgSQL_stmt_open", "dynquery"),
    ("PLpgSQL_stmt_return_query", "dynquery"),
];

fn walk_plpgsql(value: &serde_json::Value, names: &Names, problems: &mut Vec<Problem>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk_plpgsql(item, names, problems)),
        serde_json::Value::Object(map) => {
            for (kind, field) in DYNAMIC {
                if let Some(expr) = map.get(kind).and_then(|stmt| stmt.get(field)).and_then(|e| e.get("PLpgSQL_expr")) {
                    dynamic_problems(expr, names, problems);
                }
            }
            if let Some(expr) = map.get("PLpgSQL_expr") {
                let query = expr.get("query").and_then(|q| q.as_str()).unwrap_or_default();
                let mode = expr.get("parseMode").and_then(|m| m.as_i64()).unwrap_or(0);
                let mode = ParserOptions::from(i32::try_from(mode).unwrap_or(0));
                if !sql_text_problems(query, mode, names, problems) {
                    problems.push(Problem::Unverifiable {
                        what: "a PL/pgSQL expression the parser cannot read".to_string(),
                    });
                }
            }
            map.values().for_each(|v| walk_plpgsql(v, names, problems));
        }
        _ => {}
    }
}

/// `EXECUTE 'constant'` is read as SQL; anything built at run time cannot be.
fn dynamic_problems(expr: &serde_json::Value, names: &Names, problems: &mut Vec<Problem>) {
    let query = expr.get("query").and_then(|q| q.as_str()).unwrap_or_default();
    match constant_string(query) {
        Some(sql) if sql_text_problems(&sql, ParserOptions::DEFAULT, names, problems) => {}
        _ => problems.push(Problem::Unverifiable { what: format!("dynamic SQL (EXECUTE {})", shorten(query)) }),
    }
}

/// The string an expression is, when it is one string literal and nothing else.
fn constant_string(expr: &str) -> Option<String> {
    let parsed = pg_query::parse(expr, ParserOptions::PLPGSQL_EXPR).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else { return None };
    let Some(NodeEnum::SelectStmt(select)) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else { return None };
    let [target] = select.target_list.as_slice() else { return None };
    if !select.from_clause.is_empty() || select.where_clause.is_some() {
        return None;
    }
    let Some(NodeEnum::ResTarget(target)) = target.node.as_ref() else { return None };
    match target.val.as_ref().and_then(|v| v.node.as_ref()) {
        Some(NodeEnum::AConst(protobuf::AConst { val: Some(protobuf::a_const::Val::Sval(s)), .. })) => {
            Some(s.sval.clone())
        }
        _ => None,
    }
}

fn shorten(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Every node of a parsed statement, nested statements included: the
/// tree as `pg_query` serializes it, one key naming each node's type.
fn tree_problems(node: &NodeEnum, names: &Names, problems: &mut Vec<Problem>) {
    match serde_json::to_value(node) {
        Ok(tree) => walk_tree(&tree, names, problems),
        Err(error) => {
            problems.push(Problem::Unverifiable { what: format!("a statement the guard cannot walk ({error})") })
        }
    }
}

fn walk_tree(value: &serde_json::Value, names: &Names, problems: &mut Vec<Problem>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk_tree(item, names, problems)),
        serde_json::Value::Object(map) => {
            for (kind, node) in map {
                node_problems(kind, node, names, problems);
                walk_tree(node, names, problems);
            }
        }
        _ => {}
    }
}

fn int(node: &serde_json::Value, field: &str) -> i64 {
    node.get(field).and_then(serde_json::Value::as_i64).unwrap_or(-1)
}

fn text<'v>(node: &'v serde_json::Value, field: &str) -> &'v str {
    node.get(field).and_then(serde_json::Value::as_str).unwrap_or_default()
}

/// One node, by the name of its type.
fn node_problems(kind: &str, node: &serde_json::Value, names: &Names, problems: &mut Vec<Problem>) {
    let role_statement = |statement| Problem::RoleStatement { statement };
    match kind {
        "CreateRoleStmt" => problems.push(role_statement("CREATE ROLE")),
        "AlterRoleStmt" => problems.push(role_statement("ALTER ROLE")),
        "AlterRoleSetStmt" => problems.push(role_statement("ALTER ROLE … SET")),
        "DropRoleStmt" => problems.push(role_statement("DROP ROLE")),
        "RenameStmt" if int(node, "rename_type") == protobuf::ObjectType::ObjectRole as i64 => {
            problems.push(role_statement("ALTER ROLE … RENAME"))
        }
        "GrantRoleStmt" => problems.push(Problem::Membership {
            grant: node.get("is_grant").and_then(serde_json::Value::as_bool).unwrap_or(true),
        }),
        "AlterOwnerStmt" => owner(node.get("newowner"), "OWNER TO", names, problems),
        "AlterTableCmd" if int(node, "subtype") == protobuf::AlterTableType::AtChangeOwner as i64 => {
            owner(node.get("newowner"), "OWNER TO", names, problems)
        }
        "ReassignOwnedStmt" => owner(node.get("newrole"), "REASSIGN OWNED … TO", names, problems),
        "CreateSchemaStmt" => owner(node.get("authrole"), "CREATE SCHEMA … AUTHORIZATION", names, problems),
        "VariableSetStmt" => acting_setting(node, "", problems),
        "AlterDatabaseSetStmt" => {
            if let Some(set) = node.get("setstmt").filter(|s| !s.is_null()) {
                acting_setting(set, "ALTER DATABASE … ", problems);
            }
        }
        "FuncCall" => set_config(node, problems),
        _ => {}
    }
}

/// A new owner: the migrator by name, or the current role (the migrator,
/// the runner's session being the migrator's). `SESSION_USER` is the
/// login, which may be the migrator's alternate login: refused too.
fn owner(spec: Option<&serde_json::Value>, statement: &'static str, names: &Names, problems: &mut Vec<Problem>) {
    let Some(spec) = spec.filter(|s| !s.is_null()) else { return };
    let name = text(spec, "rolename");
    let to = match RoleSpecType::try_from(i32::try_from(int(spec, "roletype")).unwrap_or(0)) {
        Ok(RoleSpecType::RolespecCurrentUser | RoleSpecType::RolespecCurrentRole) => return,
        Ok(RoleSpecType::RolespecCstring) if name == names.migrator => return,
        Ok(RoleSpecType::RolespecCstring) => name.to_string(),
        Ok(RoleSpecType::RolespecSessionUser) => "SESSION_USER".to_string(),
        Ok(RoleSpecType::RolespecPublic) => "PUBLIC".to_string(),
        _ => "an unknown role".to_string(),
    };
    problems.push(Problem::Owner { statement, to });
}

/// `SET ROLE`, `SET`/`RESET SESSION AUTHORIZATION` (and the same as a
/// database default). `RESET ROLE` returns to the session's own role and
/// passes.
fn acting_setting(set: &serde_json::Value, prefix: &str, problems: &mut Vec<Problem>) {
    let kind = int(set, "kind");
    let reset =
        kind == protobuf::VariableSetKind::VarReset as i64 || kind == protobuf::VariableSetKind::VarResetAll as i64;
    match text(set, "name").to_ascii_lowercase().as_str() {
        "role" if !reset => problems.push(Problem::ActAs { statement: format!("{prefix}SET ROLE") }),
        "session_authorization" => problems.push(Problem::ActAs {
            statement: format!("{prefix}{} SESSION AUTHORIZATION", if reset { "RESET" } else { "SET" }),
        }),
        _ => {}
    }
}

/// The string a serialized `Node` holds (`{"node": {"String": {"sval": …}}}`
/// or an `AConst` string).
fn node_string(node: &serde_json::Value) -> Option<&str> {
    let inner = node.get("node")?;
    inner
        .get("String")
        .and_then(|s| s.get("sval"))
        .or_else(|| inner.get("AConst")?.get("val")?.get("Sval")?.get("sval"))
        .and_then(serde_json::Value::as_str)
}

/// `set_config('role', …)` is `SET ROLE` by another name; a setting name
/// computed at run time cannot be checked.
fn set_config(call: &serde_json::Value, problems: &mut Vec<Problem>) {
    let list = |field: &str| call.get(field).and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    let name = list("funcname").last().and_then(node_string).map(str::to_ascii_lowercase);
    if name.as_deref() != Some("set_config") {
        return;
    }
    let setting = list("args").first().and_then(node_string).map(str::to_ascii_lowercase);
    match setting.as_deref() {
        Some(setting @ ("role" | "session_authorization")) => {
            problems.push(Problem::ActAs { statement: format!("set_config('{setting}', …)") })
        }
        Some(_) => {}
        None => problems
            .push(Problem::Unverifiable { what: "set_config with a setting name computed at run time".to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names { migrator: "app_migrator".to_string() }
    }

    fn problems(sql: &str) -> Vec<Problem> {
        scan("0001_x", sql, &names(), &[]).refused.into_iter().map(|f| f.problem).collect()
    }

    #[test]
    fn what_the_app_and_drizzle_write_passes() {
        let sql = "CREATE TABLE \"notes\" (\"id\" uuid PRIMARY KEY, \"body\" text);\n--> statement-breakpoint\n\
                   ALTER TABLE \"notes\" ENABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
                   CREATE POLICY \"p\" ON \"notes\" TO \"app_user\" USING (true);\n\
                   DO $$ BEGIN ALTER TABLE \"notes\" ADD CONSTRAINT \"c\" CHECK (true); \
                   EXCEPTION WHEN duplicate_object THEN null; END $$;\n\
                   -- CREATE ROLE in a comment\nSELECT 'CREATE ROLE x', $q$GRANT a TO b$q$;\n\
                   ALTER TABLE notes OWNER TO app_migrator; ALTER SCHEMA public OWNER TO CURRENT_USER;\n\
                   RESET ROLE; SELECT set_config('app.current_user_id', '1', true);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n\
                   GRANT SELECT ON notes TO app_user;";
        assert_eq!(problems(sql), []);
    }

    #[test]
    fn every_class_is_named() {
        let cases: [(&str, Problem); 16] = [
            ("CREATE ROLE \"app_user\";", Problem::RoleStatement { statement: "CREATE ROLE" }),
            ("create user x password 'y';", Problem::RoleStatement { statement: "CREATE ROLE" }),
            ("ALTER ROLE app_user BYPASSRLS;", Problem::RoleStatement { statement: "ALTER ROLE" }),
            ("ALTER ROLE app_user SET search_path = x;", Problem::RoleStatement { statement: "ALTER ROLE … SET" }),
            ("DROP ROLE IF EXISTS x;", Problem::RoleStatement { statement: "DROP ROLE" }),
            ("ALTER ROLE x RENAME TO y;", Problem::RoleStatement { statement: "ALTER ROLE … RENAME" }),
            ("GRANT app_migrator TO app_user;", Problem::Membership { grant: true }),
            ("REVOKE app_service FROM app_user;", Problem::Membership { grant: false }),
            ("ALTER TABLE notes OWNER TO app_user;", Problem::Owner { statement: "OWNER TO", to: "app_user".into() }),
            (
                "ALTER FUNCTION f() OWNER TO SESSION_USER;",
                Problem::Owner { statement: "OWNER TO", to: "SESSION_USER".into() },
            ),
            (
                "REASSIGN OWNED BY app_migrator TO app_user;",
                Problem::Owner { statement: "REASSIGN OWNED … TO", to: "app_user".into() },
            ),
            (
                "CREATE SCHEMA s AUTHORIZATION app_user;",
                Problem::Owner { statement: "CREATE SCHEMA … AUTHORIZATION", to: "app_user".into() },
            ),
            ("SET ROLE app_user;", Problem::ActAs { statement: "SET ROLE".into() }),
            ("SET LOCAL ROLE NONE;", Problem::ActAs { statement: "SET ROLE".into() }),
            ("RESET SESSION AUTHORIZATION;", Problem::ActAs { statement: "RESET SESSION AUTHORIZATION".into() }),
            (
                "SELECT set_config('role', 'app_user', false);",
                Problem::ActAs { statement: "set_config('role', …)".into() },
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(problems(sql), [expected], "{sql}");
        }
        assert_eq!(
            problems("ALTER DATABASE app SET role = 'app_user';"),
            [Problem::ActAs { statement: "ALTER DATABASE … SET ROLE".into() }]
        );
    }

    #[test]
    fn plpgsql_bodies_are_read_and_dynamic_sql_is_named() {
        let role_in_do = "DO $$ BEGIN IF true THEN CREATE ROLE x; END IF; END $$;";
        assert_eq!(problems(role_in_do), [Problem::RoleStatement { statement: "CREATE ROLE" }]);
        let constant = "DO $$ BEGIN EXECUTE 'GRANT app_migrator TO app_user'; END $$;";
        assert_eq!(problems(constant), [Problem::Membership { grant: true }]);
        let built = "DO $$ DECLARE r text := 'x'; BEGIN EXECUTE format('CREATE ROLE %I', r); END $$;";
        assert!(matches!(problems(built).as_slice(), [Problem::Unverifiable { what }] if what.contains("dynamic SQL")));
        let perform = "DO $$ BEGIN PERFORM set_config('role', 'app_user', false); END $$;";
        assert_eq!(problems(perform), [Problem::ActAs { statement: "set_config('role', …)".into() }]);
        let assign = "DO $$ DECLARE v text; BEGIN v := set_config('role', 'app_user', false); END $$;";
        assert_eq!(problems(assign), [Problem::ActAs { statement: "set_config('role', …)".into() }]);
        let function = "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN DROP ROLE x; END $f$;";
        assert_eq!(problems(function), [Problem::RoleStatement { statement: "DROP ROLE" }]);
        let sql_body = "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $f$ ALTER TABLE t OWNER TO app_user $f$;";
        assert_eq!(problems(sql_body), [Problem::Owner { statement: "OWNER TO", to: "app_user".into() }]);
        let other = "DO LANGUAGE plpython3u $$ plpy.execute('CREATE ROLE x') $$;";
        assert!(matches!(problems(other).as_slice(), [Problem::Unverifiable { .. }]));
        let computed = "SELECT set_config(name, 'x', false) FROM (VALUES ('role')) v(name);";
        assert!(matches!(problems(computed).as_slice(), [Problem::Unverifiable { .. }]));
    }

    #[test]
    fn a_finding_names_the_line_and_a_review_lets_it_through() {
        let sql = "-- seed\nCREATE TABLE t (id int);\n--> statement-breakpoint\n\n  -- the role\nCREATE ROLE   reporting\n  LOGIN;\n";
        let scan = scan("0003_roles", sql, &names(), &[]);
        let [finding] = scan.refused.as_slice() else { panic!("{scan:?}") };
        assert_eq!((finding.line, finding.statement.as_str()), (6, "CREATE ROLE reporting LOGIN"));
        assert_eq!(finding.fingerprint.len(), 16);
        let text = finding.to_string();
        assert!(text.starts_with("`0003_roles` line 6: `CREATE ROLE reporting LOGIN`: CREATE ROLE"), "{text}");
        assert!(text.contains(".existing()") && text.contains(&finding.fingerprint), "{text}");
        // The same statement, spaced otherwise, has the same fingerprint.
        let respaced = scan_one("CREATE ROLE reporting LOGIN;");
        assert_eq!(respaced.fingerprint, finding.fingerprint);
        let by_fingerprint = MigrationReview {
            tag: "0003_roles".into(),
            fingerprint: Some(finding.fingerprint.to_uppercase()),
            line: None,
            reason: "reviewed".into(),
        };
        let by_line = MigrationReview { fingerprint: None, line: Some(6), ..by_fingerprint.clone() };
        let elsewhere = MigrationReview { tag: "0004_other".into(), ..by_fingerprint.clone() };
        for (review, passes) in [(by_fingerprint, true), (by_line, true), (elsewhere, false)] {
            let scanned = super::scan("0003_roles", sql, &names(), std::slice::from_ref(&review));
            assert_eq!(
                (scanned.refused.is_empty(), scanned.reviewed.len()),
                (passes, usize::from(passes)),
                "{review:?}"
            );
        }
    }

    fn scan_one(sql: &str) -> Finding {
        scan("0003_roles", sql, &names(), &[]).refused.remove(0)
    }

    #[test]
    fn a_file_the_parser_cannot_read_is_named() {
        assert!(
            matches!(problems("CREATE TABLE (;").as_slice(), [Problem::Unverifiable { what }] if what.contains("cannot read"))
        );
    }
}
