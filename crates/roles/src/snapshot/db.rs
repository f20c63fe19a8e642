//! The database part of a snapshot: a fixed number of set-based queries,
//! one per kind of object, whatever the number of objects.

use super::*;

/// The database part. `purpose` says what may be left out: the plan needs
/// neither the foreign keys (tenancy) nor, while nothing changes owner, the
/// owner's-rights paths.
pub(super) fn read(
    db: &mut Client,
    model: &Model,
    server_version: dbenv::ServerVersion,
    purpose: Purpose,
) -> Result<DbContents> {
    let mut db = Queries::new(db);
    let managed = model.managed_schemas();
    let schemas = read_schemas(&mut db, "nspname = ANY($1)", &managed)?;
    let mut relations = read_relations(&mut db, &managed)?;
    if relations.iter().any(|r| r.owner != model.migrator.name) {
        read_moving(&mut db, model, &mut relations)?;
    }
    let columns = read_columns(&mut db, &managed)?;
    let objects = read_objects(&mut db, model, server_version)?;
    let default_acls = read_default_acls(&mut db)?;
    let foreign_keys = match purpose {
        Purpose::Audit => read_foreign_keys(&mut db, &managed)?,
        Purpose::Provision { .. } => Vec::new(),
    };
    let moves = !objects.is_empty() || relations.iter().any(|r| r.owner != model.migrator.name);
    let reach = match purpose {
        Purpose::Provision { .. } if !moves => super::reach::Reach::default(),
        _ => super::reach::read(&mut db, model)?,
    };
    // Every other schema of the database but PostgreSQL's own: who owns it,
    // and who may create in it.
    let other_schemas = read_schemas(
        &mut db,
        "NOT (nspname = ANY($1)) AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
        &managed,
    )?;
    let (foreign, user_mappings, foreign_tables) = read_foreign(&mut db, model)?;
    let extensions = read_extensions(&mut db, model)?;
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
        foreign_tables,
        extensions,
        queries: db.sent,
    })
}

fn read_schemas(db: &mut Queries<'_>, filter: &str, managed: &[String]) -> Result<Vec<Schema>> {
    let rows = db.query(
        &format!(
            "SELECT nspname::text, pg_get_userbyid(nspowner)::text, \
                    coalesce(nspacl, acldefault('n', nspowner))::text[] \
             FROM pg_namespace WHERE {filter} ORDER BY nspname"
        ),
        &[(&managed, Type::TEXT_ARRAY)],
    )?;
    rows.iter().map(|row| Ok(Schema { name: row.get(0), owner: row.get(1), acl: acl_column(row, 2)? })).collect()
}

/// The relations of the managed schemas, with their RLS state; objects of
/// extensions left out.
fn read_relations(db: &mut Queries<'_>, managed: &[String]) -> Result<Vec<Relation>> {
    let rows = db
        .query(
            "WITH RECURSIVE policies AS (SELECT polrelid, count(*) AS n FROM pg_policy GROUP BY polrelid), \
                  up(rel, parent) AS (SELECT inhrelid, inhparent FROM pg_inherits \
                                      UNION SELECT up.rel, i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.parent), \
                  lineage AS (SELECT up.rel, array_agg(pn.nspname || '.' || pc.relname) AS names FROM up \
                              JOIN pg_class pc ON pc.oid = up.parent JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
                              GROUP BY up.rel) \
             SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, pg_get_userbyid(c.relowner)::text, \
                coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))::text[], \
                coalesce(c.reloptions::text[], '{}'), c.relrowsecurity, c.relforcerowsecurity, coalesce(p.n, 0), \
                coalesce(l.names, '{}')::text[] \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN policies p ON p.polrelid = c.oid LEFT JOIN lineage l ON l.rel = c.oid \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
               AND c.oid NOT IN (SELECT e.objid FROM pg_extension x JOIN pg_depend e \
                                 ON e.refclassid = 'pg_extension'::regclass AND e.refobjid = x.oid \
                                 AND e.deptype = 'e' AND e.classid = 'pg_class'::regclass)",
            &[(&managed, Type::TEXT_ARRAY)],
        )
        .context("read the relations of the managed schemas")?;
    let mut relations = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.get(3);
        let options: Vec<String> = row.get(6);
        relations.push(Relation {
            oid: row.get(0),
            schema: row.get(1),
            name: row.get(2),
            kind: RelKind::from_code(kind.chars().next().unwrap_or('?')),
            owner: row.get(4),
            acl: acl_column(&row, 5)?,
            owned_by: None,
            lock_cost: 1,
            security_invoker: super::reach::security_invoker(&options),
            rls_enabled: row.get(7),
            rls_forced: row.get(8),
            policies: row.get(9),
            ancestors: row.get(10),
        });
    }
    relations.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(relations)
}

/// What an owner change needs, for the relations not owned by the migrator
/// only (none once converged, when the query is not sent): the table a
/// serial or identity sequence belongs to, and how many locks the change takes.
fn read_moving(db: &mut Queries<'_>, model: &Model, relations: &mut [Relation]) -> Result<()> {
    let index: BTreeMap<i64, usize> = relations.iter().enumerate().map(|(i, r)| (r.oid, i)).collect();
    let rows = db.query(
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
        &[(&model.managed_schemas(), Type::TEXT_ARRAY), (&model.migrator.name, Type::TEXT)],
    )?;
    for row in rows {
        if let Some(rel) = index.get(&row.get::<_, i64>(0)).map(|i| &mut relations[*i]) {
            rel.owned_by = row.get(1);
            rel.lock_cost = row.get::<_, i32>(2).max(1) as u32;
        }
    }
    Ok(())
}

fn read_columns(db: &mut Queries<'_>, managed: &[String]) -> Result<Vec<ColumnAcl>> {
    let rows = db.query(
        "SELECT a.attrelid::int8, a.attname::text, a.attacl::text[] \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ANY($1) AND a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attrelid, a.attnum",
        &[(&managed, Type::TEXT_ARRAY)],
    )?;
    rows.iter()
        .map(|row| Ok(ColumnAcl { table_oid: row.get(0), column: row.get(1), acl: acl_column(row, 2)? }))
        .collect()
}

/// Every non-relation object of the managed schemas not owned by the
/// migrator, plus everything the runtime roles own anywhere in this
/// database (pg_shdepend; the bootstrap superuser's objects are not
/// recorded there, which is why the managed schemas are scanned too). Their
/// relations outside the managed schemas come from pg_shdepend as well
/// (every relation but a TOAST table records its owner there): an index
/// lookup, where scanning pg_class costs a third of the query on a
/// database of 10,000 tables.
fn objects_sql(server_version: dbenv::ServerVersion) -> String {
    let multirange_filter = if server_version.has_multiranges() {
        "AND NOT EXISTS (SELECT 1 FROM pg_range g WHERE g.rngmultitypid = t.oid)"
    } else {
        ""
    };
    format!(
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
               AND s.classid NOT IN ('pg_default_acl'::regclass, 'pg_user_mapping'::regclass) \
               AND (s.classid <> 'pg_class'::regclass OR EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = s.objid \
                    AND r.relnamespace NOT IN (SELECT oid FROM managed) AND r.relkind IN ('r', 'p', 'v', 'm', 'f', 'S'))) \
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
    )
}

fn read_objects(db: &mut Queries<'_>, model: &Model, server_version: dbenv::ServerVersion) -> Result<Vec<OwnedObject>> {
    let params: [Param<'_>; 3] = [
        (&model.managed_schemas(), Type::TEXT_ARRAY),
        (&model.runtime_names(), Type::TEXT_ARRAY),
        (&model.migrator.name, Type::TEXT),
    ];
    let rows = db.query(&objects_sql(server_version), &params).context("read object owners")?;
    let mut objects = Vec::with_capacity(rows.len());
    for row in rows {
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
    Ok(objects)
}

/// Every role's default privileges: the model's roles' own, and any other
/// role's that grant to the runtime roles (or to PUBLIC).
fn read_default_acls(db: &mut Queries<'_>) -> Result<Vec<DefaultAcl>> {
    // acldefault spells a sequence `s` where pg_default_acl says `S`.
    let rows = db.query(
        "SELECT pg_get_userbyid(d.defaclrole)::text, n.nspname::text, d.defaclobjtype::text, d.defaclacl::text[], \
                CASE WHEN d.defaclnamespace = 0 THEN acldefault(CASE d.defaclobjtype WHEN 'S' THEN 's' \
                     ELSE d.defaclobjtype END, d.defaclrole)::text[] ELSE '{}' END \
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2, 3",
        &[],
    )?;
    rows.iter()
        .map(|row| {
            let objtype: String = row.get(2);
            Ok(DefaultAcl {
                role: row.get(0),
                schema: row.get(1),
                objtype: DefaultObjects::from_code(objtype.chars().next().unwrap_or('?')),
                acl: acl_column(row, 3)?,
                builtin: acl_column(row, 4)?,
            })
        })
        .collect()
}

fn read_foreign_keys(db: &mut Queries<'_>, managed: &[String]) -> Result<Vec<(i64, i64)>> {
    let rows = db.query(
        "SELECT k.conrelid::int8, k.confrelid::int8 FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' AND n.nspname = ANY($1)",
        &[(&managed, Type::TEXT_ARRAY)],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Foreign-data wrappers and servers (USAGE lets a role create servers and
/// user mappings), and the user mappings of the runtime roles.
/// User mappings as `(server, user)`.
type UserMappings = Vec<(String, String)>;
/// Foreign tables as `(oid, server)`.
type ForeignTables = Vec<(i64, String)>;

fn read_foreign(db: &mut Queries<'_>, model: &Model) -> Result<(Vec<ForeignObject>, UserMappings, ForeignTables)> {
    let rows = db
        .query(
            "SELECT 'FOREIGN DATA WRAPPER', fdwname::text, pg_get_userbyid(fdwowner)::text, \
                    coalesce(fdwacl, acldefault('F', fdwowner))::text[], NULL::text FROM pg_foreign_data_wrapper \
             UNION ALL SELECT 'SERVER', srvname::text, pg_get_userbyid(srvowner)::text, \
                    coalesce(srvacl, acldefault('S', srvowner))::text[], NULL FROM pg_foreign_server \
             UNION ALL SELECT 'USER MAPPING', srvname::text, NULL, NULL, usename::text FROM pg_user_mappings \
                    WHERE usename = ANY($1) OR umuser = 0 \
             UNION ALL SELECT 'FOREIGN TABLE', s.srvname::text, NULL, NULL, ft.ftrelid::int8::text \
                    FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver \
             ORDER BY 1, 2, 5",
            &[(&model.runtime_names(), Type::TEXT_ARRAY)],
        )
        .context("read foreign-data wrappers, servers and user mappings")?;
    let mut foreign = Vec::new();
    let mut user_mappings = Vec::new();
    let mut foreign_tables = Vec::new();
    for row in rows {
        let keyword: String = row.get(0);
        let name: String = row.get(1);
        match keyword.as_str() {
            "USER MAPPING" => user_mappings.push((name, row.get(4))),
            "FOREIGN TABLE" => {
                let oid: String = row.get(4);
                foreign_tables.push((oid.parse().context("a foreign table's oid")?, name));
            }
            _ => foreign.push(ForeignObject {
                keyword: if keyword == "SERVER" { "FOREIGN SERVER" } else { "FOREIGN DATA WRAPPER" },
                name,
                owner: row.get(2),
                acl: acl_column(&row, 3)?,
            }),
        }
    }
    Ok((foreign, user_mappings, foreign_tables))
}

/// The extensions of `APP_DB_EXTENSIONS` (no query when it names none).
fn read_extensions(db: &mut Queries<'_>, model: &Model) -> Result<Vec<ExtensionState>> {
    if model.extensions.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            "SELECT n, x.extname IS NOT NULL, e.name IS NOT NULL, coalesce(v.trusted, false) \
             FROM unnest($1::text[]) n LEFT JOIN pg_extension x ON x.extname = n \
             LEFT JOIN pg_available_extensions e ON e.name = n \
             LEFT JOIN pg_available_extension_versions v ON v.name = n AND v.version = e.default_version",
            &[(&model.extensions, Type::TEXT_ARRAY)],
        )
        .context("read the extensions of APP_DB_EXTENSIONS")?;
    Ok(rows
        .iter()
        .map(|row| ExtensionState {
            name: row.get(0),
            installed: row.get(1),
            available: row.get(2),
            trusted: row.get(3),
        })
        .collect())
}
