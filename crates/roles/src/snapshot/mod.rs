//! One read of the catalogs: everything the plan (and the audit) needs, in a
//! fixed number of set-based queries whatever the size of the database. The
//! one place sessions are set up for reading ([`prepare_session`]) and the
//! one entry point ([`read`]), for the cluster part (`cluster.rs`) and the
//! database part (`db.rs`).

mod cluster;
mod db;
pub mod reach;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use dbenv::{Dsn, Secret};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Row};
use tracing::debug;

use crate::acl::{parse_acl, AclItem};
use crate::kinds::{DefaultObjects, RelKind};
use crate::model::{Attribute, Model};
use crate::scram::StoredPassword;

/// A client that counts the queries it sends: the audit reports the count,
/// which must not grow with the number of objects. Queries go out typed,
/// in one round trip each (no separate prepare and close).
pub struct Queries<'c> {
    client: &'c mut Client,
    pub sent: u32,
}

/// A typed query parameter.
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

impl<'c> Queries<'c> {
    pub fn new(client: &'c mut Client) -> Queries<'c> {
        Queries { client, sent: 0 }
    }

    pub fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, postgres::Error> {
        self.sent += 1;
        let started = std::time::Instant::now();
        let rows = self.client.query_typed(sql, params);
        trace(sql, started, rows.as_ref().map(Vec::len).unwrap_or(0));
        rows
    }

    pub fn query_one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Row, postgres::Error> {
        self.sent += 1;
        let started = std::time::Instant::now();
        let row = self.client.query_typed_one(sql, params);
        trace(sql, started, 1);
        row
    }
}

/// Each catalog query's time, as a `debug` event of target `roles::query`
/// (`RUST_LOG=roles::query=debug`, or `XTASK_TRACE_QUERIES=1`): profiling
/// large databases.
fn trace(sql: &str, started: std::time::Instant, rows: usize) {
    if tracing::enabled!(target: "roles::query", tracing::Level::DEBUG) {
        let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(90).collect();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        debug!(target: "roles::query", "{ms:>8.1} ms {rows:>6} rows  {head}");
    }
}

/// What a read is for: it decides the session's settings and what may be
/// left out of the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `db-provision`: no statement text in the server log where the admin
    /// may say so; `read_only` for a dry run. Leaves out what only the
    /// audit reads.
    Provision { read_only: bool },
    /// `db-check`: read-only, everything.
    Audit,
}

/// The one set-up of a session that reads the catalogs (and, for
/// provisioning, changes them): a recognisable name, JIT off (the catalog
/// queries are cheap but their estimates cross `jit_above_cost`, and
/// compiling them costs ~100 ms for nothing), and for provisioning no
/// statement text in the server log where the admin may say so (superusers;
/// PostgreSQL 15+ also lets `GRANT SET ON PARAMETER` allow it). Returns
/// whether the log was silenced.
pub fn prepare_session(client: &mut Client, purpose: Purpose) -> Result<bool> {
    let (name, read_only) = match purpose {
        Purpose::Provision { read_only } => ("cargo xtask db-provision", read_only),
        Purpose::Audit => ("cargo xtask db-check", true),
    };
    client.batch_execute(&format!("SET application_name = '{name}'; SET jit = off"))?;
    let silenced = match purpose {
        Purpose::Provision { .. } => silence_log(client)?,
        Purpose::Audit => false,
    };
    if read_only {
        client.batch_execute("SET default_transaction_read_only = on")?;
    }
    Ok(silenced)
}

fn silence_log(client: &mut Client) -> Result<bool> {
    let version = dbenv::ServerVersion::read(client)?;
    let mut settings = vec![
        "log_statement = 'none'",
        "log_min_error_statement = 'panic'",
        "log_min_duration_statement = -1",
        "debug_print_parse = off",
        "debug_print_rewritten = off",
        "debug_print_plan = off",
        // pg_stat_activity would show an ALTER ROLE with its verifier while it runs.
        "track_activities = off",
    ];
    if version.has_log_transaction_sample_rate() {
        settings.push("log_transaction_sample_rate = 0");
    }
    if version.has_log_min_duration_sample() {
        settings.push("log_min_duration_sample = -1");
    }
    untrack_statements(client)?;
    let mut silenced = true;
    for setting in settings {
        if let Err(error) = client.batch_execute(&format!("SET {setting}")) {
            if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                silenced = false;
            } else {
                return Err(error).with_context(|| format!("SET {setting}"));
            }
        }
    }
    Ok(silenced)
}

/// Keeps the session's statements (an `ALTER ROLE … PASSWORD` with its
/// SCRAM verifier) out of `pg_stat_statements`, where the admin may say so
/// (superusers, or `GRANT SET ON PARAMETER`). Where the module is not loaded
/// the setting is an inert placeholder; where the admin may not, the caller
/// warns ([`statements_tracked`]).
fn untrack_statements(client: &mut Client) -> Result<()> {
    match client.batch_execute("SET pg_stat_statements.track = 'none'") {
        Err(error) if error.code() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            Err(error).context("SET pg_stat_statements.track = 'none'")
        }
        _ => Ok(()),
    }
}

/// Whether `pg_stat_statements` is loaded and still records this session's
/// statements: only a loaded module's setting can be refused (an unloaded
/// one is a placeholder anyone may set). Reads nothing only superusers may.
pub fn statements_tracked(client: &mut Client) -> Result<bool> {
    match client.batch_execute("SET pg_stat_statements.track = 'none'") {
        Ok(()) => Ok(false),
        Err(error) if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Ok(true),
        Err(error) => Err(error).context("SET pg_stat_statements.track = 'none'"),
    }
}

/// The admin role provisioning runs as, and what it may do.
#[derive(Clone, Debug)]
pub struct Admin {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub bypassrls: bool,
    /// Whether `pg_authid` (the stored verifiers) is readable.
    pub reads_authid: bool,
    /// Per role of interest: (member with privileges, may SET ROLE, has ADMIN).
    pub access: BTreeMap<String, RoleAccess>,
    /// Whether `SET log_statement` worked in the admin's sessions.
    pub can_silence_log: bool,
    /// The server's `log_statement` as the admin's session sees it.
    pub log_statement: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleAccess {
    /// `pg_has_role(…, 'USAGE')`: acts with the role's privileges (owner checks).
    pub usage: bool,
    /// May `SET ROLE` to it (PostgreSQL 16+: `SET` option; before: membership).
    pub set: bool,
    /// `ADMIN OPTION` (PostgreSQL 16+: needed to alter the role).
    pub admin: bool,
}

/// A role's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRow {
    pub name: String,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    pub login: bool,
    pub bypassrls: bool,
    pub password: StoredPassword,
    /// When the verifier is unreadable: whether a SCRAM login with the
    /// model's password worked (`None`: could not tell).
    pub login_check: Option<bool>,
    /// The model's login for the role exists (the role itself, or its
    /// alternate login once rotated); `password` and `login_check` are the
    /// login's.
    pub login_exists: bool,
    /// `db-provision` created it ([`ROLE_MARKER`] is its comment).
    pub made_here: bool,
}

impl RoleRow {
    /// Whether the role has `attribute`.
    pub fn has(&self, attribute: Attribute) -> bool {
        match attribute {
            Attribute::Login => self.login,
            Attribute::Superuser => self.superuser,
            Attribute::CreateDb => self.createdb,
            Attribute::CreateRole => self.createrole,
            Attribute::Replication => self.replication,
            Attribute::BypassRls => self.bypassrls,
        }
    }
}

/// The comment `db-provision` puts on the roles it creates: a conversion
/// that resumes after an interruption knows that their access is its own
/// doing, not a widening of a role the app had.
pub const ROLE_MARKER: &str = "created by cargo xtask db-provision";

/// A membership edge from `pg_auth_members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub role: String,
    pub member: String,
    pub grantor: String,
    pub admin_option: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub owner: String,
    pub acl: Vec<AclItem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tablespace {
    pub name: String,
    pub owner: String,
    pub acl: Vec<AclItem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub name: String,
    pub owner: String,
    pub acl: Vec<AclItem>,
}

/// A relation in a managed schema: table, partitioned table, view,
/// materialized view, foreign table or sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// `pg_class.oid`.
    pub oid: i64,
    /// Its schema and name, unquoted.
    pub schema: String,
    pub name: String,
    pub kind: RelKind,
    /// Its owner and ACL (the default one where `relacl` is null).
    pub owner: String,
    pub acl: Vec<AclItem>,
    /// For a serial or identity sequence: the table it belongs to (it
    /// changes owner with that table and cannot be re-owned alone).
    pub owned_by: Option<i64>,
    /// How many locks an owner change takes (the relation, its indexes,
    /// TOAST table and index, linked sequences).
    pub lock_cost: u32,
    /// Views: `security_invoker` is set (PostgreSQL 15+).
    pub security_invoker: bool,
    /// `relrowsecurity`, `relforcerowsecurity`, and how many policies it has.
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub policies: i64,
    /// The tables it inherits from or is a partition of, at any depth, as
    /// `schema.name`: a `[[private]]` table keeps its partitions private.
    pub ancestors: Vec<String>,
}

impl Relation {
    pub fn is_sequence(&self) -> bool {
        self.kind == RelKind::Sequence
    }

    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", dbenv::quote_ident(&self.schema), dbenv::quote_ident(&self.name))
    }

    /// The keyword `ALTER … OWNER` needs.
    pub fn alter_keyword(&self) -> &'static str {
        self.kind.alter_keyword()
    }

    /// A word for reports.
    pub fn noun(&self) -> &'static str {
        self.kind.noun()
    }
}

/// A column-level ACL (`pg_attribute.attacl`) in a managed schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnAcl {
    pub table_oid: i64,
    pub column: String,
    pub acl: Vec<AclItem>,
}

/// Any other object that must change owner: owned by a runtime role
/// anywhere in the database, or by anyone but the migrator in a managed
/// schema. Relations of managed schemas are in [`Relation`] instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedObject {
    /// The system catalog, e.g. `pg_proc`.
    pub catalog: String,
    pub oid: i64,
    pub owner: String,
    /// `pg_identify_object(...).type`, e.g. `function`, `type`, `extension`.
    pub kind: String,
    pub schema: Option<String>,
    /// `pg_identify_object(...).identity`: quoted and qualified, usable in SQL.
    pub identity: String,
    /// Functions and types: their ACL (the old owner may need EXECUTE/USAGE back).
    pub acl: Option<Vec<AclItem>>,
    pub security_definer: bool,
}

/// A `pg_default_acl` row (of any role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultAcl {
    pub role: String,
    /// `None`: for all schemas.
    pub schema: Option<String>,
    /// `r` tables, `S` sequences, `f` functions, `T` types, `n` schemas, `L` large objects.
    pub objtype: DefaultObjects,
    pub acl: Vec<AclItem>,
    /// For a row of all schemas: PostgreSQL's built-in defaults it differs
    /// from (`acldefault`), which the row returns to when it is removed.
    /// Empty for a per-schema row, which only adds to them.
    pub builtin: Vec<AclItem>,
}

/// The state of the app database (or of `template1`, which a new database
/// copies, when it does not exist yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbContents {
    /// The managed schemas that exist.
    pub schemas: Vec<Schema>,
    /// Their relations, by schema and name.
    pub relations: Vec<Relation>,
    /// Column ACLs in them.
    pub columns: Vec<ColumnAcl>,
    /// Objects to move (see [`OwnedObject`]).
    pub objects: Vec<OwnedObject>,
    /// Every role's default privileges.
    pub default_acls: Vec<DefaultAcl>,
    /// Foreign keys between relations of the managed schemas: (from, to).
    pub foreign_keys: Vec<(i64, i64)>,
    /// Views, materialized views, rules, definer functions and children
    /// without RLS: what runs with its owner's rights ([`crate::reach`]).
    pub reach: reach::Reach,
    /// Schemas outside the managed ones (and outside PostgreSQL's own).
    pub other_schemas: Vec<Schema>,
    /// Foreign-data wrappers and foreign servers, with their ACLs.
    pub foreign: Vec<ForeignObject>,
    /// User mappings for the runtime roles or PUBLIC: `(server, user)`.
    pub user_mappings: Vec<(String, String)>,
    /// Foreign tables by oid, with their server.
    pub foreign_tables: Vec<(i64, String)>,
    /// The extensions of `APP_DB_EXTENSIONS` (read only when it names some).
    pub extensions: Vec<ExtensionState>,
    /// Queries this part of the read sent.
    pub queries: u32,
}

/// A foreign-data wrapper or a foreign server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignObject {
    /// `FOREIGN DATA WRAPPER` or `FOREIGN SERVER`, as GRANT spells it.
    pub keyword: &'static str,
    pub name: String,
    pub owner: String,
    pub acl: Vec<AclItem>,
}

impl ForeignObject {
    pub fn is_server(&self) -> bool {
        self.keyword == "FOREIGN SERVER"
    }

    /// A word for reports.
    pub fn noun(&self) -> &'static str {
        if self.is_server() {
            "server"
        } else {
            "foreign-data wrapper"
        }
    }
}

/// An extension `APP_DB_EXTENSIONS` asks for, as the server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionState {
    pub name: String,
    pub installed: bool,
    /// The server has its files.
    pub available: bool,
    /// A non-superuser with CREATE on the database may create it.
    pub trusted: bool,
}

/// One `ALTER ROLE … SET` or `ALTER DATABASE … SET` default that applies in
/// the app database (`pg_db_role_setting`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSetting {
    /// The role; `None` for every role (`ALTER DATABASE … SET`).
    pub role: Option<String>,
    /// The database; `None` for every database (`ALTER ROLE … SET`).
    pub database: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub server_version: dbenv::ServerVersion,
    pub admin: Admin,
    pub roles: BTreeMap<String, RoleRow>,
    pub memberships: Vec<Membership>,
    /// The app database, when it exists.
    pub database: Option<Database>,
    /// Other databases owned by the runtime roles (`REASSIGN OWNED` would take them).
    pub other_databases: Vec<Database>,
    pub tablespaces: Vec<Tablespace>,
    /// Role and database defaults of the runtime roles in the app database.
    pub settings: Vec<RoleSetting>,
    pub db: DbContents,
    /// Queries this read sent (cluster and database parts).
    pub queries: u32,
}

impl Snapshot {
    pub fn major(&self) -> i32 {
        self.server_version.major()
    }
}

/// Where a read logs in to check passwords it cannot read, and whether the
/// admin's sessions silenced the log.
#[derive(Clone, Copy, Debug)]
pub struct Read<'a> {
    pub purpose: Purpose,
    /// Where a role may try its password when `pg_authid` is unreadable;
    /// `None`: passwords are not part of the read.
    pub login_dsn: Option<&'a Dsn>,
    pub can_silence_log: bool,
}

/// Reads the cluster-wide part through `cluster` (any database) and the
/// database part through `db` (the app database, or `template1`), or
/// through `cluster` too when `db` is `None` (it is then connected to the
/// app database).
pub fn read(cluster: &mut Client, db: Option<&mut Client>, model: &Model, how: Read<'_>) -> Result<Snapshot> {
    let mut snapshot = cluster::read(cluster, model, how.login_dsn, how.can_silence_log)?;
    let db = match db {
        Some(db) => db,
        None => cluster,
    };
    snapshot.db = db::read(db, model, snapshot.server_version, how.purpose)?;
    snapshot.queries += snapshot.db.queries;
    Ok(snapshot)
}

/// An `aclitem[]` column read as `text[]`.
fn acl_column(row: &Row, column: usize) -> Result<Vec<AclItem>> {
    parse_acl(&row.get::<_, Vec<String>>(column))
}
