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
    /// The fingerprint of the statement's text (only whitespace may
    /// change), for a `[[migration]]` entry.
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

/// The marker drizzle splits a migration at, wherever it appears (see
/// `folder::BREAKPOINT`): each piece is sent to the server on its own.
pub(crate) const BREAKPOINT: &str = "--> statement-breakpoint";

/// Scans one migration's text; `reviews` are the policy file's entries.
/// The text is cut where both engines cut it (at every breakpoint marker,
/// which PostgreSQL would read as a comment), and each piece is read as
/// the server will receive it.
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
    let mut offset = 0;
    for piece in text.split(BREAKPOINT) {
        scan_piece(tag, text, offset, piece, names, &mut found);
        offset += piece.len() + BREAKPOINT.len();
    }
    let (reviewed, refused) = found.into_iter().partition(|f| reviews.iter().any(|r| matches(r, f)));
    Scan { refused, reviewed }
}

/// One piece of a migration, at `offset` in `text`.
fn scan_piece(tag: &str, text: &str, offset: usize, piece: &str, names: &Names, found: &mut Vec<Finding>) {
    let parsed = match pg_query::parse(piece, ParserOptions::DEFAULT) {
        Ok(parsed) => parsed,
        Err(error) => {
            let (line, shown) = locate(text, offset, piece);
            found.push(Finding {
                tag: tag.to_string(),
                line,
                statement: shown.clone(),
                fingerprint: fingerprint(&shown),
                problem: Problem::Unverifiable { what: format!("the parser cannot read it ({error})") },
            });
            return;
        }
    };
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else { continue };
        let start = usize::try_from(raw.stmt_location).unwrap_or(0).min(piece.len());
        let end = match usize::try_from(raw.stmt_len).unwrap_or(0) {
            0 => piece.len(),
            len => (start + len).min(piece.len()),
        };
        let sql = piece.get(start..end).unwrap_or_default();
        let mut problems = Vec::new();
        statement_problems(node, sql, names, &mut problems);
        let (line, shown) = locate(text, offset + start, sql);
        for problem in problems {
            found.push(Finding {
                tag: tag.to_string(),
                line,
                statement: shown.clone(),
                fingerprint: fingerprint(&normalized(sql)),
                problem,
            });
        }
    }
}

/// A statement's text past its leading comments, its whitespace runs made
/// single spaces: what a review's fingerprint is taken of.
fn normalized(sql: &str) -> String {
    let (skipped, _) = skip_comments(sql);
    sql[skipped..].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first 16 hex digits of the SHA-256 of the normalized statement:
/// any change but whitespace (another role name, another setting) gives
/// another fingerprint, so a review covers exactly what was reviewed.
fn fingerprint(normalized: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(normalized.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Whether a review entry names this finding: its tag, and its fingerprint
/// and line (both, when it gives both).
pub fn matches(review: &MigrationReview, finding: &Finding) -> bool {
    let fingerprint = review.fingerprint.as_deref().is_none_or(|f| f.eq_ignore_ascii_case(&finding.fingerprint));
    let line = review.line.is_none_or(|line| line == finding.line);
    review.tag == finding.tag && fingerprint && line && (review.fingerprint.is_some() || review.line.is_some())
}

/// How many bytes of leading blank space and comments (`--`, nested
/// `/* */`) `sql` starts with, and whether a block comment was left open.
fn skip_comments(sql: &str) -> (usize, bool) {
    let bytes = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes[i..].starts_with(b"--") {
            i = sql[i..].find('\n').map_or(sql.len(), |n| i + n + 1);
        } else if bytes[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            if depth > 0 {
                return (sql.len(), true);
            }
        } else {
            return (i, false);
        }
    }
}

/// The line the statement starts on (past blank lines and comments) and
/// the statement shortened to one line.
fn locate(text: &str, start: usize, sql: &str) -> (usize, String) {
    let (skipped, _) = skip_comments(sql);
    let offset = (start + skipped).min(text.len());
    let line = text[..offset].matches('\n').count() + 1;
    let one_line = normalized(sql);
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
            let body = option_string(&stmt.args, "as").unwrap_or_default();
            if language.eq_ignore_ascii_case("plpgsql") {
                plpgsql_problems(sql, &body, names, problems);
            } else {
                problems.push(Problem::Unverifiable { what: format!("a DO block in LANGUAGE {language}") });
            }
        }
        NodeEnum::CreateFunctionStmt(stmt) => {
            let language = option_string(&stmt.options, "language").unwrap_or_default();
            let body = option_strings(&stmt.options, "as");
            if language.eq_ignore_ascii_case("plpgsql") {
                plpgsql_problems(sql, body.first().map_or("", String::as_str), names, problems);
            } else if language.is_empty() || language.eq_ignore_ascii_case("sql") {
                // No LANGUAGE: a SQL-standard body (`BEGIN ATOMIC`, `RETURN …`), which is SQL.
                // `AS '…'`: the body is text; `BEGIN ATOMIC` was parsed with the statement.
                if let Some(body) = body.first() {
                    if !sql_text_problems(body, ParserOptions::DEFAULT, names, problems) {
                        problems
                            .push(Problem::Unverifiable { what: "a SQL function body the parser cannot read".into() });
                    }
                }
            } else {
                // Another language's body (plv8, plperl, …) may run SQL the guard cannot see.
                problems.push(Problem::Unverifiable { what: format!("a function body in LANGUAGE {language}") });
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
fn plpgsql_problems(sql: &str, body: &str, names: &Names, problems: &mut Vec<Problem>) {
    match pg_query::parse_plpgsql(sql) {
        Ok(tree) => {
            walk_plpgsql(&tree, names, problems);
            record_defaults(&tree, body, problems);
        }
        // libpg_query's PL/pgSQL parser knows no schema but `pg_catalog` and
        // `public`: a body typed with the app's own schema fails to parse.
        // Its tokens then decide: nothing the guard looks for, it passes.
        Err(error) => match risky_tokens(body) {
            None => {}
            Some(found) => problems.push(Problem::Unverifiable {
                what: format!("a PL/pgSQL body the parser cannot read ({error}) that mentions {found}"),
            }),
        },
    }
}

/// The keywords and names of what the guard refuses, as the scanner reads
/// `body` (strings and comments are single tokens, so they do not count):
/// the first found, or `None`.
fn risky_tokens(body: &str) -> Option<String> {
    const RISKY: [&str; 9] =
        ["role", "user", "group", "authorization", "owner", "owned", "execute", "set_config", "grant"];
    let Ok(scanned) = pg_query::scan(body) else { return Some("text the scanner cannot read".to_string()) };
    scanned.tokens.iter().find_map(|token| {
        let start = usize::try_from(token.start).ok()?;
        let end = usize::try_from(token.end).ok()?;
        let word = body.get(start..end)?.to_ascii_lowercase();
        RISKY.contains(&word.as_str()).then(|| format!("`{word}`"))
    })
}

/// libpg_query's PL/pgSQL tree leaves out a record variable's default
/// (`r record := ROW(…)`), which runs when the block starts: a record
/// declared with one is unverifiable.
fn record_defaults(tree: &serde_json::Value, body: &str, problems: &mut Vec<Problem>) {
    let mut records = Vec::new();
    collect_records(tree, &mut records);
    // The declarations: what comes before the first `BEGIN` token.
    let lower = body.to_ascii_lowercase();
    let begin = pg_query::scan(&lower).ok().and_then(|scanned| {
        scanned.tokens.iter().find_map(|t| {
            let (start, end) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
            (lower.get(start..end) == Some("begin")).then_some(start)
        })
    });
    let declarations: Vec<&str> = lower[..begin.unwrap_or(0)].split(';').collect();
    for name in records {
        let with_default = declarations.iter().any(|declaration| {
            let words: Vec<&str> = declaration.split_whitespace().collect();
            let start = usize::from(words.first() == Some(&"declare"));
            words.get(start) == Some(&name.as_str())
                && (declaration.contains(":=") || declaration.contains('=') || words.contains(&"default"))
        });
        if with_default {
            problems.push(Problem::Unverifiable {
                what: format!("the default of record variable `{name}` (the parser does not show it)"),
            });
        }
    }
}

fn collect_records(value: &serde_json::Value, records: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_records(item, records)),
        serde_json::Value::Object(map) => {
            if let Some(name) = map.get("PLpgSQL_rec").and_then(|r| r.get("refname")).and_then(|n| n.as_str()) {
                records.push(name.to_ascii_lowercase());
            }
            map.values().for_each(|v| collect_records(v, records));
        }
        _ => {}
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
        "CreateTableSpaceStmt" => owner(node.get("owner"), "CREATE TABLESPACE … OWNER", names, problems),
        "CreatedbStmt" => {
            let options = node.get("options").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
            for option in options.iter().filter_map(|o| o.get("node")?.get("DefElem")) {
                if text(option, "defname") == "owner" {
                    let name = option.get("arg").and_then(node_string).unwrap_or("an unknown role");
                    if name != names.migrator && !name.eq_ignore_ascii_case("current_user") {
                        problems.push(Problem::Owner { statement: "CREATE DATABASE … OWNER", to: name.to_string() });
                    }
                }
            }
        }
        "VariableSetStmt" => acting_setting(node, "", problems),
        "AlterDatabaseSetStmt" => {
            if let Some(set) = node.get("setstmt").filter(|s| !s.is_null()) {
                acting_setting(set, "ALTER DATABASE … ", problems);
            }
        }
        "FuncCall" => set_config(node, names, problems),
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
    // `SET role TO DEFAULT` is `RESET ROLE`.
    let reset = kind == protobuf::VariableSetKind::VarReset as i64
        || kind == protobuf::VariableSetKind::VarResetAll as i64
        || kind == protobuf::VariableSetKind::VarSetDefault as i64;
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
    let mut inner = node.get("node")?;
    // `'role'::text`: the cast's argument.
    while let Some(arg) = inner.get("TypeCast").and_then(|cast| cast.get("arg")).and_then(|arg| arg.get("node")) {
        inner = arg;
    }
    inner
        .get("String")
        .and_then(|s| s.get("sval"))
        .or_else(|| inner.get("AConst")?.get("val")?.get("Sval")?.get("sval"))
        .and_then(serde_json::Value::as_str)
}

/// Functions that run SQL passed as text.
const RUNS_SQL_TEXT: [&str; 7] = [
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "dblink",
    "dblink_exec",
];

/// `set_config('role', …)` is `SET ROLE` by another name; a setting name
/// computed at run time cannot be checked.
fn set_config(call: &serde_json::Value, names: &Names, problems: &mut Vec<Problem>) {
    let list = |field: &str| call.get(field).and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    let name = list("funcname").last().and_then(node_string).map(str::to_ascii_lowercase);
    if let Some(function) = name.as_deref().filter(|n| RUNS_SQL_TEXT.contains(n)) {
        // Functions that run SQL given as text: every argument must be a
        // constant, and each string is read as SQL.
        let args = list("args");
        let constant = |arg: &serde_json::Value| {
            let mut inner = arg.get("node");
            while let Some(arg) = inner.and_then(|n| n.get("TypeCast")).and_then(|c| c.get("arg")) {
                inner = arg.get("node");
            }
            inner.is_some_and(|n| n.get("AConst").is_some())
        };
        if !args.iter().all(constant) {
            problems.push(Problem::Unverifiable { what: format!("{function}() of SQL built at run time") });
            return;
        }
        for sql in args.iter().filter_map(node_string) {
            sql_text_problems(sql, ParserOptions::DEFAULT, names, problems);
        }
        return;
    }
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
    fn text_after_a_breakpoint_marker_is_read_as_the_server_gets_it() {
        // PostgreSQL reads `-->` as a comment; drizzle cuts there and sends the rest.
        let sql = "CREATE TABLE t (id int);\n--> statement-breakpoint SET ROLE app_user;\n";
        let scan = scan("0001_x", sql, &names(), &[]);
        let [finding] = scan.refused.as_slice() else { panic!("{scan:?}") };
        assert_eq!((finding.line, finding.statement.as_str()), (2, "SET ROLE app_user"));
    }

    #[test]
    fn a_review_covers_exactly_the_statement_reviewed() {
        let reviewed = scan_one("ALTER TABLE t OWNER TO reporting;");
        for other in ["ALTER TABLE t OWNER TO app_user;", "ALTER TABLE t OWNER TO  reporting ;"] {
            let same = scan_one(other).fingerprint == reviewed.fingerprint;
            assert_eq!(same, other.contains("reporting"), "{other}");
        }
        let set = scan_one("SET LOCAL ROLE app_migrator;");
        assert_ne!(set.fingerprint, scan_one("SET LOCAL ROLE app_service;").fingerprint);
        // With both a fingerprint and a line, both must match.
        let review = MigrationReview {
            tag: "0003_roles".into(),
            fingerprint: Some(reviewed.fingerprint.clone()),
            line: Some(2),
            reason: "r".into(),
        };
        assert!(!matches(&review, &reviewed), "line 1, not 2");
        assert!(matches(&MigrationReview { line: Some(1), ..review }, &reviewed));
    }

    #[test]
    fn disguises_found_by_the_review_are_named() {
        let record = "DO $$ DECLARE begin_at date; r record := ROW(set_config('role','app_user',false)); BEGIN END $$;";
        assert!(
            matches!(problems(record).as_slice(), [Problem::Unverifiable { what }] if what.contains("record variable `r`"))
        );
        let plv8 = "CREATE FUNCTION f() RETURNS void LANGUAGE plv8 AS $$ plv8.execute('SET ROLE app_user') $$;";
        assert!(matches!(problems(plv8).as_slice(), [Problem::Unverifiable { what }] if what.contains("plv8")));
        let xml = "SELECT query_to_xml($q$SELECT set_config('role','app_user',false)$q$, true, false, '');";
        assert_eq!(problems(xml), [Problem::ActAs { statement: "set_config('role', …)".into() }]);
        let built = "SELECT query_to_xml('SELECT ' || 'set_config(1)', true, false, '');";
        assert!(matches!(problems(built).as_slice(), [Problem::Unverifiable { .. }]));
        let cast = "SELECT set_config('role'::text, 'app_user', false);";
        assert_eq!(problems(cast), [Problem::ActAs { statement: "set_config('role', …)".into() }]);
        let database = "CREATE DATABASE other OWNER app_user;";
        assert_eq!(
            problems(database),
            [Problem::Owner { statement: "CREATE DATABASE … OWNER", to: "app_user".into() }]
        );
        let atomic = "CREATE FUNCTION f() RETURNS text BEGIN ATOMIC SELECT set_config('role', 'app_user', false); END;";
        assert_eq!(problems(atomic), [Problem::ActAs { statement: "set_config('role', …)".into() }]);
        let nested = "/* a /* b */ c */\nCREATE ROLE x;";
        assert_eq!(scan_one(nested).line, 2);
    }

    #[test]
    fn what_the_review_said_was_refused_wrongly_passes() {
        // Casts of harmless settings, SET role TO DEFAULT (= RESET ROLE), a
        // PL/pgSQL body typed with the app's own schema (libpg_query cannot
        // resolve it) that does nothing the guard looks for, a record without default.
        for sql in [
            "SELECT set_config('app.current_user_id'::text, '1', true);",
            "SET role TO DEFAULT;",
            "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END;",
            "CREATE FUNCTION g(a int) RETURNS int RETURN a + 1;",
            "CREATE FUNCTION app.f(p app.status) RETURNS SETOF app.notes LANGUAGE plpgsql AS $f$ \
             DECLARE v app.status; BEGIN RETURN QUERY SELECT * FROM app.notes WHERE status = p; END $f$;",
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT 1 AS x LOOP RAISE NOTICE '%', r.x; END LOOP; END $$;",
        ] {
            assert_eq!(problems(sql), [], "{sql}");
        }
        let typed_and_risky = "CREATE FUNCTION app.f(p app.status) RETURNS void LANGUAGE plpgsql AS $f$ \
                               DECLARE v app.status; BEGIN SET ROLE app_user; END $f$;";
        assert!(
            matches!(problems(typed_and_risky).as_slice(), [Problem::Unverifiable { what }] if what.contains("`role`"))
        );
    }

    #[test]
    fn a_file_the_parser_cannot_read_is_named() {
        assert!(
            matches!(problems("CREATE TABLE (;").as_slice(), [Problem::Unverifiable { what }] if what.contains("cannot read"))
        );
    }
}
