//! The cluster-wide part of a snapshot: the admin, the model's roles and
//! their memberships, the app database and what the runtime roles own
//! elsewhere, and the role and database defaults. One query each.

use super::*;

/// The cluster-wide part (roles, memberships, databases, tablespaces), with
/// an empty database part. With `login_dsn`, stored passwords are read (or,
/// where `pg_authid` is unreadable, tried by logging in); without, they stay
/// [`StoredPassword::Unknown`].
pub(super) fn read(
    cluster: &mut Client,
    model: &Model,
    login_dsn: Option<&Dsn>,
    can_silence_log: bool,
) -> Result<Snapshot> {
    let mut cluster = Queries::new(cluster);
    let (server_version, mut admin) = read_admin(&mut cluster, can_silence_log)?;
    let mut roles = read_roles(&mut cluster, model, &mut admin)?;
    if let Some(dsn) = login_dsn {
        read_passwords(&mut cluster, model, &admin, dsn, &mut roles)?;
    }
    let memberships = read_memberships(&mut cluster, model, server_version, &mut admin)?;
    let (database, other_databases) = read_databases(&mut cluster, model)?;
    let tablespaces = read_tablespaces(&mut cluster, model)?;
    let settings = read_settings(&mut cluster, model)?;
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

fn read_admin(cluster: &mut Queries<'_>, can_silence_log: bool) -> Result<(dbenv::ServerVersion, Admin)> {
    let row = cluster
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_user::text, r.rolsuper, r.rolcreaterole, \
                    r.rolcreatedb, r.rolbypassrls, has_table_privilege('pg_catalog.pg_authid', 'SELECT'), \
                    current_setting('log_statement') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .context("read the admin role")?;
    let admin = Admin {
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
    Ok((dbenv::ServerVersion::from_num(row.get(0)), admin))
}

/// The model's roles that exist, and what the admin may do with each.
fn read_roles(cluster: &mut Queries<'_>, model: &Model, admin: &mut Admin) -> Result<BTreeMap<String, RoleRow>> {
    let names = model.role_names();
    let logins: Vec<String> = model.roles().iter().map(|spec| spec.login.clone()).collect();
    let mut roles = BTreeMap::new();
    for row in cluster.query(
        "SELECT r.rolname::text, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolcanlogin, \
                r.rolbypassrls, pg_has_role(current_user, r.oid, 'USAGE'), pg_has_role(current_user, r.oid, 'MEMBER'), \
                coalesce(shobj_description(r.oid, 'pg_authid') = $2, false), \
                EXISTS (SELECT 1 FROM pg_roles l WHERE l.rolname = n.login) \
         FROM unnest($1::text[], $3::text[]) AS n(name, login) JOIN pg_roles r ON r.rolname = n.name",
        &[(&names, Type::TEXT_ARRAY), (&super::ROLE_MARKER, Type::TEXT), (&logins, Type::TEXT_ARRAY)],
    )? {
        let name: String = row.get(0);
        let role = RoleRow {
            name: name.clone(),
            superuser: row.get(1),
            createdb: row.get(2),
            createrole: row.get(3),
            replication: row.get(4),
            login: row.get(5),
            bypassrls: row.get(6),
            password: StoredPassword::Unknown,
            login_check: None,
            made_here: row.get(9),
            login_exists: row.get(10),
        };
        roles.insert(name.clone(), role);
        let access = if admin.superuser {
            RoleAccess { usage: true, set: true, admin: true }
        } else {
            RoleAccess { usage: row.get(7), set: row.get(8), admin: false }
        };
        admin.access.insert(name, access);
    }
    Ok(roles)
}

/// The stored verifiers, or where `pg_authid` is unreadable whether each
/// model password logs in.
fn read_passwords(
    cluster: &mut Queries<'_>,
    model: &Model,
    admin: &Admin,
    login_dsn: &Dsn,
    roles: &mut BTreeMap<String, RoleRow>,
) -> Result<()> {
    // The password is the login's: the role's own, or its alternate login's.
    if !admin.reads_authid {
        for spec in model.roles() {
            if let Some(role) = roles.get_mut(&spec.name) {
                role.login_check = login_works(login_dsn, &spec.login, &spec.password);
            }
        }
        return Ok(());
    }
    let logins: Vec<String> = model.roles().iter().map(|spec| spec.login.clone()).collect();
    for row in cluster.query(
        "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1)",
        &[(&logins, Type::TEXT_ARRAY)],
    )? {
        let login: String = row.get(0);
        let stored: Option<String> = row.get(1);
        for spec in model.roles().into_iter().filter(|spec| spec.login == login) {
            if let Some(role) = roles.get_mut(&spec.name) {
                role.password = StoredPassword::from_catalog(stored.as_deref());
            }
        }
    }
    Ok(())
}

/// Memberships of and in the model's roles, and the admin's ADMIN and SET
/// options on them. PostgreSQL 16 split membership into INHERIT/SET/ADMIN
/// options and records one row per grantor.
fn read_memberships(
    cluster: &mut Queries<'_>,
    model: &Model,
    server_version: dbenv::ServerVersion,
    admin: &mut Admin,
) -> Result<Vec<Membership>> {
    let names = model.role_names();
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
    if server_version.has_membership_options() && !admin.superuser {
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
    Ok(memberships)
}

/// The app database, and the other databases the runtime roles own
/// (`REASSIGN OWNED` would take them).
fn read_databases(cluster: &mut Queries<'_>, model: &Model) -> Result<(Option<Database>, Vec<Database>)> {
    let mut database = None;
    let mut others = Vec::new();
    for row in cluster.query(
        "SELECT datname::text, pg_get_userbyid(datdba)::text, coalesce(datacl, acldefault('d', datdba))::text[] \
         FROM pg_database WHERE datname = $1 OR pg_get_userbyid(datdba) = ANY($2) ORDER BY datname",
        &[(&model.db_name, Type::TEXT), (&model.runtime_names(), Type::TEXT_ARRAY)],
    )? {
        let db = Database { name: row.get(0), owner: row.get(1), acl: acl_column(&row, 2)? };
        if db.name == model.db_name {
            database = Some(db);
        } else {
            others.push(db);
        }
    }
    Ok((database, others))
}

fn read_tablespaces(cluster: &mut Queries<'_>, model: &Model) -> Result<Vec<Tablespace>> {
    let rows = cluster.query(
        "SELECT spcname::text, pg_get_userbyid(spcowner)::text, coalesce(spcacl, acldefault('t', spcowner))::text[] \
         FROM pg_tablespace WHERE pg_get_userbyid(spcowner) = ANY($1) ORDER BY spcname",
        &[(&model.runtime_names(), Type::TEXT_ARRAY)],
    )?;
    rows.iter().map(|row| Ok(Tablespace { name: row.get(0), owner: row.get(1), acl: acl_column(row, 2)? })).collect()
}

/// Defaults that apply to the runtime roles in the app database: their
/// own (everywhere or in it), the database's (for every role) and
/// `ALTER ROLE ALL`'s (every role everywhere).
fn read_settings(cluster: &mut Queries<'_>, model: &Model) -> Result<Vec<RoleSetting>> {
    let mut settings = Vec::new();
    for row in cluster.query(
        "SELECT r.rolname::text, d.datname::text, s.setconfig FROM pg_db_role_setting s \
         LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE (r.rolname = ANY($1) AND (s.setdatabase = 0 OR d.datname = $2)) OR (s.setrole = 0 AND d.datname = $2) \
            OR (s.setrole = 0 AND s.setdatabase = 0) \
         ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
        &[(&model.runtime_names(), Type::TEXT_ARRAY), (&model.db_name, Type::TEXT)],
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
    Ok(settings)
}

/// Tries a SCRAM login as `role`: `Some(true)` when the password is
/// accepted (any error after authentication counts), `Some(false)` when it
/// is refused, `None` when the answer says nothing about the password.
fn login_works(dsn: &Dsn, role: &str, password: &Secret) -> Option<bool> {
    match dbenv::connect_raw(&dsn.with_login(role, password), role).ok()? {
        Ok(_) => Some(true),
        Err(error) => match error.code() {
            Some(code) if *code == SqlState::INVALID_PASSWORD => Some(false),
            Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => None,
            Some(_) => Some(true),
            None => None,
        },
    }
}
