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
//! What it refuses: role DDL and memberships; `OWNER TO`, `REASSIGN OWNED`
//! and `CREATE SCHEMA … AUTHORIZATION` to any role but the migrator (or
//! `CURRENT_USER`); acting as another role (`SET ROLE`, `SET SESSION
//! AUTHORIZATION`, `set_config('role', …)`, a database or role default of
//! `role`); grants beyond the model to the runtime roles, their logins or
//! PUBLIC; RLS switched off on a table with policies and not on again in
//! the migration; definer functions without a search_path that the
//! runtime roles may call; names that shadow `pg_catalog`'s (read from the
//! live server: [`Catalog`]); a database search_path that puts a schema
//! before `pg_catalog`, and database defaults every runtime session would
//! start with (a tenant setting, `row_security`); renaming or moving the
//! bookkeeping schema or table; savepoints (unverifiable). RLS and definer
//! functions are judged on the whole migration (statements leave events
//! that `Guard::judge` weighs, in order, across the batch's transactions).

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
    /// A grant beyond the model to a runtime role, its login or PUBLIC.
    Grant { statement: &'static str, privileges: String, on: String, to: String },
    /// Row-level security switched off (or no longer forced) on a table
    /// with policies, and not switched back on in the same migration.
    RlsOff { table: String, force: bool },
    /// A `SECURITY DEFINER` function without `SET search_path` that the
    /// runtime roles may call.
    Definer { function: String },
    /// A `SECURITY DEFINER` trigger function without `SET search_path`:
    /// every runtime write that fires it runs it.
    DefinerTrigger { function: String },
    /// A function or operator in an app schema that a call meant for
    /// `pg_catalog`'s could resolve to.
    Shadow { what: String },
    /// A default `search_path` with an app schema before `pg_catalog`.
    SearchPath { statement: &'static str, first: String },
    /// A database default that every runtime session would start with.
    DatabaseDefault { setting: String },
    /// The bookkeeping schema or table renamed or moved.
    Bookkeeping { what: String },
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
            Problem::Grant { statement, privileges, on, to } => format!(
                "{statement} {privileges} ON {on} TO {to}: beyond the model (the runtime roles hold DML on tables, \
                 USAGE on schemas, CONNECT on the database, nothing they may grant on)"
            ),
            Problem::RlsOff { table, force: false } => format!(
                "row-level security switched off on `{table}`, which has policies, and not on again in this \
                 migration: every tenant's rows would be open to the runtime role"
            ),
            Problem::RlsOff { table, force: true } => format!(
                "NO FORCE ROW LEVEL SECURITY on `{table}`, which has policies, and not forced again in this \
                 migration: its owner would pass its policies"
            ),
            Problem::Definer { function } => format!(
                "SECURITY DEFINER function `{function}` without SET search_path, callable by the runtime roles \
                 (EXECUTE is PUBLIC's unless revoked): it runs with the migrator's rights and resolves names \
                 through its caller's search_path"
            ),
            Problem::DefinerTrigger { function } => format!(
                "SECURITY DEFINER trigger function `{function}` without SET search_path: the runtime roles' writes \
                 fire it (no EXECUTE is checked then), and it resolves names through their search_path with the \
                 migrator's rights"
            ),
            Problem::Shadow { what } => {
                format!("{what}: a call meant for pg_catalog's could run it instead (the CVE-2018-1058 class)")
            }
            Problem::SearchPath { statement, first } => format!(
                "{statement} puts `{first}` before pg_catalog: an object there would be found before PostgreSQL's own"
            ),
            Problem::DatabaseDefault { setting } => format!(
                "ALTER DATABASE … SET {setting}: every session of the runtime roles would start with it (a tenant \
                 setting there makes a session that sets none act as that tenant; row_security and \
                 session_replication_role weaken RLS and triggers)"
            ),
            Problem::Bookkeeping { what } => format!(
                "{what}: the migrations table is the runner's; renamed or moved, grants on it escape the guard \
                 and the runner loses its record"
            ),
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
            Problem::Grant { .. } => {
                "grant only what the model gives (SELECT, INSERT, UPDATE, DELETE on tables; the runner grants \
                 them on new tables itself), never WITH GRANT OPTION"
            }
            Problem::RlsOff { force: false, .. } => {
                "switch it on again in the same migration (`ALTER TABLE … ENABLE ROW LEVEL SECURITY`)"
            }
            Problem::RlsOff { force: true, .. } => {
                "force it again in the same migration (`ALTER TABLE … FORCE ROW LEVEL SECURITY`)"
            }
            Problem::Definer { .. } => {
                "add `SET search_path = ''` (or `= pg_catalog, <schema>`) to the function, or REVOKE EXECUTE ON \
                 FUNCTION … FROM PUBLIC in the same migration"
            }
            Problem::DefinerTrigger { .. } => {
                "add `SET search_path = ''` (or `= pg_catalog, <schema>`) to it, or make it SECURITY INVOKER"
            }
            Problem::Shadow { .. } => "rename it, or give it exactly pg_catalog's argument types",
            Problem::SearchPath { .. } => "leave pg_catalog out (it is then searched first) or put it first",
            Problem::DatabaseDefault { .. } => "set it in the app's sessions (per transaction), not as a default",
            Problem::Bookkeeping { .. } => "leave the bookkeeping schema and table where the runner made them",
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
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// The migrator: the one role objects may be handed to.
    pub migrator: String,
    /// The runtime roles (their alternate logins are derived): what a
    /// grant beyond the model may not go to.
    pub runtime: Vec<String>,
    /// The bookkeeping table (`schema.name`) when its schema is not an app
    /// schema: nobody but the migrator may be granted anything in that
    /// schema, nor rename or move it or the table.
    pub bookkeeping: Option<Relation>,
}

impl Names {
    /// Whether a grantee is one the model limits: PUBLIC, a runtime role,
    /// an alternate login (which holds nothing at all: it acts through its
    /// role), a role's login gate (CONNECT only), or the session's login.
    fn limited(&self, grantee: &str) -> Option<Limit> {
        if grantee == "PUBLIC" {
            return Some(Limit::Public);
        }
        if grantee == "SESSION_USER" || grantee == dbenv::alt_login(&self.migrator) {
            return Some(Limit::Nothing);
        }
        let roles = || std::iter::once(&self.migrator).chain(&self.runtime);
        if roles().any(|role| grantee == dbenv::logins_gate(role)) {
            return Some(Limit::Gate);
        }
        self.runtime.iter().find_map(|role| {
            if grantee == role {
                Some(Limit::Model)
            } else {
                (grantee == dbenv::alt_login(role)).then_some(Limit::Nothing)
            }
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// What the model gives a runtime role.
    Model,
    /// PostgreSQL's own defaults (EXECUTE on functions, USAGE on types and
    /// on a schema), nothing else: the model gives PUBLIC nothing.
    Public,
    /// A login gate: CONNECT on the database, nothing else.
    Gate,
    /// Nothing: an alternate login acts through its role's membership.
    Nothing,
}

/// A relation as a statement names it: its schema only when written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Relation {
    pub schema: Option<String>,
    pub name: String,
}

impl Relation {
    /// The same relation, as far as text can tell: one name without a
    /// schema matches that name in any schema.
    fn same(&self, other: &Relation) -> bool {
        self.name == other.name && (self.schema.is_none() || other.schema.is_none() || self.schema == other.schema)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What the guard reads from the live database: the tables that have
/// policies and the roles that hold CONNECT on it (the runtime roles, by the
/// model) before it scans; after, `pg_catalog`'s functions and operators of
/// the names the migrations define.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Function (and aggregate) name → each one's input argument types
    /// (`pg_type.typname`, `_int4` for `int4[]`).
    pub functions: std::collections::HashMap<String, Vec<Vec<String>>>,
    /// Operator name → each one's left and right type (`""` for none).
    pub operators: std::collections::HashMap<String, Vec<(String, String)>>,
    pub policy_tables: Vec<Relation>,
    pub connect_holders: Vec<String>,
}

impl Catalog {
    /// The tables with policies (and their partitions and children, read
    /// directly without the parent's policies) and the CONNECT holders, in
    /// one query (a read-only session will do).
    pub fn read(client: &mut postgres::Client) -> anyhow::Result<Catalog> {
        let mut catalog = Catalog::default();
        for row in client.query(
            "WITH RECURSIVE t(oid) AS (SELECT polrelid FROM pg_policy \
                UNION SELECT i.inhrelid FROM pg_inherits i JOIN t ON i.inhparent = t.oid) \
             SELECT DISTINCT 'p', n.nspname::text, c.relname::text FROM t \
               JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace \
             UNION ALL \
             SELECT DISTINCT 'c', '', r.rolname::text FROM pg_database d, aclexplode(d.datacl) a \
               JOIN pg_roles r ON r.oid = a.grantee \
             WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT' \
               AND r.oid <> d.datdba AND NOT r.rolsuper",
            &[],
        )? {
            let (kind, schema, name): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            if kind == "p" {
                catalog.policy_tables.push(Relation { schema: Some(schema), name });
            } else {
                catalog.connect_holders.push(name);
            }
        }
        Ok(catalog)
    }

    /// `pg_catalog`'s functions (aggregates included) and operators of
    /// these names, with their argument types, in one query.
    fn read_signatures(
        &mut self,
        client: &mut postgres::Client,
        functions: &[String],
        operators: &[String],
    ) -> anyhow::Result<()> {
        for row in client.query(
            "SELECT 'f', p.proname::text, ARRAY(SELECT t.typname::text \
                 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(o, n) JOIN pg_type t ON t.oid = a.o ORDER BY a.n) \
               FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind <> 'p' \
                AND p.proname = ANY($1) \
             UNION ALL \
             SELECT 'o', o.oprname::text, ARRAY[coalesce((SELECT typname::text FROM pg_type WHERE oid = o.oprleft), ''), \
                                               coalesce((SELECT typname::text FROM pg_type WHERE oid = o.oprright), '')] \
               FROM pg_operator o WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprname = ANY($2)",
            &[&functions, &operators],
        )? {
            let (kind, name, args): (String, String, Vec<String>) = (row.get(0), row.get(1), row.get(2));
            if kind == "f" {
                self.functions.entry(name).or_default().push(args);
            } else if let [left, right] = args.as_slice() {
                self.operators.entry(name).or_default().push((left.clone(), right.clone()));
            }
        }
        Ok(())
    }
}

/// What a statement does that only the whole migration can judge.
#[derive(Clone, Debug)]
enum Event {
    /// `ENABLE`/`DISABLE`/`FORCE`/`NO FORCE ROW LEVEL SECURITY`; `top`:
    /// at the top level (not in a function body, which runs when called,
    /// nor in a `DO` block, which may skip or undo it).
    /// `deferred`: in a function body.
    Rls {
        table: Relation,
        on: bool,
        force: bool,
        top: bool,
        deferred: bool,
    },
    Policy(Relation),
    /// A relation renamed or moved to another schema, or a schema renamed
    /// (name `*`): policies go with it.
    Moved {
        from: Relation,
        to: Relation,
    },
    /// A partition or child of a table (read directly, its parent's
    /// policies do not apply).
    Child {
        parent: Relation,
        child: Relation,
    },
    /// `COMMIT`, `ROLLBACK` and the like: what came before may stay, and
    /// the rest of the batch runs in autocommit.
    TransactionEnd {
        rollback: bool,
    },
    /// The search_path changed: an unqualified name may now reach another
    /// object (`deferred`: in a function body, wherever it is called).
    PathChange {
        deferred: bool,
    },
    /// A relation made: an unqualified name may now reach it (a temporary
    /// one comes first on the path).
    Created(Relation),
    /// `ALTER FUNCTION … SET search_path` at the top level.
    PathSet(Function),
    /// A `SECURITY DEFINER` function without `SET search_path`; `trigger`:
    /// a trigger function, which every runtime write may run (EXECUTE is
    /// not checked when a trigger fires: only a search_path makes it safe).
    Definer {
        function: Function,
        trigger: bool,
    },
    /// `REVOKE EXECUTE … FROM PUBLIC` at the top level on these functions
    /// (name `*`: every function of the schema; schema `None` and name `*`:
    /// the default privileges of every function created later).
    Revoked(Vec<Function>),
    /// EXECUTE granted to PUBLIC or a runtime role on these functions.
    Granted(Vec<Function>),
    /// A function, aggregate or operator defined (or renamed) outside
    /// `pg_catalog`, with its argument types (`None`: unknown).
    Defines {
        what: &'static str,
        name: Relation,
        args: Option<Vec<String>>,
    },
}

/// A function as a statement names it, with its argument types when given.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Function {
    name: Relation,
    args: Option<Vec<String>>,
}

impl Function {
    /// Whether a REVOKE or GRANT naming `self` covers `definer`: a
    /// schema-wide one only its own schema as the definer names it; one
    /// function the same schema and name as written, and the same argument
    /// types when both give them.
    fn covers(&self, definer: &Function) -> bool {
        if self.name.name == "*" {
            return self.name.schema.is_none() || self.name.schema == definer.name.schema;
        }
        let args = match (&self.args, &definer.args) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.name == definer.name && args
    }

    /// Whether a GRANT naming `self` may reach `definer`: loosely (a
    /// missing schema matches any, argument types are not compared), so a
    /// grant is never missed.
    fn may_be(&self, definer: &Function) -> bool {
        let schema =
            self.name.schema.is_none() || definer.name.schema.is_none() || self.name.schema == definer.name.schema;
        schema && (self.name.name == "*" || self.name.name == definer.name.name)
    }
}

/// What one statement's walk finds.
struct Found<'g> {
    names: &'g Names,
    problems: Vec<Problem>,
    events: Vec<Event>,
    /// How deep in function bodies the walk is.
    body: usize,
    /// How deep in `DO` blocks (and the dynamic SQL they run): what runs
    /// there may be skipped by a branch or undone by an exception handler.
    nested: usize,
}

impl Found<'_> {
    /// Whether the statement being walked runs now, at the top level of
    /// the migration, without condition.
    fn top(&self) -> bool {
        self.body == 0 && self.nested == 0
    }
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

/// The guard over a run's pending migrations, scanned in order: a table
/// that an earlier one gives policies has them for the later ones.
pub struct Guard {
    names: Names,
    catalog: Catalog,
    /// What the scanned migrations define that may shadow `pg_catalog`:
    /// judged by [`Guard::finish`].
    defines: Vec<(String, Place, Event)>,
    /// Pieces scanned so far in the batch.
    pieces: usize,
    /// Whether an earlier migration of the batch ended the transaction:
    /// the rest of the batch runs in autocommit.
    autocommit: bool,
    /// Definer functions without a search_path that earlier migrations
    /// kept from PUBLIC: a later grant reaches them.
    definers: Vec<Function>,
}

/// A statement's place, for a finding.
#[derive(Clone, Debug)]
struct Place {
    line: usize,
    shown: String,
    fingerprint: String,
    /// Which piece of the batch (each breakpoint starts one): after a
    /// COMMIT, every piece commits on its own.
    piece: usize,
}

impl Guard {
    /// The catalog's CONNECT holders count as runtime roles too: a
    /// migrator-only environment names none.
    pub fn new(mut names: Names, catalog: Catalog) -> Guard {
        for role in &catalog.connect_holders {
            if *role != names.migrator && !names.runtime.contains(role) {
                names.runtime.push(role.clone());
            }
        }
        Guard { names, catalog, defines: Vec::new(), pieces: 0, autocommit: false, definers: Vec::new() }
    }

    /// Scans one migration's text; `reviews` are the policy file's entries.
    /// The text is cut where both engines cut it (at every breakpoint
    /// marker, which PostgreSQL would read as a comment), and each piece is
    /// read as the server will receive it.
    pub fn scan(&mut self, tag: &str, text: &str, reviews: &[MigrationReview]) -> Scan {
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
        let mut events = Vec::new();
        let mut offset = 0;
        for piece in text.split(BREAKPOINT) {
            self.pieces += 1;
            self.scan_piece(text, offset, piece, &mut found, &mut events);
            offset += piece.len() + BREAKPOINT.len();
        }
        found.extend(self.judge(&events));
        found.sort_by_key(|(place, _)| place.line);
        for (place, event) in events {
            if matches!(event, Event::Defines { .. }) {
                self.defines.push((tag.to_string(), place, event));
            }
        }
        reviewed(found.into_iter().map(|(place, problem)| (tag, place, problem)), reviews)
    }

    /// After the last migration: reads `pg_catalog`'s signatures of the
    /// names the migrations define (with `client`; without one, the
    /// catalog given to [`Guard::new`] decides) and refuses what shadows one.
    pub fn finish(
        &mut self,
        client: Option<&mut postgres::Client>,
        reviews: &[MigrationReview],
    ) -> anyhow::Result<Scan> {
        let names = |operators: bool| -> Vec<String> {
            let mut names: Vec<String> = self
                .defines
                .iter()
                .filter_map(|(_, _, e)| match e {
                    Event::Defines { what, name, .. } if (*what == "operator") == operators => Some(name.name.clone()),
                    _ => None,
                })
                .collect();
            names.sort();
            names.dedup();
            names
        };
        let (functions, operators) = (names(false), names(true));
        if let Some(client) = client.filter(|_| !functions.is_empty() || !operators.is_empty()) {
            self.catalog.read_signatures(client, &functions, &operators)?;
        }
        let found = self.defines.drain(..).filter_map(|(tag, place, event)| match event {
            Event::Defines { what, name, args } => {
                shadows(&self.catalog, what, &name, args.as_deref()).map(|problem| (tag, place, problem))
            }
            _ => None,
        });
        let found: Vec<(String, Place, Problem)> = found.collect();
        Ok(reviewed(found.iter().map(|(tag, place, problem)| (tag.as_str(), place.clone(), problem.clone())), reviews))
    }

    /// One piece of a migration, at `offset` in `text`.
    fn scan_piece(
        &self,
        text: &str,
        offset: usize,
        piece: &str,
        found: &mut Vec<(Place, Problem)>,
        events: &mut Vec<(Place, Event)>,
    ) {
        let parsed = match pg_query::parse(piece, ParserOptions::DEFAULT) {
            Ok(parsed) => parsed,
            Err(error) => {
                let (line, shown) = locate(text, offset, piece);
                let fingerprint = fingerprint(&shown);
                let piece = self.pieces;
                let problem = Problem::Unverifiable { what: format!("the parser cannot read it ({error})") };
                found.push((Place { line, shown, fingerprint, piece }, problem));
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
            let mut out = Found { names: &self.names, problems: Vec::new(), events: Vec::new(), body: 0, nested: 0 };
            statement_problems(node, sql, &mut out);
            let (line, shown) = locate(text, offset + start, sql);
            let place = Place { line, shown, fingerprint: fingerprint(&normalized(sql)), piece: self.pieces };
            found.extend(out.problems.into_iter().map(|p| (place.clone(), p)));
            events.extend(out.events.into_iter().map(|e| (place.clone(), e)));
        }
    }

    /// What only the whole migration can tell: RLS switched off and not on
    /// again, a definer function no REVOKE keeps from the runtime roles.
    /// The migration's policies count for it and for later migrations.
    fn judge(&mut self, events: &[(Place, Event)]) -> Vec<(Place, Problem)> {
        self.follow_policies(events);
        // Whether the transaction had ended before event `i` (autocommit since).
        let ended =
            |i: usize| self.autocommit || events[..i].iter().any(|(_, e)| matches!(e, Event::TransactionEnd { .. }));
        let mut problems = Vec::new();
        for (i, (place, event)) in events.iter().enumerate() {
            match event {
                Event::Rls { table, on: false, force, deferred, .. } => {
                    let has_policies = self.catalog.policy_tables.iter().any(|t| t.same(table));
                    if has_policies && (*deferred || !restored(events, i, table, *force, ended(i))) {
                        problems.push((place.clone(), Problem::RlsOff { table: table.to_string(), force: *force }));
                    }
                }
                Event::Definer { function, trigger } => {
                    let granted = events
                        .iter()
                        .any(|(_, e)| matches!(e, Event::Granted(list) if list.iter().any(|f| f.may_be(function))));
                    match kept(events, i, function, ended(i)) {
                        Kept::PathSet => {}
                        Kept::Revoked if !granted && !trigger => {
                            if !self.definers.contains(function) {
                                self.definers.push(function.clone());
                            }
                        }
                        _ if *trigger => problems
                            .push((place.clone(), Problem::DefinerTrigger { function: function.name.to_string() })),
                        _ => problems.push((place.clone(), Problem::Definer { function: function.name.to_string() })),
                    }
                }
                // A definer an earlier migration kept from PUBLIC, granted now
                // (default privileges reach only functions made later).
                Event::Granted(list) => {
                    let reaches = |d: &&Function| {
                        list.iter().any(|f| !(f.name.schema.is_none() && f.name.name == "*") && f.may_be(d))
                    };
                    for definer in self.definers.iter().filter(reaches) {
                        problems.push((place.clone(), Problem::Definer { function: definer.name.to_string() }));
                    }
                }
                // A search_path set on it later: that definer is safe now.
                Event::PathSet(function) => self.definers.retain(|d| !function.covers(d)),
                _ => {}
            }
        }
        self.autocommit = ended(events.len());
        problems
    }

    /// The tables with policies once this migration ran: those it creates
    /// policies on, and, after a rename or a move (of the table or its
    /// schema), the new names too (the old stay counted: another table may
    /// take them), and the partitions and children of each.
    fn follow_policies(&mut self, events: &[(Place, Event)]) {
        let tables = &mut self.catalog.policy_tables;
        tables.extend(events.iter().filter_map(|(_, e)| match e {
            Event::Policy(table) => Some(table.clone()),
            _ => None,
        }));
        // Twice: a chain of renames may come in any order.
        for _ in 0..2 {
            for (_, event) in events {
                let added: Vec<Relation> = match event {
                    Event::Moved { from, to } if from.name == "*" => tables
                        .iter()
                        .filter(|t| t.schema.is_none() || t.schema == from.schema)
                        .map(|t| Relation { schema: to.schema.clone(), name: t.name.clone() })
                        .collect(),
                    Event::Moved { from, to } if tables.iter().any(|t| t.same(from)) => vec![to.clone()],
                    Event::Child { parent, child } if tables.iter().any(|t| t.same(parent)) => vec![child.clone()],
                    _ => Vec::new(),
                };
                for table in added {
                    if !tables.contains(&table) {
                        tables.push(table);
                    }
                }
            }
        }
    }
}

/// Whether RLS switched off (or no longer forced) on `table` by event `off`
/// is switched on again: by a later top-level statement that names the
/// table as the switch-off did, in the same transaction (in the same piece
/// when the batch runs in autocommit), with no rename or move of that name
/// (or its schema) between, nor, for an unqualified name, a search_path
/// change or a temporary relation.
fn restored(events: &[(Place, Event)], off: usize, table: &Relation, force: bool, autocommit: bool) -> bool {
    let piece = events[off].0.piece;
    // A function that changes the path may be called anywhere.
    let anywhere = events.iter().any(|(_, e)| matches!(e, Event::PathChange { deferred: true }));
    if anywhere && table.schema.is_none() {
        return false;
    }
    for (place, later) in &events[off + 1..] {
        match later {
            Event::Rls { table: t, on: true, force: f, top: true, .. } if *f == force && t == table => {
                return !autocommit || place.piece == piece
            }
            Event::TransactionEnd { .. } => return false,
            Event::PathChange { .. } if table.schema.is_none() => return false,
            Event::Created(r) if r.name == table.name && (table.schema.is_none() || r.schema.is_none()) => {
                return false
            }
            Event::Moved { from, to } if from.name == "*" || from.name == table.name || to.name == table.name => {
                return false
            }
            _ => {}
        }
    }
    false
}

/// How a definer function (event `at`) is made safe, if it is.
#[derive(PartialEq, Eq)]
enum Kept {
    /// A search_path set on it later: safe whoever calls it.
    PathSet,
    /// Kept from PUBLIC: a later REVOKE, or default privileges revoked before.
    Revoked,
    Open,
}

/// A later top-level `ALTER FUNCTION … SET search_path` or `REVOKE … FROM
/// PUBLIC` of it, in the same transaction (the same piece in autocommit),
/// with no search_path change between for an unqualified name; or default
/// privileges revoked before it and not rolled back.
fn kept(events: &[(Place, Event)], at: usize, function: &Function, autocommit: bool) -> Kept {
    let piece = events[at].0.piece;
    let mut found = Kept::Open;
    for (place, later) in &events[at + 1..] {
        let now = match later {
            Event::PathSet(f) if f.covers(function) => Kept::PathSet,
            Event::Revoked(list) if list.iter().any(|f| f.covers(function)) => Kept::Revoked,
            Event::TransactionEnd { .. } => break,
            Event::PathChange { .. } if function.name.schema.is_none() => break,
            _ => continue,
        };
        if !autocommit || place.piece == piece {
            found = match (&found, now) {
                (Kept::PathSet, _) | (_, Kept::PathSet) => Kept::PathSet,
                _ => Kept::Revoked,
            };
        }
    }
    if found != Kept::Open {
        return found;
    }
    let defaults = events[..at].iter().enumerate().any(|(j, (_, e))| {
        let revokes =
            matches!(e, Event::Revoked(list) if list.iter().any(|f| f.name.schema.is_none() && f.name.name == "*"));
        revokes && !events[j..at].iter().any(|(_, e)| matches!(e, Event::TransactionEnd { rollback: true }))
    });
    if defaults {
        Kept::Revoked
    } else {
        Kept::Open
    }
}

/// Findings, split into those a review lets through and those refused.
fn reviewed<'t>(found: impl Iterator<Item = (&'t str, Place, Problem)>, reviews: &[MigrationReview]) -> Scan {
    let found = found.map(|(tag, place, problem)| Finding {
        tag: tag.to_string(),
        line: place.line,
        statement: place.shown,
        fingerprint: place.fingerprint,
        problem,
    });
    let (reviewed, refused) = found.partition(|f| reviews.iter().any(|r| matches(r, f)));
    Scan { refused, reviewed }
}

/// Scans one migration with no catalog (no shadowing known, no table with
/// policies but those the migration creates): for tests and callers with
/// no database.
pub fn scan(tag: &str, text: &str, names: &Names, reviews: &[MigrationReview]) -> Scan {
    let mut guard = Guard::new(names.clone(), Catalog::default());
    let mut scan = guard.scan(tag, text, reviews);
    // With no client and an empty catalog, nothing shadows: nothing can fail.
    let shadowed = guard.finish(None, reviews).unwrap_or_default();
    scan.refused.extend(shadowed.refused);
    scan.reviewed.extend(shadowed.reviewed);
    scan
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
fn statement_problems(node: &NodeEnum, sql: &str, out: &mut Found<'_>) {
    tree_problems(node, out);
    match node {
        NodeEnum::DoStmt(stmt) => {
            let language = option_string(&stmt.args, "language").unwrap_or_else(|| "plpgsql".to_string());
            let body = option_string(&stmt.args, "as").unwrap_or_default();
            if language.eq_ignore_ascii_case("plpgsql") {
                out.nested += 1;
                plpgsql_problems(sql, &body, out);
                out.nested -= 1;
            } else {
                out.problems.push(Problem::Unverifiable { what: format!("a DO block in LANGUAGE {language}") });
            }
        }
        // A statement (not a function's `SET` option) that changes the path.
        NodeEnum::VariableSetStmt(set)
            if set.name.eq_ignore_ascii_case("search_path")
                || set.kind == protobuf::VariableSetKind::VarResetAll as i32 =>
        {
            out.events.push(Event::PathChange { deferred: out.body > 0 })
        }
        NodeEnum::DiscardStmt(_) => out.events.push(Event::PathChange { deferred: out.body > 0 }),
        NodeEnum::CreateFunctionStmt(stmt) => {
            // What the body does runs when the function is called, not now.
            out.body += 1;
            function_body_problems(stmt, sql, out);
            out.body -= 1;
        }
        _ => {}
    }
}

/// A function's body: PL/pgSQL and SQL are read; another language is
/// unverifiable (plv8, plperl, … may run SQL the guard cannot see).
fn function_body_problems(stmt: &protobuf::CreateFunctionStmt, sql: &str, out: &mut Found<'_>) {
    let language = option_string(&stmt.options, "language").unwrap_or_default();
    let body = option_strings(&stmt.options, "as");
    if language.eq_ignore_ascii_case("plpgsql") {
        plpgsql_problems(sql, body.first().map_or("", String::as_str), out);
    } else if language.is_empty() || language.eq_ignore_ascii_case("sql") {
        // No LANGUAGE: a SQL-standard body (`BEGIN ATOMIC`, `RETURN …`), which is SQL.
        // `AS '…'`: the body is text; `BEGIN ATOMIC` was parsed with the statement.
        if let Some(body) = body.first() {
            if !sql_text_problems(body, ParserOptions::DEFAULT, out) {
                out.problems.push(Problem::Unverifiable { what: "a SQL function body the parser cannot read".into() });
            }
        }
    } else {
        out.problems.push(Problem::Unverifiable { what: format!("a function body in LANGUAGE {language}") });
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
fn sql_text_problems(text: &str, mode: ParserOptions, out: &mut Found<'_>) -> bool {
    let Ok(parsed) = pg_query::parse(text, mode) else { return false };
    for raw in &parsed.protobuf.stmts {
        if let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) {
            statement_problems(node, text, out);
        }
    }
    true
}

/// A PL/pgSQL body (`DO` or `CREATE FUNCTION … LANGUAGE plpgsql`): every
/// embedded statement and expression, and every dynamic `EXECUTE`.
fn plpgsql_problems(sql: &str, body: &str, out: &mut Found<'_>) {
    match pg_query::parse_plpgsql(sql) {
        Ok(tree) => {
            walk_plpgsql(&tree, out);
            record_defaults(&tree, body, out);
        }
        // libpg_query's PL/pgSQL parser knows no schema but `pg_catalog` and
        // `public`: a body typed with the app's own schema fails to parse.
        // Its tokens then decide: nothing the guard looks for, it passes.
        Err(error) => match risky_tokens(body) {
            None => {}
            Some(found) => out.problems.push(Problem::Unverifiable {
                what: format!("a PL/pgSQL body the parser cannot read ({error}) that mentions {found}"),
            }),
        },
    }
}

/// The keywords and names of what the guard refuses, as the scanner reads
/// `body` (strings and comments are single tokens, so they do not count):
/// the first found, or `None`.
fn risky_tokens(body: &str) -> Option<String> {
    const RISKY: [&str; 19] = [
        "role",
        "user",
        "group",
        "authorization",
        "owner",
        "owned",
        "execute",
        "set_config",
        "grant",
        "disable",
        "force",
        "security",
        "function",
        "procedure",
        "operator",
        "aggregate",
        "search_path",
        "database",
        "rename",
    ];
    if pg_query::scan(body).is_err() {
        return Some("text the scanner cannot read".to_string());
    }
    tokens(body).into_iter().find_map(|(start, end)| {
        let word = body.get(start..end)?.to_ascii_lowercase();
        RISKY.contains(&word.as_str()).then(|| format!("`{word}`"))
    })
}

/// libpg_query's PL/pgSQL tree leaves out a record variable's default
/// (`r record := ROW(…)`), which runs when its block starts: a record
/// declared with one, in any block's `DECLARE` section, is unverifiable.
fn record_defaults(tree: &serde_json::Value, body: &str, out: &mut Found<'_>) {
    let mut records = Vec::new();
    collect_records(tree, &mut records);
    if records.is_empty() {
        return;
    }
    // Every DECLARE section: from a `DECLARE` token to the next `BEGIN` token
    // (strings and comments are single tokens, so they do not count).
    let lower = body.to_ascii_lowercase();
    let mut sections = Vec::new();
    let mut open = None;
    for (start, end) in tokens(&lower) {
        match &lower[start..end] {
            "declare" => open = Some(end),
            "begin" => sections.extend(open.take().map(|from| &lower[from..start])),
            _ => {}
        }
    }
    for name in records {
        let with_default = sections.iter().flat_map(|section| section.split(';')).any(|declaration| {
            let words: Vec<&str> = declaration.split_whitespace().collect();
            words.first().map(|w| w.trim_matches('"')) == Some(name.as_str())
                && (declaration.contains(":=") || declaration.contains('=') || words.contains(&"default"))
        });
        if with_default {
            out.problems.push(Problem::Unverifiable {
                what: format!("the default of record variable `{name}` (the parser does not show it)"),
            });
        }
    }
}

/// The byte ranges of the tokens PostgreSQL's scanner reads in `text`
/// (none when it cannot scan it).
fn tokens(text: &str) -> Vec<(usize, usize)> {
    let Ok(scanned) = pg_query::scan(text) else { return Vec::new() };
    scanned
        .tokens
        .iter()
        .filter_map(|t| Some((usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?)))
        .filter(|(start, end)| start < end && *end <= text.len())
        .collect()
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

fn walk_plpgsql(value: &serde_json::Value, out: &mut Found<'_>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk_plpgsql(item, out)),
        serde_json::Value::Object(map) => {
            for (kind, field) in DYNAMIC {
                if let Some(expr) = map.get(kind).and_then(|stmt| stmt.get(field)).and_then(|e| e.get("PLpgSQL_expr")) {
                    dynamic_problems(expr, out);
                }
            }
            if let Some(expr) = map.get("PLpgSQL_expr") {
                let query = expr.get("query").and_then(|q| q.as_str()).unwrap_or_default();
                let mode = expr.get("parseMode").and_then(|m| m.as_i64()).unwrap_or(0);
                let mode = ParserOptions::from(i32::try_from(mode).unwrap_or(0));
                if !sql_text_problems(query, mode, out) {
                    out.problems.push(Problem::Unverifiable {
                        what: "a PL/pgSQL expression the parser cannot read".to_string(),
                    });
                }
            }
            map.values().for_each(|v| walk_plpgsql(v, out));
        }
        _ => {}
    }
}

/// `EXECUTE 'constant'` is read as SQL; anything built at run time cannot be.
fn dynamic_problems(expr: &serde_json::Value, out: &mut Found<'_>) {
    let query = expr.get("query").and_then(|q| q.as_str()).unwrap_or_default();
    match constant_string(query) {
        Some(sql) if sql_text_problems(&sql, ParserOptions::DEFAULT, out) => {}
        _ => out.problems.push(Problem::Unverifiable { what: format!("dynamic SQL (EXECUTE {})", shorten(query)) }),
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
fn tree_problems(node: &NodeEnum, out: &mut Found<'_>) {
    match serde_json::to_value(node) {
        Ok(tree) => walk_tree(&tree, out),
        Err(error) => {
            out.problems.push(Problem::Unverifiable { what: format!("a statement the guard cannot walk ({error})") })
        }
    }
}

fn walk_tree(value: &serde_json::Value, out: &mut Found<'_>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk_tree(item, out)),
        serde_json::Value::Object(map) => {
            for (kind, node) in map {
                node_problems(kind, node, out);
                // A SQL-standard body (`BEGIN ATOMIC`) runs when the function is called.
                let body = usize::from(kind == "sql_body");
                out.body += body;
                walk_tree(node, out);
                out.body -= body;
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
fn node_problems(kind: &str, node: &serde_json::Value, out: &mut Found<'_>) {
    let role_statement = |statement| Problem::RoleStatement { statement };
    match kind {
        "CreateRoleStmt" => out.problems.push(role_statement("CREATE ROLE")),
        "AlterRoleStmt" => out.problems.push(role_statement("ALTER ROLE")),
        "AlterRoleSetStmt" => out.problems.push(role_statement("ALTER ROLE … SET")),
        "DropRoleStmt" => out.problems.push(role_statement("DROP ROLE")),
        "RenameStmt" if int(node, "rename_type") == protobuf::ObjectType::ObjectRole as i64 => {
            out.problems.push(role_statement("ALTER ROLE … RENAME"))
        }
        "GrantRoleStmt" => out.problems.push(Problem::Membership {
            grant: node.get("is_grant").and_then(serde_json::Value::as_bool).unwrap_or(true),
        }),
        "AlterOwnerStmt" => owner(node.get("newowner"), "OWNER TO", out),
        "AlterTableCmd" if int(node, "subtype") == protobuf::AlterTableType::AtChangeOwner as i64 => {
            owner(node.get("newowner"), "OWNER TO", out)
        }
        "ReassignOwnedStmt" => owner(node.get("newrole"), "REASSIGN OWNED … TO", out),
        "CreateSchemaStmt" => owner(node.get("authrole"), "CREATE SCHEMA … AUTHORIZATION", out),
        "CreateTableSpaceStmt" => owner(node.get("owner"), "CREATE TABLESPACE … OWNER", out),
        "CreatedbStmt" => {
            let options = list(node, "options");
            for option in options.iter().filter_map(|o| o.get("node")?.get("DefElem")) {
                if text(option, "defname") == "owner" {
                    let name = option.get("arg").and_then(node_string).unwrap_or("an unknown role");
                    if name != out.names.migrator && !name.eq_ignore_ascii_case("current_user") {
                        out.problems
                            .push(Problem::Owner { statement: "CREATE DATABASE … OWNER", to: name.to_string() });
                    }
                }
            }
        }
        "VariableSetStmt" => acting_setting(node, "", out),
        "AlterDatabaseSetStmt" => {
            if let Some(set) = node.get("setstmt").filter(|s| !s.is_null()) {
                acting_setting(set, "ALTER DATABASE … ", out);
                search_path(set, "ALTER DATABASE … SET search_path", out);
                let name = text(set, "name").to_ascii_lowercase();
                let kind = int(set, "kind");
                let setting = kind != protobuf::VariableSetKind::VarReset as i64
                    && kind != protobuf::VariableSetKind::VarSetDefault as i64
                    && kind != protobuf::VariableSetKind::VarResetAll as i64;
                if setting && (name == "row_security" || name == "session_replication_role" || name.contains('.')) {
                    out.problems.push(Problem::DatabaseDefault { setting: name });
                }
            }
        }
        "FuncCall" => set_config(node, out),
        _ => model_problems(kind, node, out),
    }
}

/// What a node does to the model that the migration as a whole, or the
/// catalog, judges: grants, RLS switches, policies and the relations that
/// carry them (renames, moves, partitions, children), ends of transaction,
/// functions and operators.
fn model_problems(kind: &str, node: &serde_json::Value, out: &mut Found<'_>) {
    match kind {
        "RenameStmt" => renamed(node, out),
        "AlterObjectSchemaStmt" => {
            let newschema = text(node, "newschema");
            if let Some(bookkeeping) = &out.names.bookkeeping {
                let moved = node.get("relation").and_then(range_var);
                let schema = bookkeeping.schema.as_deref();
                let from = moved.as_ref().and_then(|r| r.schema.clone()).or_else(|| object_schema(node));
                if schema == Some(newschema) || from.as_deref() == schema || moved.is_some_and(|r| r.same(bookkeeping))
                {
                    out.problems.push(Problem::Bookkeeping { what: format!("SET SCHEMA {newschema}") });
                }
            }
            if let Some(from) = node.get("relation").and_then(range_var) {
                let to = Relation { schema: Some(text(node, "newschema").to_string()), name: from.name.clone() };
                out.events.push(Event::Moved { from, to });
            }
        }
        "CreateStmt" => {
            if let Some(created) = node.get("relation").and_then(range_var) {
                out.events.push(Event::Created(created));
            }
            if let Some(child) = node.get("relation").and_then(range_var) {
                for parent in
                    list(node, "inh_relations").iter().filter_map(|r| range_var(r.get("node")?.get("RangeVar")?))
                {
                    out.events.push(Event::Child { parent, child: child.clone() });
                }
            }
        }
        "TransactionStmt" if out.body == 0 => {
            use protobuf::TransactionStmtKind as K;
            let kind = int(node, "kind");
            let is = |kinds: &[K]| kinds.iter().any(|k| kind == *k as i64);
            if is(&[K::TransStmtCommit, K::TransStmtRollback, K::TransStmtPrepare]) {
                out.events.push(Event::TransactionEnd { rollback: kind == K::TransStmtRollback as i64 });
            } else if is(&[K::TransStmtSavepoint, K::TransStmtRelease, K::TransStmtRollbackTo]) {
                out.problems.push(Problem::Unverifiable {
                    what: "a savepoint (what a ROLLBACK TO undoes cannot be told)".to_string(),
                });
            }
        }
        // `CREATE TABLE … AS`, `SELECT … INTO`, `CREATE VIEW`: made relations.
        "into" | "into_clause" | "ViewStmt" => {
            let rel = node.get("rel").or_else(|| node.get("view"));
            if let Some(created) = rel.and_then(range_var) {
                out.events.push(Event::Created(created));
            }
        }
        "GrantStmt" => grant(node, None, out),
        "AlterDefaultPrivilegesStmt" => {
            if let Some(action) = node.get("action") {
                grant(action, Some(&default_schemas(node)), out);
            }
        }
        "AlterTableStmt" => rls(node, out),
        "CreatePolicyStmt" => {
            if let Some(table) = node.get("table").and_then(range_var) {
                out.events.push(Event::Policy(table));
            }
        }
        "CreateFunctionStmt" => function(node, out),
        "AlterFunctionStmt" => {
            // `ALTER FUNCTION … SECURITY DEFINER`, or a search_path removed:
            // whether it is a definer with a path afterwards depends on what
            // it was; only one that ends with a path passes.
            let actions = list(node, "actions");
            let path = search_path_after(&actions);
            let Some(function) = node.get("func").and_then(object_with_args) else { return };
            if path != Some(true) && (definer_option(&actions) == Some(true) || path == Some(false)) {
                out.events.push(Event::Definer { function, trigger: false });
            } else if path == Some(true) && out.top() {
                out.events.push(Event::PathSet(function));
            }
        }
        "DefineStmt" => define(node, out),
        _ => {}
    }
}

/// The `IN SCHEMA` schemas of `ALTER DEFAULT PRIVILEGES` (none: every schema).
fn default_schemas(node: &serde_json::Value) -> Vec<String> {
    let options = list(node, "options");
    let defs = options.iter().filter_map(|o| o.get("node")?.get("DefElem")).filter(|d| text(d, "defname") == "schemas");
    defs.flat_map(|d| {
        let items = d.get("arg").and_then(|a| a.get("node")?.get("List")?.get("items")?.as_array().cloned());
        items.unwrap_or_default().iter().filter_map(node_string).map(str::to_string).collect::<Vec<_>>()
    })
    .collect()
}

/// A new owner: the migrator by name, or the current role (the migrator,
/// the runner's session being the migrator's). `SESSION_USER` is the
/// login, which may be the migrator's alternate login: refused too.
fn owner(spec: Option<&serde_json::Value>, statement: &'static str, out: &mut Found<'_>) {
    let Some(spec) = spec.filter(|s| !s.is_null()) else { return };
    let name = text(spec, "rolename");
    let to = match RoleSpecType::try_from(i32::try_from(int(spec, "roletype")).unwrap_or(0)) {
        Ok(RoleSpecType::RolespecCurrentUser | RoleSpecType::RolespecCurrentRole) => return,
        Ok(RoleSpecType::RolespecCstring) if name == out.names.migrator => return,
        Ok(RoleSpecType::RolespecCstring) => name.to_string(),
        Ok(RoleSpecType::RolespecSessionUser) => "SESSION_USER".to_string(),
        Ok(RoleSpecType::RolespecPublic) => "PUBLIC".to_string(),
        _ => "an unknown role".to_string(),
    };
    out.problems.push(Problem::Owner { statement, to });
}

/// `SET ROLE`, `SET`/`RESET SESSION AUTHORIZATION` (and the same as a
/// database default). `RESET ROLE` returns to the session's own role and
/// passes.
fn acting_setting(set: &serde_json::Value, prefix: &str, out: &mut Found<'_>) {
    let kind = int(set, "kind");
    // `SET role TO DEFAULT` is `RESET ROLE`.
    let reset = kind == protobuf::VariableSetKind::VarReset as i64
        || kind == protobuf::VariableSetKind::VarResetAll as i64
        || kind == protobuf::VariableSetKind::VarSetDefault as i64;
    match text(set, "name").to_ascii_lowercase().as_str() {
        "role" if !reset => out.problems.push(Problem::ActAs { statement: format!("{prefix}SET ROLE") }),
        "session_authorization" => out.problems.push(Problem::ActAs {
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

fn list(node: &serde_json::Value, field: &str) -> Vec<serde_json::Value> {
    node.get(field).and_then(serde_json::Value::as_array).cloned().unwrap_or_default()
}

/// A serialized `RangeVar`'s relation.
fn range_var(value: &serde_json::Value) -> Option<Relation> {
    let name = text(value, "relname");
    let schema = text(value, "schemaname");
    (!name.is_empty())
        .then(|| Relation { schema: (!schema.is_empty()).then(|| schema.to_string()), name: name.to_string() })
}

/// A dotted name (a list of `String` nodes) as schema and name.
fn qualified(names: &serde_json::Value) -> Option<Relation> {
    let parts: Vec<&str> = names.as_array()?.iter().filter_map(node_string).collect();
    let (name, schema) = parts.split_last()?;
    Some(Relation { schema: schema.last().map(|s| (*s).to_string()), name: (*name).to_string() })
}

/// The privileges a grant names, lower-case (`all` for ALL or none listed).
fn privileges(stmt: &serde_json::Value) -> Vec<String> {
    let privileges: Vec<String> = list(stmt, "privileges")
        .iter()
        .filter_map(|p| p.get("node")?.get("AccessPriv"))
        .map(|p| text(p, "priv_name").to_ascii_lowercase())
        .map(|p| if p.is_empty() { "all".to_string() } else { p })
        .collect();
    if privileges.is_empty() {
        vec!["all".to_string()]
    } else {
        privileges
    }
}

/// A grantee's name as the catalog spells it (`PUBLIC` for PUBLIC).
fn grantee(spec: &serde_json::Value) -> String {
    match RoleSpecType::try_from(i32::try_from(int(spec, "roletype")).unwrap_or(0)) {
        Ok(RoleSpecType::RolespecCstring) => text(spec, "rolename").to_string(),
        Ok(RoleSpecType::RolespecPublic) => "PUBLIC".to_string(),
        Ok(RoleSpecType::RolespecCurrentUser | RoleSpecType::RolespecCurrentRole) => "CURRENT_USER".to_string(),
        Ok(RoleSpecType::RolespecSessionUser) => "SESSION_USER".to_string(),
        _ => "an unknown role".to_string(),
    }
}

/// `GRANT`/`REVOKE` of privileges (memberships are `GrantRoleStmt`), or
/// the grant of `ALTER DEFAULT PRIVILEGES` (`defaults`: its `IN SCHEMA`
/// schemas): what goes beyond the model to PUBLIC, a runtime role or its
/// login, and what it says about EXECUTE on functions (for definers).
fn grant(stmt: &serde_json::Value, defaults: Option<&[String]>, out: &mut Found<'_>) {
    use protobuf::ObjectType as O;
    let statement = if defaults.is_some() { "ALTER DEFAULT PRIVILEGES … GRANT" } else { "GRANT" };
    let objtype = int(stmt, "objtype");
    let is = |t: O| objtype == t as i64;
    let is_grant = stmt.get("is_grant").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let in_schema = int(stmt, "targtype") == protobuf::GrantTargetType::AclTargetAllInSchema as i64;
    let privileges = privileges(stmt);
    let grantees: Vec<String> =
        list(stmt, "grantees").iter().filter_map(|g| g.get("node")?.get("RoleSpec")).map(grantee).collect();
    let objects = list(stmt, "objects");
    let functions = is(O::ObjectFunction) || is(O::ObjectProcedure) || is(O::ObjectRoutine);
    if functions && privileges.iter().any(|p| p == "all" || p == "execute") {
        execute_events(stmt, defaults, &grantees, out);
    }
    if !is_grant {
        return;
    }
    // The schemas the objects are in (or are): the bookkeeping schema is the migrator's alone.
    let schemas: Vec<String> = match defaults {
        Some(schemas) => schemas.to_vec(),
        None if in_schema || is(O::ObjectSchema) => {
            objects.iter().filter_map(node_string).map(str::to_string).collect()
        }
        None => objects
            .iter()
            .filter_map(|o| {
                let o = o.get("node")?;
                let schema = o.get("RangeVar").map(|r| text(r, "schemaname").to_string());
                schema.or_else(|| object_with_args(o).and_then(|f| f.name.schema))
            })
            .collect(),
    };
    // The bookkeeping schema, or a relation named like its table without a schema (the path may reach it).
    let bookkeeping = out.names.bookkeeping.as_ref().and_then(|b| {
        let schema = b.schema.clone().unwrap_or_default();
        let unqualified_table = !in_schema
            && defaults.is_none()
            && objects
                .iter()
                .filter_map(|o| o.get("node")?.get("RangeVar"))
                .any(|r| text(r, "schemaname").is_empty() && text(r, "relname") == b.name);
        (schemas.contains(&schema) || unqualified_table).then_some(schema)
    });
    let (on, model, public): (&str, &[&str], Option<&[&str]>) = match objtype {
        t if t == O::ObjectTable as i64 => ("TABLE", &["all", "truncate", "references", "trigger", "maintain"], None),
        t if t == O::ObjectSchema as i64 => ("SCHEMA", &["all", "create"], Some(&["all", "create"])),
        t if t == O::ObjectDatabase as i64 => ("DATABASE", &["all", "create", "temporary", "temp"], None),
        t if t == O::ObjectFdw as i64 => ("FOREIGN DATA WRAPPER", &["all", "usage"], None),
        t if t == O::ObjectForeignServer as i64 => ("FOREIGN SERVER", &["all", "usage"], None),
        t if t == O::ObjectParameterAcl as i64 => ("PARAMETER", &["all", "set", "alter system"], None),
        t if t == O::ObjectLargeobject as i64 => ("LARGE OBJECT", &["all", "update"], None),
        t if t == O::ObjectTablespace as i64 => ("TABLESPACE", &["all", "create"], None),
        t if t == O::ObjectSequence as i64 => ("SEQUENCE", &[], None),
        _ if functions => ("FUNCTION", &[], Some(&[])),
        t if t == O::ObjectType as i64 || t == O::ObjectDomain as i64 => ("TYPE", &[], Some(&[])),
        t if t == O::ObjectLanguage as i64 => ("LANGUAGE", &[], Some(&[])),
        _ => ("an object", &[], Some(&[])),
    };
    let with_option = stmt.get("grant_option").and_then(serde_json::Value::as_bool).unwrap_or(false);
    for to in grantees {
        let Some(limit) = out.names.limited(&to) else { continue };
        let beyond = |p: &str| match limit {
            _ if bookkeeping.is_some() => true,
            Limit::Nothing => true,
            Limit::Gate => !(on == "DATABASE" && p == "connect"),
            Limit::Model => model.contains(&p),
            // PUBLIC: nothing but PostgreSQL's defaults (`None`: nothing at all).
            Limit::Public => public.is_none_or(|beyond| beyond.contains(&p)),
        };
        let mut named: Vec<String> = privileges.iter().filter(|p| beyond(p)).map(|p| p.to_ascii_uppercase()).collect();
        if with_option {
            named.push("… WITH GRANT OPTION".to_string());
        }
        if !named.is_empty() {
            let on = match &bookkeeping {
                Some(schema) => format!("{on} in the bookkeeping schema `{schema}`"),
                None => on.to_string(),
            };
            out.problems.push(Problem::Grant { statement, privileges: named.join(", "), on, to });
        }
    }
}

/// What a GRANT or REVOKE of EXECUTE says about definer functions: a
/// top-level REVOKE from PUBLIC, or a grant to PUBLIC or a runtime role.
fn execute_events(stmt: &serde_json::Value, defaults: Option<&[String]>, grantees: &[String], out: &mut Found<'_>) {
    let is_grant = stmt.get("is_grant").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let in_schema = int(stmt, "targtype") == protobuf::GrantTargetType::AclTargetAllInSchema as i64;
    let objects = list(stmt, "objects");
    let every = |schema: Option<String>| Function { name: Relation { schema, name: "*".into() }, args: None };
    let named: Vec<Function> = match defaults {
        Some([]) => vec![every(None)],
        Some(schemas) => schemas.iter().map(|s| every(Some(s.clone()))).collect(),
        None if in_schema => objects.iter().filter_map(node_string).map(|s| every(Some(s.to_string()))).collect(),
        None => objects.iter().filter_map(|o| object_with_args(o.get("node")?)).collect(),
    };
    // `REVOKE GRANT OPTION FOR` leaves EXECUTE; default privileges in a
    // schema cannot take PUBLIC's default away.
    let only_option = stmt.get("grant_option").and_then(serde_json::Value::as_bool) == Some(true);
    let revokes = !is_grant && !only_option && grantees.iter().any(|g| g == "PUBLIC") && out.top();
    if revokes && !matches!(defaults, Some([_, ..])) {
        out.events.push(Event::Revoked(named));
    } else if is_grant && grantees.iter().any(|g| out.names.limited(g).is_some()) {
        // A default grant in a schema counts for every function: the
        // definer may be written without its schema.
        let named = if matches!(defaults, Some([_, ..])) { vec![every(None)] } else { named };
        out.events.push(Event::Granted(named));
    }
}

/// The schema an `ALTER … SET SCHEMA` object (not a relation) is written with.
fn object_schema(node: &serde_json::Value) -> Option<String> {
    let object = node.get("object")?.get("node")?;
    let names =
        object.get("ObjectWithArgs").and_then(|f| f.get("objname")).or_else(|| object.get("List")?.get("items"))?;
    qualified(names)?.schema
}

/// A serialized `ObjectWithArgs` (with or without its `ObjectWithArgs`
/// key) as a function: its name, and its argument types unless left out.
fn object_with_args(value: &serde_json::Value) -> Option<Function> {
    let func = value.get("ObjectWithArgs").unwrap_or(value);
    let name = qualified(func.get("objname")?)?;
    let unspecified = func.get("args_unspecified").and_then(serde_json::Value::as_bool) == Some(true);
    let args = if unspecified {
        None
    } else {
        list(func, "objargs").iter().map(|a| a.get("node")?.get("TypeName").and_then(type_name)).collect()
    };
    Some(Function { name, args })
}

/// `ALTER TABLE … ENABLE/DISABLE/FORCE/NO FORCE ROW LEVEL SECURITY`, in
/// order; `ATTACH PARTITION` and `INHERIT` (the child then has the
/// parent's policies to keep).
fn rls(stmt: &serde_json::Value, out: &mut Found<'_>) {
    use protobuf::AlterTableType as A;
    let Some(table) = stmt.get("relation").and_then(range_var) else { return };
    for cmd in list(stmt, "cmds").iter().filter_map(|c| c.get("node")?.get("AlterTableCmd")) {
        let subtype = int(cmd, "subtype");
        let def = cmd.get("def").and_then(|d| d.get("node"));
        let (on, force) = match subtype {
            t if t == A::AtEnableRowSecurity as i64 => (true, false),
            t if t == A::AtDisableRowSecurity as i64 => (false, false),
            t if t == A::AtForceRowSecurity as i64 => (true, true),
            t if t == A::AtNoForceRowSecurity as i64 => (false, true),
            t if t == A::AtAttachPartition as i64 => {
                if let Some(child) = def.and_then(|d| range_var(d.get("PartitionCmd")?.get("name")?)) {
                    out.events.push(Event::Child { parent: table.clone(), child });
                }
                continue;
            }
            t if t == A::AtAddInherit as i64 => {
                if let Some(parent) = def.and_then(|d| range_var(d.get("RangeVar")?)) {
                    out.events.push(Event::Child { parent, child: table.clone() });
                }
                continue;
            }
            _ => continue,
        };
        out.events.push(Event::Rls { table: table.clone(), on, force, top: out.top(), deferred: out.body > 0 });
    }
}

/// A relation renamed (`ALTER TABLE`, but also `ALTER INDEX`, `ALTER VIEW`
/// … `RENAME TO`, which rename tables too) or a schema renamed: policies
/// go with them. `ALTER FUNCTION … RENAME TO`: the new name may shadow
/// pg_catalog's.
fn renamed(stmt: &serde_json::Value, out: &mut Found<'_>) {
    use protobuf::ObjectType as O;
    let kind = int(stmt, "rename_type");
    let newname = text(stmt, "newname").to_string();
    let relations =
        [O::ObjectTable, O::ObjectIndex, O::ObjectView, O::ObjectMatview, O::ObjectForeignTable, O::ObjectSequence];
    if let Some(bookkeeping) = &out.names.bookkeeping {
        let from = stmt.get("relation").and_then(range_var);
        let schema = bookkeeping.schema.as_deref().unwrap_or_default();
        let touches = if kind == O::ObjectSchema as i64 {
            text(stmt, "subname") == schema || newname == schema
        } else {
            relations.iter().any(|k| kind == *k as i64)
                && (from.is_some_and(|r| r.same(bookkeeping)) || newname == bookkeeping.name)
        };
        if touches {
            out.problems.push(Problem::Bookkeeping { what: format!("RENAME TO {newname}") });
        }
    }
    if relations.iter().any(|k| kind == *k as i64) {
        if let Some(from) = stmt.get("relation").and_then(range_var) {
            let to = Relation { schema: from.schema.clone(), name: newname };
            out.events.push(Event::Moved { from, to });
        }
    } else if kind == O::ObjectSchema as i64 {
        let every = |schema: String| Relation { schema: Some(schema), name: "*".into() };
        out.events.push(Event::Moved { from: every(text(stmt, "subname").to_string()), to: every(newname) });
    } else if [O::ObjectFunction, O::ObjectAggregate, O::ObjectRoutine].iter().any(|k| kind == *k as i64) {
        let Some(old) = stmt.get("object").and_then(|o| object_with_args(o.get("node")?)) else { return };
        let name = Relation { schema: old.name.schema, name: newname };
        shadow("function", name, old.args, out);
    }
}

/// What a function's options say of `SECURITY`: the last one wins.
fn definer_option(options: &[serde_json::Value]) -> Option<bool> {
    let last =
        options.iter().filter_map(|o| o.get("node")?.get("DefElem")).rev().find(|d| text(d, "defname") == "security");
    last.map(|d| d.get("arg").and_then(|a| a.get("node")?.get("Boolean")?.get("boolval")?.as_bool()) == Some(true))
}

/// Whether a function has a search_path after its `SET`/`RESET` options,
/// applied in order as PostgreSQL does (`TO DEFAULT`, `RESET search_path`
/// and `RESET ALL` remove it); `None` when no option touches it.
fn search_path_after(options: &[serde_json::Value]) -> Option<bool> {
    use protobuf::VariableSetKind as K;
    let mut path = None;
    for set in options.iter().filter_map(|o| {
        let def = o.get("node")?.get("DefElem")?;
        if text(def, "defname") == "set" {
            def.get("arg")?.get("node")?.get("VariableSetStmt")
        } else {
            None
        }
    }) {
        let kind = int(set, "kind");
        if kind == K::VarResetAll as i64 {
            path = Some(false);
        } else if text(set, "name").eq_ignore_ascii_case("search_path") {
            path = Some(kind == K::VarSetValue as i64 || kind == K::VarSetCurrent as i64);
        }
    }
    path
}

/// `CREATE FUNCTION`: a definer without a search_path, and a name and
/// argument types that shadow `pg_catalog`'s.
fn function(stmt: &serde_json::Value, out: &mut Found<'_>) {
    use protobuf::FunctionParameterMode as M;
    let Some(name) = stmt.get("funcname").and_then(qualified) else { return };
    let identity: Option<Vec<String>> = list(stmt, "parameters")
        .iter()
        .filter_map(|p| p.get("node")?.get("FunctionParameter"))
        .filter(|p| {
            let mode = int(p, "mode");
            mode != M::FuncParamOut as i64 && mode != M::FuncParamTable as i64
        })
        .map(|p| p.get("arg_type").and_then(type_name))
        .collect();
    let options = list(stmt, "options");
    let returns = stmt.get("return_type").and_then(type_name).unwrap_or_default();
    let trigger = returns == "trigger" || returns == "event_trigger";
    if definer_option(&options) == Some(true) && search_path_after(&options) != Some(true) {
        out.events.push(Event::Definer { function: Function { name: name.clone(), args: identity.clone() }, trigger });
    }
    if stmt.get("is_procedure").and_then(serde_json::Value::as_bool) == Some(true) {
        return;
    }
    shadow("function", name, identity, out);
}

/// `CREATE OPERATOR` (and `CREATE AGGREGATE`, a function by another name).
fn define(stmt: &serde_json::Value, out: &mut Found<'_>) {
    use protobuf::ObjectType as O;
    let Some(name) = stmt.get("defnames").and_then(qualified) else { return };
    let kind = int(stmt, "kind");
    if kind == O::ObjectOperator as i64 {
        let arg = |side: &str| {
            list(stmt, "definition")
                .iter()
                .filter_map(|d| d.get("node")?.get("DefElem"))
                .find(|d| text(d, "defname") == side)
                .map_or(Some(String::new()), |d| d.get("arg")?.get("node")?.get("TypeName").and_then(type_name))
        };
        let sides = arg("leftarg").zip(arg("rightarg")).map(|(l, r)| vec![l, r]);
        shadow("operator", name, sides, out);
    } else if kind == O::ObjectAggregate as i64 {
        // `args` is a list: the direct arguments, then a count.
        let args = list(stmt, "args");
        let identity: Option<Vec<String>> = args
            .first()
            .and_then(|a| a.get("node")?.get("List")?.get("items")?.as_array().cloned())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p.get("node")?.get("FunctionParameter"))
                    .map(|p| p.get("arg_type").and_then(type_name))
                    .collect::<Option<Vec<String>>>()
            })
            .unwrap_or(None);
        shadow("aggregate", name, identity, out);
    }
}

/// A name `pg_catalog` also has, without one of its exact argument types:
/// some call resolves to the app's (an exact match beats a cast, whatever
/// the search path). Unknown argument types (`%TYPE`) count as different.
/// Judged once the catalog's signatures of the names defined are read.
fn shadow(what: &'static str, name: Relation, args: Option<Vec<String>>, out: &mut Found<'_>) {
    if !name.schema.as_deref().is_some_and(|s| s == "pg_catalog" || s == "pg_temp") {
        out.events.push(Event::Defines { what, name, args });
    }
}

fn shadows(catalog: &Catalog, what: &str, name: &Relation, args: Option<&[String]>) -> Option<Problem> {
    let known: Vec<Vec<String>> = if what == "operator" {
        catalog.operators.get(&name.name)?.iter().map(|(l, r)| vec![l.clone(), r.clone()]).collect()
    } else {
        catalog.functions.get(&name.name)?.clone()
    };
    if args.is_some_and(|args| known.iter().any(|k| k.as_slice() == args)) {
        return None;
    }
    let shown = args.map_or_else(|| "…".to_string(), |a| a.join(", "));
    Some(Problem::Shadow { what: format!("{what} `{name}({shown})` has pg_catalog's name `{}`", name.name) })
}

/// A `TypeName` node (serialized) as `pg_type.typname`: the grammar spells
/// SQL's type keywords as `pg_catalog.int4` and so on; an array is `_` and
/// its element's name; another schema's type keeps its schema (an
/// unqualified name is pg_catalog's first, by the default search path).
/// `None` for `%TYPE`.
fn type_name(arg: &serde_json::Value) -> Option<String> {
    if arg.get("pct_type").and_then(serde_json::Value::as_bool) == Some(true) {
        return None;
    }
    let names: Vec<&str> = arg.get("names")?.as_array()?.iter().filter_map(node_string).collect();
    let (last, schema) = names.split_last()?;
    // A type of another schema is not pg_catalog's, whatever its name.
    let last = match schema.last() {
        Some(schema) if *schema != "pg_catalog" => format!("{schema}.{last}"),
        _ => (*last).to_string(),
    };
    let array = arg.get("array_bounds").and_then(serde_json::Value::as_array).is_some_and(|b| !b.is_empty());
    Some(if array { format!("_{last}") } else { last })
}

/// `SET search_path` with a schema before `pg_catalog` (which is otherwise
/// searched first).
fn search_path(set: &serde_json::Value, statement: &'static str, out: &mut Found<'_>) {
    if !text(set, "name").eq_ignore_ascii_case("search_path") {
        return;
    }
    if int(set, "kind") == protobuf::VariableSetKind::VarSetCurrent as i64 {
        out.problems.push(Problem::Unverifiable { what: format!("{statement} FROM CURRENT") });
        return;
    }
    let schemas: Vec<String> = list(set, "args").iter().filter_map(node_string).map(str::to_string).collect();
    let Some(catalog) = schemas.iter().position(|s| s == "pg_catalog") else { return };
    if let Some(first) = schemas.first().filter(|_| catalog > 0) {
        out.problems.push(Problem::SearchPath { statement, first: first.clone() });
    }
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
fn set_config(call: &serde_json::Value, out: &mut Found<'_>) {
    let list = |field: &str| list(call, field);
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
            out.problems.push(Problem::Unverifiable { what: format!("{function}() of SQL built at run time") });
            return;
        }
        // Run elsewhere (dblink) or as a query: never a top-level statement of the migration.
        out.nested += 1;
        for sql in args.iter().filter_map(node_string) {
            sql_text_problems(sql, ParserOptions::DEFAULT, out);
        }
        out.nested -= 1;
        return;
    }
    if name.as_deref() != Some("set_config") {
        return;
    }
    let setting = list("args").first().and_then(node_string).map(str::to_ascii_lowercase);
    match setting.as_deref() {
        Some("search_path") => out.events.push(Event::PathChange { deferred: out.body > 0 }),
        Some(setting @ ("role" | "session_authorization")) => {
            out.problems.push(Problem::ActAs { statement: format!("set_config('{setting}', …)") })
        }
        Some(_) => {}
        None => out
            .problems
            .push(Problem::Unverifiable { what: "set_config with a setting name computed at run time".to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            migrator: "app_migrator".to_string(),
            runtime: vec!["app_user".into(), "app_service".into()],
            bookkeeping: Some(Relation { schema: Some("drizzle".into()), name: "__drizzle_migrations".into() }),
        }
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
        let inner = "DO $$ BEGIN <<inner>> DECLARE r record := ROW(set_config('role','app_user',false)); \
                     BEGIN NULL; END inner; END $$;";
        assert!(
            matches!(problems(inner).as_slice(), [Problem::Unverifiable { what }] if what.contains("record variable `r`"))
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

    fn grant(statement: &'static str, privileges: &str, on: &str, to: &str) -> Problem {
        Problem::Grant { statement, privileges: privileges.into(), on: on.into(), to: to.into() }
    }

    #[test]
    fn grants_beyond_the_model_are_named() {
        let cases = [
            ("GRANT TRUNCATE ON notes TO app_user;", grant("GRANT", "TRUNCATE", "TABLE", "app_user")),
            ("GRANT ALL ON ALL TABLES IN SCHEMA public TO app_service;", grant("GRANT", "ALL", "TABLE", "app_service")),
            (
                "GRANT REFERENCES (id), TRIGGER ON notes TO PUBLIC;",
                grant("GRANT", "REFERENCES, TRIGGER", "TABLE", "PUBLIC"),
            ),
            (
                "GRANT SELECT ON notes TO app_user WITH GRANT OPTION;",
                grant("GRANT", "… WITH GRANT OPTION", "TABLE", "app_user"),
            ),
            ("GRANT CREATE ON SCHEMA public TO app_user;", grant("GRANT", "CREATE", "SCHEMA", "app_user")),
            ("GRANT ALL PRIVILEGES ON DATABASE app TO PUBLIC;", grant("GRANT", "ALL", "DATABASE", "PUBLIC")),
            ("GRANT TEMP ON DATABASE app TO app_user;", grant("GRANT", "TEMP", "DATABASE", "app_user")),
            (
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT TRIGGER ON TABLES TO app_user;",
                grant("ALTER DEFAULT PRIVILEGES … GRANT", "TRIGGER", "TABLE", "app_user"),
            ),
            (
                "ALTER DEFAULT PRIVILEGES GRANT CREATE ON SCHEMAS TO app_service;",
                grant("ALTER DEFAULT PRIVILEGES … GRANT", "CREATE", "SCHEMA", "app_service"),
            ),
            ("GRANT SELECT ON notes TO app_user_alt;", grant("GRANT", "SELECT", "TABLE", "app_user_alt")),
            ("GRANT USAGE ON FOREIGN SERVER s TO app_user;", grant("GRANT", "USAGE", "FOREIGN SERVER", "app_user")),
            ("GRANT SET ON PARAMETER work_mem TO app_user;", grant("GRANT", "SET", "PARAMETER", "app_user")),
            ("CREATE SCHEMA s GRANT CREATE ON SCHEMA s TO app_user;", grant("GRANT", "CREATE", "SCHEMA", "app_user")),
            (
                "DO $$ BEGIN EXECUTE 'GRANT MAINTAIN ON notes TO app_user'; END $$;",
                grant("GRANT", "MAINTAIN", "TABLE", "app_user"),
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(problems(sql), [expected], "{sql}");
        }
        for sql in [
            "GRANT SELECT, INSERT, UPDATE, DELETE ON notes, \"other\" TO app_user, app_service;",
            "GRANT USAGE ON SCHEMA public TO app_user; GRANT CONNECT ON DATABASE app TO app_service;",
            "GRANT ALL ON SEQUENCE s TO app_user; GRANT EXECUTE ON FUNCTION f() TO app_user;",
            "GRANT TRUNCATE ON notes TO reporting; GRANT ALL ON SCHEMA public TO app_migrator;",
            "REVOKE ALL ON notes FROM PUBLIC; REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_user;",
        ] {
            assert_eq!(problems(sql), [], "{sql}");
        }
    }

    #[test]
    fn rls_switched_off_on_a_table_with_policies_must_come_back_in_the_migration() {
        let off = |table: &str, force| Problem::RlsOff { table: table.into(), force };
        let policy = "CREATE POLICY p ON public.notes USING (true);\n";
        // The seeding pattern real projects use passes.
        let seeding = format!(
            "{policy}ALTER TABLE notes DISABLE ROW LEVEL SECURITY;\nINSERT INTO notes VALUES (1);\n\
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;\nALTER TABLE notes NO FORCE ROW LEVEL SECURITY;\n\
             ALTER TABLE notes FORCE ROW LEVEL SECURITY;"
        );
        assert_eq!(problems(&seeding), []);
        assert_eq!(problems(&format!("{policy}ALTER TABLE notes DISABLE ROW LEVEL SECURITY;")), [off("notes", false)]);
        assert_eq!(
            problems(&format!("{policy}ALTER TABLE IF EXISTS ONLY public.notes NO FORCE ROW LEVEL SECURITY;")),
            [off("public.notes", true)]
        );
        // Switched on again before it was switched off, or the other switch: still off.
        let wrong_order = format!(
            "{policy}ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes DISABLE ROW LEVEL SECURITY;"
        );
        assert_eq!(problems(&wrong_order), [off("notes", false)]);
        let other_switch = format!("{policy}ALTER TABLE notes NO FORCE ROW LEVEL SECURITY, ENABLE ROW LEVEL SECURITY;");
        assert_eq!(problems(&other_switch), [off("notes", true)]);
        // Another table's policies, or another schema's table of that name: not this one.
        assert_eq!(problems(&format!("{policy}ALTER TABLE tags DISABLE ROW LEVEL SECURITY;")), []);
        assert_eq!(problems(&format!("{policy}ALTER TABLE audit.notes DISABLE ROW LEVEL SECURITY;")), []);
        // In a function body it runs when called: switching on again later does not count.
        // Renamed or moved, the table keeps its policies.
        let renamed =
            format!("{policy}ALTER TABLE notes RENAME TO old_notes; ALTER TABLE old_notes DISABLE ROW LEVEL SECURITY;");
        assert_eq!(problems(&renamed), [off("old_notes", false)]);
        let moved = format!(
            "{policy}ALTER TABLE notes SET SCHEMA archive; ALTER TABLE archive.notes DISABLE ROW LEVEL SECURITY;"
        );
        assert_eq!(problems(&moved), [off("archive.notes", false)]);
        let body = format!(
            "{policy}CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN \
             ALTER TABLE notes DISABLE ROW LEVEL SECURITY; END $f$;\nALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
        );
        assert_eq!(problems(&body), [off("notes", false)]);
        // The catalog's policies (applied migrations) and an earlier pending migration's count.
        let catalog = Catalog {
            policy_tables: vec![Relation { schema: Some("public".into()), name: "tags".into() }],
            ..Catalog::default()
        };
        let mut guard = Guard::new(names(), catalog);
        assert!(guard.scan("0001_a", policy, &[]).refused.is_empty());
        let later = guard.scan(
            "0002_b",
            "ALTER TABLE notes DISABLE ROW LEVEL SECURITY; ALTER TABLE tags DISABLE ROW LEVEL SECURITY;",
            &[],
        );
        let found: Vec<Problem> = later.refused.into_iter().map(|f| f.problem).collect();
        assert_eq!(found, [off("notes", false), off("tags", false)]);
    }

    #[test]
    fn what_the_review_found_in_the_rls_judgement_is_refused() {
        let off = |table: &str| Problem::RlsOff { table: table.into(), force: false };
        let policy = "CREATE POLICY p ON notes USING (true);\nCREATE POLICY q ON app.tags USING (true);\n";
        let rls_cases = [
            // Switched on again under another name, or in a DO block's branch, or after a COMMIT.
            ("ALTER TABLE notes DISABLE ROW LEVEL SECURITY; ALTER TABLE s.notes ENABLE ROW LEVEL SECURITY;", "notes"),
            (
                "ALTER TABLE notes DISABLE ROW LEVEL SECURITY; ALTER TABLE notes RENAME TO n2; \
                 ALTER TABLE n2 RENAME TO notes; ALTER TABLE notes ENABLE ROW LEVEL SECURITY;",
                "notes",
            ),
            (
                "ALTER TABLE notes DISABLE ROW LEVEL SECURITY; \
                 DO $$ BEGIN IF false THEN ALTER TABLE notes ENABLE ROW LEVEL SECURITY; END IF; END $$;",
                "notes",
            ),
            (
                "ALTER TABLE notes DISABLE ROW LEVEL SECURITY; COMMIT; SELECT 1/0; ALTER TABLE notes ENABLE ROW LEVEL SECURITY;",
                "notes",
            ),
            // Renamed by ALTER INDEX, or its schema renamed.
            ("ALTER INDEX notes RENAME TO t; ALTER TABLE t DISABLE ROW LEVEL SECURITY;", "t"),
            ("ALTER SCHEMA app RENAME TO tmp; ALTER TABLE tmp.tags DISABLE ROW LEVEL SECURITY;", "tmp.tags"),
            // A partition or a child: read directly, the parent's policies do not apply.
            (
                "CREATE TABLE notes_2026 PARTITION OF notes FOR VALUES IN (2026); \
                 ALTER TABLE notes_2026 DISABLE ROW LEVEL SECURITY;",
                "notes_2026",
            ),
            (
                "ALTER TABLE notes ATTACH PARTITION notes_old FOR VALUES IN (2025); \
                 ALTER TABLE notes_old DISABLE ROW LEVEL SECURITY;",
                "notes_old",
            ),
            ("CREATE TABLE more (x int) INHERITS (notes); ALTER TABLE more DISABLE ROW LEVEL SECURITY;", "more"),
        ];
        for (sql, table) in rls_cases {
            assert_eq!(problems(&format!("{policy}{sql}")), [off(table)], "{sql}");
        }
    }

    #[test]
    fn what_the_review_found_in_the_definer_and_grant_judgement_is_refused() {
        let definer = |f: &str| Problem::Definer { function: f.into() };
        let create = "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n";
        for sql in [
            format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA app FROM PUBLIC;\n{create}"),
            format!("{create}REVOKE EXECUTE ON FUNCTION app.f(int) FROM PUBLIC;"),
            format!("{create}REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC;"),
            format!("{create}REVOKE GRANT OPTION FOR EXECUTE ON FUNCTION app.f() FROM PUBLIC;"),
            format!("{create}DO $$ BEGIN IF false THEN REVOKE EXECUTE ON FUNCTION app.f() FROM PUBLIC; END IF; END $$;"),
            format!(
                "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO app_user;\n{create}\
                 REVOKE EXECUTE ON FUNCTION app.f() FROM PUBLIC;"
            ),
            "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path TO DEFAULT AS 'SELECT 1';"
                .to_string(),
            "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' RESET ALL AS 'SELECT 1';"
                .to_string(),
            "ALTER FUNCTION app.f() SET search_path TO DEFAULT;".to_string(),
        ] {
            assert_eq!(problems(&sql), [definer("app.f")], "{sql}");
        }
        let unqualified = "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n\
                           REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;";
        assert_eq!(problems(unqualified), [definer("f")]);
        // Default privileges that keep every new function from PUBLIC, before the CREATE: it passes.
        let defaults = format!("ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;\n{create}");
        assert_eq!(problems(&defaults), []);
        // PUBLIC gets nothing but PostgreSQL's defaults; the bookkeeping schema nothing at all.
        let grants = [
            ("GRANT CONNECT ON DATABASE app TO PUBLIC;", grant("GRANT", "CONNECT", "DATABASE", "PUBLIC")),
            ("GRANT SELECT ON notes TO PUBLIC;", grant("GRANT", "SELECT", "TABLE", "PUBLIC")),
            ("GRANT USAGE ON SEQUENCE s TO PUBLIC;", grant("GRANT", "USAGE", "SEQUENCE", "PUBLIC")),
            (
                "GRANT USAGE ON SCHEMA drizzle TO app_user;",
                grant("GRANT", "USAGE", "SCHEMA in the bookkeeping schema `drizzle`", "app_user"),
            ),
            (
                "GRANT INSERT, DELETE ON drizzle.__drizzle_migrations TO app_user;",
                grant("GRANT", "INSERT, DELETE", "TABLE in the bookkeeping schema `drizzle`", "app_user"),
            ),
            (
                "ALTER DEFAULT PRIVILEGES IN SCHEMA drizzle GRANT SELECT ON TABLES TO app_service;",
                grant(
                    "ALTER DEFAULT PRIVILEGES … GRANT",
                    "SELECT",
                    "TABLE in the bookkeeping schema `drizzle`",
                    "app_service",
                ),
            ),
        ];
        for (sql, expected) in grants {
            assert_eq!(problems(sql), [expected], "{sql}");
        }
        for sql in [
            "GRANT USAGE ON SCHEMA app TO PUBLIC; GRANT EXECUTE ON FUNCTION f() TO PUBLIC;",
            "GRANT USAGE ON TYPE status TO PUBLIC;",
        ] {
            assert_eq!(problems(sql), [], "{sql}");
        }
    }

    fn refused_in(migrations: &[&str]) -> Vec<Problem> {
        let mut guard = Guard::new(names(), Catalog::default());
        let mut found = Vec::new();
        for (i, sql) in migrations.iter().enumerate() {
            found.extend(guard.scan(&format!("000{i}_x"), sql, &[]).refused);
        }
        found.into_iter().map(|f| f.problem).collect()
    }

    #[test]
    fn what_the_second_review_found_is_refused() {
        let off = Problem::RlsOff { table: "notes".into(), force: false };
        let off = || off.clone();
        let policy = "CREATE POLICY p ON notes USING (true);\n--> statement-breakpoint\n";
        let bp = "\n--> statement-breakpoint\n";
        // After a COMMIT every piece commits alone: off and on again must share one.
        let autocommit = format!(
            "{policy}COMMIT;{bp}ALTER TABLE notes DISABLE ROW LEVEL SECURITY;{bp}SELECT 1/0;{bp}\
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
        );
        assert_eq!(problems(&autocommit), [off()]);
        let later =
            format!("ALTER TABLE notes DISABLE ROW LEVEL SECURITY;{bp}ALTER TABLE notes ENABLE ROW LEVEL SECURITY;");
        assert_eq!(refused_in(&[&format!("{policy}COMMIT;"), &later]), [off()]);
        let one_piece = "ALTER TABLE notes DISABLE ROW LEVEL SECURITY; ALTER TABLE notes ENABLE ROW LEVEL SECURITY;";
        assert_eq!(refused_in(&[&format!("{policy}COMMIT;"), one_piece]), []);
        // An unqualified name that may reach another table by then; a savepoint.
        for between in [
            "CREATE TEMP TABLE notes (id int);",
            "CREATE TABLE pg_temp.notes (id int);",
            "SELECT 1 AS id INTO TEMP notes;",
            "CREATE TABLE app.notes (id int);",
            "SET search_path = decoy, public;",
            "SELECT set_config('search_path', 'decoy', false);",
        ] {
            let sql = format!(
                "{policy}ALTER TABLE notes DISABLE ROW LEVEL SECURITY; {between} ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
            );
            assert_eq!(problems(&sql), [off()], "{between}");
        }
        let qualified =
            "CREATE POLICY p ON public.notes USING (true); ALTER TABLE public.notes DISABLE ROW LEVEL SECURITY; \
                         SET search_path = decoy; ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;";
        assert_eq!(problems(qualified), []);
        assert!(
            matches!(problems("SAVEPOINT s;").as_slice(), [Problem::Unverifiable { what }] if what.contains("savepoint"))
        );
        // Switched on in another session (dblink) is not switched on here.
        let dblink = format!(
            "{policy}ALTER TABLE notes DISABLE ROW LEVEL SECURITY; \
             SELECT dblink_exec('dbname=app', 'ALTER TABLE notes ENABLE ROW LEVEL SECURITY');"
        );
        assert_eq!(problems(&dblink), [off()]);
    }

    #[test]
    fn what_the_second_review_found_in_definers_grants_and_defaults_is_refused() {
        // A grant that names the definer otherwise; a grant in a later migration.
        let definer = |f: &str| Problem::Definer { function: f.into() };
        let create = "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n\
                      REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC;\n";
        assert_eq!(problems(create), []);
        for grant in [
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO app_user;",
            "GRANT ALL ON FUNCTION public.f(int) TO PUBLIC;",
        ] {
            assert_eq!(problems(&format!("{create}{grant}")), [definer("f")], "{grant}");
        }
        assert_eq!(refused_in(&[create, "GRANT EXECUTE ON FUNCTION f() TO app_service;"]), [definer("f")]);
        // The path set afterwards, or a trigger function: passes.
        let path_after = "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n\
                          ALTER FUNCTION app.f() SET search_path = '';";
        assert_eq!(problems(path_after), []);
        // A trigger function: every runtime write runs it; only a search_path makes it safe.
        let trigger = "CREATE FUNCTION app.stamp() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS \
                       $$ BEGIN RETURN NEW; END $$;\nREVOKE EXECUTE ON FUNCTION app.stamp() FROM PUBLIC;";
        assert_eq!(problems(trigger), [Problem::DefinerTrigger { function: "app.stamp".into() }]);
        assert_eq!(problems(&format!("{trigger}\nALTER FUNCTION app.stamp() SET search_path = '';")), []);
        // Set afterwards, the path makes a later grant harmless; default grants reach only later functions.
        assert_eq!(problems(&format!("{path_after}\nGRANT EXECUTE ON FUNCTION app.f() TO app_user;")), []);
        let kept = "CREATE FUNCTION app.g() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n\
                    REVOKE EXECUTE ON FUNCTION app.g() FROM PUBLIC;";
        assert_eq!(refused_in(&[kept, "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO app_user;"]), []);
        // Default privileges revoked and rolled back keep nothing.
        let rolled_back = "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC; ROLLBACK;\n\
                           CREATE FUNCTION app.h() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';";
        assert_eq!(problems(rolled_back), [definer("app.h")]);
        // The bookkeeping schema and table stay where they are.
        for sql in [
            "ALTER SCHEMA drizzle RENAME TO d;",
            "ALTER TABLE drizzle.__drizzle_migrations RENAME TO m;",
            "ALTER TABLE drizzle.__drizzle_migrations SET SCHEMA public;",
            "ALTER TABLE public.notes SET SCHEMA drizzle;",
            "ALTER TABLE drizzle.other SET SCHEMA public;",
            "ALTER FUNCTION drizzle.f() SET SCHEMA public;",
        ] {
            assert!(matches!(problems(sql).as_slice(), [Problem::Bookkeeping { .. }]), "{sql}: {:?}", problems(sql));
        }
        assert_eq!(
            problems("GRANT INSERT ON __drizzle_migrations TO app_user;"),
            [grant("GRANT", "INSERT", "TABLE in the bookkeeping schema `drizzle`", "app_user")]
        );
        // Defaults every runtime session would start with.
        for (sql, setting) in [
            ("ALTER DATABASE app SET app.current_user_id = '1';", "app.current_user_id"),
            ("ALTER DATABASE app SET row_security = off;", "row_security"),
        ] {
            assert_eq!(problems(sql), [Problem::DatabaseDefault { setting: setting.into() }]);
        }
        assert_eq!(problems("ALTER DATABASE app RESET app.current_user_id;"), []);
        assert_eq!(problems("ALTER DATABASE app SET app.current_user_id TO DEFAULT;"), []);
        // Other grantees that hold nothing of their own.
        for (sql, to) in [
            ("GRANT SELECT ON notes TO SESSION_USER;", "SESSION_USER"),
            ("GRANT SELECT ON notes TO app_migrator_alt;", "app_migrator_alt"),
            ("GRANT SELECT ON notes TO app_user_logins;", "app_user_logins"),
        ] {
            assert_eq!(problems(sql), [grant("GRANT", "SELECT", "TABLE", to)], "{sql}");
        }
        assert_eq!(problems("GRANT CONNECT ON DATABASE app TO app_user_logins;"), []);
    }

    #[test]
    fn definer_functions_need_a_search_path_or_a_revoke() {
        let definer = |f: &str| Problem::Definer { function: f.into() };
        let create = "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';";
        assert_eq!(problems(create), [definer("app.f")]);
        for sql in [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' AS 'SELECT 1';",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY INVOKER AS 'SELECT 1';",
            "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n\
             REVOKE EXECUTE ON FUNCTION app.f() FROM PUBLIC;",
            "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n\
             REVOKE ALL ON ALL FUNCTIONS IN SCHEMA app FROM PUBLIC;",
        ] {
            assert_eq!(problems(sql), [], "{sql}");
        }
        let granted = format!(
            "{create}\nREVOKE EXECUTE ON FUNCTION app.f() FROM PUBLIC;\nGRANT EXECUTE ON FUNCTION app.f() TO app_user;"
        );
        assert_eq!(problems(&granted), [definer("app.f")]);
        let other = format!("{create}\nREVOKE EXECUTE ON FUNCTION app.g() FROM PUBLIC;");
        assert_eq!(problems(&other), [definer("app.f")]);
        assert_eq!(problems("ALTER FUNCTION f(int) SECURITY DEFINER;"), [definer("f")]);
        assert_eq!(problems("ALTER FUNCTION f(int) SECURITY DEFINER SET search_path = pg_catalog;"), []);
        assert_eq!(problems("ALTER FUNCTION f(int) RESET search_path;"), [definer("f")]);
        assert_eq!(problems("ALTER FUNCTION f(int) RESET ALL;"), [definer("f")]);
        let procedure = "CREATE PROCEDURE p() LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';";
        assert_eq!(problems(procedure), [definer("p")]);
    }

    fn shadow_guard() -> Guard {
        let mut catalog = Catalog::default();
        catalog.functions.insert("quote_ident".into(), vec![vec!["text".into()]]);
        catalog.functions.insert("length".into(), vec![vec!["text".into()], vec!["bpchar".into()]]);
        catalog.functions.insert("sum".into(), vec![vec!["int4".into()]]);
        catalog.operators.insert("=".into(), vec![("int4".into(), "int4".into()), ("text".into(), "text".into())]);
        Guard::new(names(), catalog)
    }

    #[test]
    fn names_that_shadow_pg_catalog_are_named() {
        let shadowing = |sql: &str| -> Vec<Problem> {
            let mut guard = shadow_guard();
            let mut found = guard.scan("0001_x", sql, &[]).refused;
            found.extend(guard.finish(None, &[]).unwrap().refused);
            found.into_iter().map(|f| f.problem).collect()
        };
        let shadow = |what: &str| Problem::Shadow { what: what.into() };
        let cases = [
            (
                "CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE sql AS 'SELECT 1::text';",
                shadow("function `public.quote_ident(name)` has pg_catalog's name `quote_ident`"),
            ),
            (
                "CREATE FUNCTION length(s character varying, OUT n int) LANGUAGE sql AS 'SELECT 1';",
                shadow("function `length(varchar)` has pg_catalog's name `length`"),
            ),
            (
                "CREATE FUNCTION quote_ident(x notes.body%TYPE) RETURNS text LANGUAGE sql AS 'SELECT 1::text';",
                shadow("function `quote_ident(…)` has pg_catalog's name `quote_ident`"),
            ),
            (
                "CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = int, FUNCTION = f);",
                shadow("operator `public.=(text, int4)` has pg_catalog's name `=`"),
            ),
            (
                "CREATE AGGREGATE sum(bigint[]) (SFUNC = f, STYPE = bigint);",
                shadow("aggregate `sum(_int8)` has pg_catalog's name `sum`"),
            ),
            (
                "CREATE FUNCTION quote_ident(public.text) RETURNS text LANGUAGE sql AS 'SELECT 1::text';",
                shadow("function `quote_ident(public.text)` has pg_catalog's name `quote_ident`"),
            ),
            (
                "ALTER FUNCTION public.my_quote(name) RENAME TO quote_ident;",
                shadow("function `public.quote_ident(name)` has pg_catalog's name `quote_ident`"),
            ),
            (
                "ALTER FUNCTION my_quote RENAME TO quote_ident;",
                shadow("function `quote_ident(…)` has pg_catalog's name `quote_ident`"),
            ),
            (
                "ALTER ROUTINE public.my_quote(name) RENAME TO quote_ident;",
                shadow("function `public.quote_ident(name)` has pg_catalog's name `quote_ident`"),
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(shadowing(sql), [expected], "{sql}");
        }
        for sql in [
            "CREATE FUNCTION quote_ident(text) RETURNS text LANGUAGE sql AS 'SELECT $1';",
            "CREATE FUNCTION public.length(pg_catalog.text) RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "CREATE FUNCTION slugify(text) RETURNS text LANGUAGE sql AS 'SELECT $1';",
            "CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = f);",
            "CREATE PROCEDURE length(int) LANGUAGE sql AS 'SELECT 1';",
        ] {
            assert_eq!(shadowing(sql), [], "{sql}");
        }
    }

    #[test]
    fn a_default_search_path_with_an_app_schema_before_pg_catalog_is_named() {
        assert_eq!(
            problems("ALTER DATABASE app SET search_path = public, pg_catalog;"),
            [Problem::SearchPath { statement: "ALTER DATABASE … SET search_path", first: "public".into() }]
        );
        assert_eq!(
            problems("ALTER DATABASE app SET search_path = \"$user\", pg_catalog, public;"),
            [Problem::SearchPath { statement: "ALTER DATABASE … SET search_path", first: "$user".into() }]
        );
        for sql in [
            "ALTER DATABASE app SET search_path = pg_catalog, public;",
            "ALTER DATABASE app SET search_path TO public, app;",
            "ALTER DATABASE app RESET search_path;",
        ] {
            assert_eq!(problems(sql), [], "{sql}");
        }
        assert!(matches!(
            problems("ALTER DATABASE app SET search_path FROM CURRENT;").as_slice(),
            [Problem::Unverifiable { .. }]
        ));
        assert_eq!(
            problems("ALTER ROLE app_user SET search_path = public, pg_catalog;"),
            [Problem::RoleStatement { statement: "ALTER ROLE … SET" }]
        );
    }

    #[test]
    fn a_file_the_parser_cannot_read_is_named() {
        assert!(
            matches!(problems("CREATE TABLE (;").as_slice(), [Problem::Unverifiable { what }] if what.contains("cannot read"))
        );
    }
}
