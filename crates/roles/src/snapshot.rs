//! One read of the catalogs: everything the plan (and the audit) needs, in a
//! fixed number of set-based queries whatever the size of the database.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use dbenv::{Dsn, Secret};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Row};

use crate::acl::{parse_acl, AclItem};
use crate::model::Model;
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

/// With `XTASK_TRACE_QUERIES` set, each catalog query's time goes to stderr
/// (profiling large databases).
fn trace(sql: &str, started: std::time::Instant, rows: usize) {
    if std::env::var_os("XTASK_TRACE_QUERIES").is_some() {
        let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(90).collect();
        eprintln!("{:>8.1} ms {rows:>6} rows  {head}", started.elapsed().as_secs_f64() * 1000.0);
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
}

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
    pub oid: i64,
    pub schema: String,
    pub name: String,
    /// `pg_class.relkind`: r, p, v, m, f or S.
    pub kind: char,
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
}

impl Relation {
    pub fn is_sequence(&self) -> bool {
        self.kind == 'S'
    }

    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", dbenv::quote_ident(&self.schema), dbenv::quote_ident(&self.name))
    }

    /// The keyword `ALTER … OWNER` needs.
    pub fn alter_keyword(&self) -> &'static str {
        match self.kind {
            'v' => "VIEW",
            'm' => "MATERIALIZED VIEW",
            'f' => "FOREIGN TABLE",
            'S' => "SEQUENCE",
            _ => "TABLE",
        }
    }

    /// A word for reports.
    pub fn noun(&self) -> &'static str {
        match self.kind {
            'v' => "view",
            'm' => "materialized view",
            'f' => "foreign table",
            'S' => "sequence",
            'p' => "partitioned table",
            _ => "table",
        }
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

/// A `pg_default_acl` row of one of the three roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultAcl {
    pub role: String,
    /// `None`: for all schemas.
    pub schema: Option<String>,
    /// `r` tables, `S` sequences, `f` functions, `T` types, `n` schemas, `L` large objects.
    pub objtype: char,
    pub acl: Vec<AclItem>,
}

/// The state of the app database (or of `template1`, which a new database
/// copies, when it does not exist yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbContents {
    pub schemas: Vec<Schema>,
    pub relations: Vec<Relation>,
    pub columns: Vec<ColumnAcl>,
    pub objects: Vec<OwnedObject>,
    pub default_acls: Vec<DefaultAcl>,
    /// Foreign keys between relations of the managed schemas: (from, to).
    pub foreign_keys: Vec<(i64, i64)>,
    /// Views, materialized views, rules, definer functions and children
    /// without RLS: what runs with its owner's rights ([`crate::reach`]).
    pub reach: crate::reach::Reach,
    /// Schemas outside the managed ones (and outside PostgreSQL's own).
    pub other_schemas: Vec<Schema>,
    /// Foreign-data wrappers and foreign servers, with their ACLs.
    pub foreign: Vec<ForeignObject>,
    /// User mappings for the runtime roles or PUBLIC: `(server, user)`.
    pub user_mappings: Vec<(String, String)>,
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
    /// `server_version_num`, e.g. 150018.
    pub server_version: i32,
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
        self.server_version / 10000
    }
}

/// Reads the cluster-wide part through `cluster` (any database) and the
/// database part through `db` (the app database, or `template1`).
/// `login_dsn` is where a role may try its password when `pg_authid` is
/// unreadable.
pub fn read(
    cluster: &mut Client,
    db: &mut Client,
    model: &Model,
    login_dsn: Option<&Dsn>,
    can_silence_log: bool,
) -> Result<Snapshot> {
    let mut snapshot = read_cluster(cluster, model, login_dsn, can_silence_log)?;
    snapshot.db = read_db(db, model, snapshot.server_version)?;
    snapshot.queries += snapshot.db.queries;
    Ok(snapshot)
}

/// The cluster-wide part (roles, memberships, databases, tablespaces), with
/// an empty database part. With `login_dsn`, stored passwords are read (or,
/// where `pg_authid` is unreadable, tried by logging in); without, they stay
/// [`StoredPassword::Unknown`].
pub fn read_cluster(
    cluster: &mut Client,
    model: &Model,
    login_dsn: Option<&Dsn>,
    can_silence_log: bool,
) -> Result<Snapshot> {
    let mut cluster = Queries::new(cluster);
    let names = model.role_names();
    let runtime = model.runtime_names();
    let row = cluster
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_user::text, r.rolsuper, r.rolcreaterole, \
                    r.rolcreatedb, r.rolbypassrls, has_table_privilege('pg_catalog.pg_authid', 'SELECT'), \
                    current_setting('log_statement') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .context("read the admin role")?;
    let server_version: i32 = row.get(0);
    let mut admin = Admin {
        name: row.get(1),
        superuser: row.get(2),
        createrole: row.get(3),
        createdb: row.get(4),
        bypassrls: row.get(5),
        reads_authid: row.get(6),
        access: BTreeMap::new(),
        can_silence_log,
        log_statement: row.get(7),
    };

    let mut roles = BTreeMap::new();
    for row in cluster.query(
        "SELECT rolname::text, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolcanlogin, rolbypassrls, \
                pg_has_role(current_user, oid, 'USAGE'), pg_has_role(current_user, oid, 'MEMBER') \
         FROM pg_roles WHERE rolname = ANY($1)",
        &[(&names, Type::TEXT_ARRAY)],
    )? {
        let name: String = row.get(0);
        roles.insert(
            name.clone(),
            RoleRow {
                name: name.clone(),
                superuser: row.get(1),
                createdb: row.get(2),
                createrole: row.get(3),
                replication: row.get(4),
                login: row.get(5),
                bypassrls: row.get(6),
                password: StoredPassword::Unknown,
                login_check: None,
            },
        );
        admin.access.insert(name, RoleAccess { usage: row.get(7), set: row.get(8), admin: false });
    }
    if login_dsn.is_none() {
        // Passwords are not part of this read.
    } else if admin.reads_authid {
        for row in cluster.query(
            "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1)",
            &[(&names, Type::TEXT_ARRAY)],
        )? {
            let name: String = row.get(0);
            let stored: Option<String> = row.get(1);
            if let Some(role) = roles.get_mut(&name) {
                role.password = StoredPassword::from_catalog(stored.as_deref());
            }
        }
    } else {
        for spec in model.roles() {
            if let Some(role) = roles.get_mut(&spec.name) {
                role.login_check = login_dsn.and_then(|dsn| login_works(dsn, &spec.name, &spec.password));
            }
        }
    }

    // PostgreSQL 16 split membership into INHERIT/SET/ADMIN options and
    // records one row per grantor.
    let membership_sql = "SELECT r.rolname::text, m.rolname::text, coalesce(g.rolname::text, ''), am.admin_option \
         FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member \
         LEFT JOIN pg_roles g ON g.oid = am.grantor \
         WHERE m.rolname = ANY($1) OR r.rolname = ANY($1) OR m.rolname = current_user";
    let mut memberships = Vec::new();
    for row in cluster.query(membership_sql, &[(&names, Type::TEXT_ARRAY)])? {
        let membership =
            Membership { role: row.get(0), member: row.get(1), grantor: row.get(2), admin_option: row.get(3) };
        if membership.member == admin.name {
            if let Some(access) = admin.access.get_mut(&membership.role) {
                access.admin |= membership.admin_option;
            }
        }
        if names.contains(&membership.member) || names.contains(&membership.role) {
            memberships.push(membership);
        }
    }
    if server_version >= 160000 {
        // Since 16, SET is its own option: MEMBER says nothing about it.
        for row in cluster.query(
            "SELECT rolname::text, pg_has_role(current_user, oid, 'SET') FROM pg_roles WHERE rolname = ANY($1)",
            &[(&names, Type::TEXT_ARRAY)],
        )? {
            let name: String = row.get(0);
            if let Some(access) = admin.access.get_mut(&name) {
                access.set = row.get(1);
            }
        }
    }
    if admin.superuser {
        for access in admin.access.values_mut() {
            *access = RoleAccess { usage: true, set: true, admin: true };
        }
    }

    let mut database = None;
    let mut other_databases = Vec::new();
    for row in cluster.query(
        "SELECT datname::text, pg_get_userbyid(datdba)::text, coalesce(datacl, acldefault('d', datdba))::text[] \
         FROM pg_database WHERE datname = $1 OR pg_get_userbyid(datdba) = ANY($2) ORDER BY datname",
        &[(&model.db_name, Type::TEXT), (&runtime, Type::TEXT_ARRAY)],
    )? {
        let db = Database { name: row.get(0), owner: row.get(1), acl: parse_acl(&row.get::<_, Vec<String>>(2))? };
        if db.name == model.db_name {
            database = Some(db);
        } else {
            other_databases.push(db);
        }
    }
    let mut tablespaces = Vec::new();
    for row in cluster.query(
        "SELECT spcname::text, pg_get_userbyid(spcowner)::text, coalesce(spcacl, acldefault('t', spcowner))::text[] \
         FROM pg_tablespace WHERE pg_get_userbyid(spcowner) = ANY($1) ORDER BY spcname",
        &[(&runtime, Type::TEXT_ARRAY)],
    )? {
        tablespaces.push(Tablespace {
            name: row.get(0),
            owner: row.get(1),
            acl: parse_acl(&row.get::<_, Vec<String>>(2))?,
        });
    }

    // Defaults that apply to the runtime roles in the app database: their
    // own (everywhere or in it) and the database's (for every role).
    let mut settings = Vec::new();
    for row in cluster.query(
        "SELECT r.rolname::text, d.datname::text, s.setconfig FROM pg_db_role_setting s \
         LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE (r.rolname = ANY($1) AND (s.setdatabase = 0 OR d.datname = $2)) OR (s.setrole = 0 AND d.datname = $2) \
         ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
        &[(&runtime, Type::TEXT_ARRAY), (&model.db_name, Type::TEXT)],
    )? {
        let (role, database): (Option<String>, Option<String>) = (row.get(0), row.get(1));
        for entry in row.get::<_, Vec<String>>(2) {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            settings.push(RoleSetting {
                role: role.clone(),
                database: database.clone(),
                name: name.to_string(),
                value: value.to_string(),
            });
        }
    }

    Ok(Snapshot {
        server_version,
        admin,
        roles,
        memberships,
        database,
        other_databases,
        tablespaces,
        settings,
        db: DbContents::default(),
        queries: cluster.sent,
    })
}

/// The database part: at most ten queries, whatever the number of objects
/// (the owner-change details only while some relation is not the migrator's).
pub fn read_db(db: &mut Client, model: &Model, server_version: i32) -> Result<DbContents> {
    let mut db = Queries::new(db);
    let managed = model.managed_schemas();
    let runtime = model.runtime_names();
    let migrator = &model.migrator.name;

    let mut schemas = Vec::new();
    for row in db.query(
        "SELECT nspname::text, pg_get_userbyid(nspowner)::text, coalesce(nspacl, acldefault('n', nspowner))::text[] \
         FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname",
        &[(&managed, Type::TEXT_ARRAY)],
    )? {
        schemas.push(Schema { name: row.get(0), owner: row.get(1), acl: parse_acl(&row.get::<_, Vec<String>>(2))? });
    }

    let mut relations = Vec::new();
    for row in db
        .query(
            "WITH policies AS (SELECT polrelid, count(*) AS n FROM pg_policy GROUP BY polrelid) \
             SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, pg_get_userbyid(c.relowner)::text, \
                coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))::text[], \
                coalesce(c.reloptions::text[], '{}'), c.relrowsecurity, c.relforcerowsecurity, coalesce(p.n, 0) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN policies p ON p.polrelid = c.oid \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
               AND c.oid NOT IN (SELECT e.objid FROM pg_extension x JOIN pg_depend e \
                                 ON e.refclassid = 'pg_extension'::regclass AND e.refobjid = x.oid \
                                 AND e.deptype = 'e' AND e.classid = 'pg_class'::regclass)",
            &[(&managed, Type::TEXT_ARRAY)],
        )
        .context("read the relations of the managed schemas")?
    {
        let kind: String = row.get(3);
        let options: Vec<String> = row.get(6);
        relations.push(Relation {
            oid: row.get(0),
            schema: row.get(1),
            name: row.get(2),
            kind: kind.chars().next().unwrap_or('?'),
            owner: row.get(4),
            acl: parse_acl(&row.get::<_, Vec<String>>(5))?,
            owned_by: None,
            lock_cost: 1,
            security_invoker: crate::reach::security_invoker(&options),
            rls_enabled: row.get(7),
            rls_forced: row.get(8),
            policies: row.get(9),
        });
    }

    relations.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));

    // What an owner change needs, for the relations not owned by the
    // migrator only (none once converged, when the query is not sent): the
    // table a serial or identity sequence belongs to, and how many locks the
    // change takes.
    let index: BTreeMap<i64, usize> = relations.iter().enumerate().map(|(i, r)| (r.oid, i)).collect();
    let moving = if relations.iter().any(|r| &r.owner != migrator) {
        db.query(
            "WITH moving AS (SELECT c.oid, c.relkind, c.reltoastrelid FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
                           AND c.relowner IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = $2)), \
              linked AS (SELECT d.objid, d.refobjid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), \
              linked_count AS (SELECT refobjid, count(*) AS n FROM linked GROUP BY refobjid), \
              indexes AS (SELECT indrelid, count(*) AS n FROM pg_index GROUP BY indrelid) \
         SELECT m.oid::int8, CASE WHEN m.relkind = 'S' THEN l.refobjid::int8 END, \
                (1 + coalesce(i.n, 0) + CASE WHEN m.reltoastrelid <> 0 THEN 2 ELSE 0 END + coalesce(lc.n, 0))::int4 \
         FROM moving m LEFT JOIN linked l ON l.objid = m.oid LEFT JOIN linked_count lc ON lc.refobjid = m.oid \
         LEFT JOIN indexes i ON i.indrelid = m.oid",
            &[(&managed, Type::TEXT_ARRAY), (migrator, Type::TEXT)],
        )?
    } else {
        Vec::new()
    };
    for row in moving {
        if let Some(rel) = index.get(&row.get::<_, i64>(0)).map(|i| &mut relations[*i]) {
            rel.owned_by = row.get(1);
            rel.lock_cost = row.get::<_, i32>(2).max(1) as u32;
        }
    }

    let mut columns = Vec::new();
    for row in db.query(
        "SELECT a.attrelid::int8, a.attname::text, a.attacl::text[] \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ANY($1) AND a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attrelid, a.attnum",
        &[(&managed, Type::TEXT_ARRAY)],
    )? {
        columns.push(ColumnAcl {
            table_oid: row.get(0),
            column: row.get(1),
            acl: parse_acl(&row.get::<_, Vec<String>>(2))?,
        });
    }

    // Every non-relation object of the managed schemas not owned by the
    // migrator, plus everything the runtime roles own anywhere in this
    // database (pg_shdepend; the bootstrap superuser's objects are not
    // recorded there, which is why the managed schemas are scanned too).
    let multirange_filter = if server_version >= 140000 {
        "AND NOT EXISTS (SELECT 1 FROM pg_range g WHERE g.rngmultitypid = t.oid)"
    } else {
        ""
    };
    let objects_sql = format!(
        "WITH managed AS (SELECT oid FROM pg_namespace WHERE nspname = ANY($1)), \
         candidates(classid, objid, owner) AS ( \
           SELECT 'pg_proc'::regclass, p.oid, p.proowner FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_type'::regclass, t.oid, t.typowner FROM pg_type t \
             WHERE t.typnamespace IN (SELECT oid FROM managed) \
               AND (t.typrelid = 0 OR EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.typrelid AND r.relkind = 'c')) \
               AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid) {multirange_filter} \
           UNION ALL SELECT 'pg_collation'::regclass, oid, collowner FROM pg_collation WHERE collnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_conversion'::regclass, oid, conowner FROM pg_conversion WHERE connamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_operator'::regclass, oid, oprowner FROM pg_operator WHERE oprnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_opclass'::regclass, oid, opcowner FROM pg_opclass WHERE opcnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_opfamily'::regclass, oid, opfowner FROM pg_opfamily WHERE opfnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_ts_config'::regclass, oid, cfgowner FROM pg_ts_config WHERE cfgnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_ts_dict'::regclass, oid, dictowner FROM pg_ts_dict WHERE dictnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT 'pg_statistic_ext'::regclass, oid, stxowner FROM pg_statistic_ext WHERE stxnamespace IN (SELECT oid FROM managed) \
           UNION ALL SELECT s.classid, s.objid, s.refobjid FROM pg_shdepend s \
             WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND s.deptype = 'o' AND s.refclassid = 'pg_authid'::regclass \
               AND s.refobjid IN (SELECT oid FROM pg_roles WHERE rolname = ANY($2)) \
               AND s.classid NOT IN ('pg_default_acl'::regclass, 'pg_class'::regclass, 'pg_user_mapping'::regclass) \
           UNION ALL SELECT 'pg_class'::regclass, r.oid, r.relowner FROM pg_class r \
             WHERE r.relowner IN (SELECT oid FROM pg_roles WHERE rolname = ANY($2)) \
               AND r.relnamespace NOT IN (SELECT oid FROM managed) AND r.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
         ) \
         SELECT DISTINCT c.classid::regclass::text, c.objid::int8, pg_get_userbyid(c.owner)::text, o.type, o.schema, o.identity, \
                CASE WHEN c.classid = 'pg_proc'::regclass THEN \
                       (SELECT coalesce(p.proacl, acldefault('f', p.proowner))::text[] FROM pg_proc p WHERE p.oid = c.objid) \
                     WHEN c.classid = 'pg_type'::regclass THEN \
                       (SELECT coalesce(t.typacl, acldefault('T', t.typowner))::text[] FROM pg_type t WHERE t.oid = c.objid) \
                     WHEN c.classid = 'pg_largeobject'::regclass THEN \
                       (SELECT coalesce(m.lomacl, acldefault('L', m.lomowner))::text[] FROM pg_largeobject_metadata m \
                        WHERE m.oid = c.objid) END, \
                coalesce((SELECT p.prosecdef FROM pg_proc p WHERE c.classid = 'pg_proc'::regclass AND p.oid = c.objid), false) \
         FROM candidates c CROSS JOIN LATERAL pg_identify_object(c.classid, c.objid, 0) o \
         WHERE pg_get_userbyid(c.owner) <> $3 \
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = c.classid AND e.objid = c.objid AND e.deptype = 'e') \
           AND (o.schema IS NULL OR (o.schema NOT LIKE 'pg\\_temp\\_%' AND o.schema NOT LIKE 'pg\\_toast\\_temp\\_%')) \
         ORDER BY 1, 2"
    );
    let mut objects = Vec::new();
    for row in db
        .query(&objects_sql, &[(&managed, Type::TEXT_ARRAY), (&runtime, Type::TEXT_ARRAY), (migrator, Type::TEXT)])
        .context("read object owners")?
    {
        let acl: Option<Vec<String>> = row.get(6);
        objects.push(OwnedObject {
            catalog: row.get(0),
            oid: row.get(1),
            owner: row.get(2),
            kind: row.get(3),
            schema: row.get(4),
            identity: row.get(5),
            acl: acl.map(|items| parse_acl(&items)).transpose()?,
            security_definer: row.get(7),
        });
    }

    // Every role's default privileges: the model's roles' own, and any
    // other role's that grant to the runtime roles (or to PUBLIC).
    let mut default_acls = Vec::new();
    for row in db.query(
        "SELECT pg_get_userbyid(d.defaclrole)::text, n.nspname::text, d.defaclobjtype::text, d.defaclacl::text[] \
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2, 3",
        &[],
    )? {
        let objtype: String = row.get(2);
        default_acls.push(DefaultAcl {
            role: row.get(0),
            schema: row.get(1),
            objtype: objtype.chars().next().unwrap_or('?'),
            acl: parse_acl(&row.get::<_, Vec<String>>(3))?,
        });
    }
    let foreign_keys = db
        .query(
            "SELECT k.conrelid::int8, k.confrelid::int8 FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f' AND n.nspname = ANY($1)",
            &[(&managed, Type::TEXT_ARRAY)],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let reach = crate::reach::read(&mut db, model)?;
    // Every other schema of the database but PostgreSQL's own: who owns it,
    // and who may create in it.
    let mut other_schemas = Vec::new();
    for row in db.query(
        "SELECT nspname::text, pg_get_userbyid(nspowner)::text, coalesce(nspacl, acldefault('n', nspowner))::text[] \
         FROM pg_namespace WHERE NOT (nspname = ANY($1)) AND nspname NOT LIKE 'pg\\_%' \
           AND nspname <> 'information_schema' ORDER BY nspname",
        &[(&managed, Type::TEXT_ARRAY)],
    )? {
        other_schemas.push(Schema {
            name: row.get(0),
            owner: row.get(1),
            acl: parse_acl(&row.get::<_, Vec<String>>(2))?,
        });
    }
    // Foreign-data wrappers and servers (USAGE lets a role create servers
    // and user mappings), and the user mappings of the runtime roles.
    let mut foreign = Vec::new();
    let mut user_mappings = Vec::new();
    for row in db
        .query(
            "SELECT 'FOREIGN DATA WRAPPER', fdwname::text, pg_get_userbyid(fdwowner)::text, \
                    coalesce(fdwacl, acldefault('F', fdwowner))::text[], NULL::text FROM pg_foreign_data_wrapper \
             UNION ALL SELECT 'SERVER', srvname::text, pg_get_userbyid(srvowner)::text, \
                    coalesce(srvacl, acldefault('S', srvowner))::text[], NULL FROM pg_foreign_server \
             UNION ALL SELECT 'USER MAPPING', srvname::text, NULL, NULL, usename::text FROM pg_user_mappings \
                    WHERE usename = ANY($1) OR umuser = 0 \
             ORDER BY 1, 2, 5",
            &[(&runtime, Type::TEXT_ARRAY)],
        )
        .context("read foreign-data wrappers, servers and user mappings")?
    {
        let keyword: String = row.get(0);
        let name: String = row.get(1);
        match keyword.as_str() {
            "USER MAPPING" => user_mappings.push((name, row.get(4))),
            _ => foreign.push(ForeignObject {
                keyword: if keyword == "SERVER" { "FOREIGN SERVER" } else { "FOREIGN DATA WRAPPER" },
                name,
                owner: row.get(2),
                acl: parse_acl(&row.get::<_, Vec<String>>(3))?,
            }),
        }
    }
    let mut extensions = Vec::new();
    if !model.extensions.is_empty() {
        for row in db
            .query(
                "SELECT n, x.extname IS NOT NULL, e.name IS NOT NULL, coalesce(v.trusted, false) \
                 FROM unnest($1::text[]) n LEFT JOIN pg_extension x ON x.extname = n \
                 LEFT JOIN pg_available_extensions e ON e.name = n \
                 LEFT JOIN pg_available_extension_versions v ON v.name = n AND v.version = e.default_version",
                &[(&model.extensions, Type::TEXT_ARRAY)],
            )
            .context("read the extensions of APP_DB_EXTENSIONS")?
        {
            extensions.push(ExtensionState {
                name: row.get(0),
                installed: row.get(1),
                available: row.get(2),
                trusted: row.get(3),
            });
        }
    }
    Ok(DbContents {
        schemas,
        relations,
        columns,
        objects,
        default_acls,
        foreign_keys,
        reach,
        other_schemas,
        foreign,
        user_mappings,
        extensions,
        queries: db.sent,
    })
}

/// Tries a SCRAM login as `role`: `Some(true)` when the password is
/// accepted (any error after authentication counts), `Some(false)` when it
/// is refused, `None` when the answer says nothing about the password.
fn login_works(dsn: &Dsn, role: &str, password: &Secret) -> Option<bool> {
    let mut login = dsn.clone();
    login.user = Some(role.to_string());
    login.password = Some(password.clone());
    match dbenv::connect_raw(&login, role).ok()? {
        Ok(_) => Some(true),
        Err(error) => match error.code() {
            Some(code) if *code == SqlState::INVALID_PASSWORD => Some(false),
            Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => None,
            Some(_) => Some(true),
            None => None,
        },
    }
}
