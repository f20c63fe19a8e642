//! Powers outside the app schemas, asked of the server as each runtime role
//! in one query: where it may create, which superuser-only functions and
//! system catalogs it may use beyond what `initdb` and extensions gave
//! PUBLIC (`pg_init_privs`), which server parameters it may set or write
//! with `ALTER SYSTEM` (PostgreSQL 15+), which foreign-data wrappers and
//! servers it may use, and what it owns in other databases. The server
//! answers for the role itself, so PUBLIC grants and memberships count.

use anyhow::Result;
use postgres::Client;

use crate::count::QueryCount;
use crate::report::{Probe, Verdict};

/// Each part of the query: a probe id, what it checks, and an SQL
/// expression giving a `text[]` of offending names (NULL or empty: none).
fn parts(server_version: dbenv::ServerVersion) -> Vec<(&'static str, &'static str, String)> {
    let mut parts = vec![
        (
            "create-anywhere",
            "no CREATE on any schema of the database",
            "(SELECT array_agg(nspname::text ORDER BY 1) FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE') \
               AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%')"
                .to_string(),
        ),
        (
            "create-databases",
            "no CREATE on any database of the cluster",
            "(SELECT array_agg(datname::text ORDER BY 1) FROM pg_database WHERE has_database_privilege(oid, 'CREATE'))"
                .to_string(),
        ),
        (
            "superuser-functions",
            "no EXECUTE on superuser-only functions (pg_read_file, lo_import, …)",
            "(SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_init_privs i \
               JOIN pg_proc p ON p.oid = i.objoid WHERE i.classoid = 'pg_proc'::regclass AND i.objsubid = 0 \
               AND NOT EXISTS (SELECT 1 FROM aclexplode(i.initprivs) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') \
               AND has_function_privilege(p.oid, 'EXECUTE'))"
                .to_string(),
        ),
        (
            "system-catalogs",
            "no access to system catalogs beyond PUBLIC's (pg_authid, …)",
            "(SELECT array_agg(DISTINCT c.oid::regclass::text || ' ' || x.privilege) FROM pg_init_privs i \
               JOIN pg_class c ON c.oid = i.objoid AND i.classoid = 'pg_class'::regclass AND i.objsubid = 0 \
               CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) x(privilege) \
               WHERE has_table_privilege(c.oid, x.privilege) AND NOT EXISTS (SELECT 1 FROM aclexplode(i.initprivs) a \
                     WHERE a.grantee = 0 AND a.privilege_type = x.privilege))"
                .to_string(),
        ),
        (
            "foreign-data",
            "no USAGE on foreign-data wrappers or servers",
            "(SELECT array_agg(what ORDER BY 1) FROM (\
               SELECT 'foreign-data wrapper ' || fdwname AS what FROM pg_foreign_data_wrapper \
                 WHERE has_foreign_data_wrapper_privilege(oid, 'USAGE') \
               UNION ALL SELECT 'server ' || srvname FROM pg_foreign_server WHERE has_server_privilege(oid, 'USAGE')) f)"
                .to_string(),
        ),
        (
            "owned-elsewhere",
            "owns nothing in other databases of the cluster",
            "(SELECT array_agg(coalesce(d.datname::text, 'the cluster') || ': ' || n || ' objects' ORDER BY 1) FROM (\
               SELECT s.dbid, count(*) AS n FROM pg_shdepend s WHERE s.deptype = 'o' \
                 AND s.refclassid = 'pg_authid'::regclass AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                 AND s.classid NOT IN ('pg_default_acl'::regclass, 'pg_user_mapping'::regclass) \
                 AND s.dbid <> (SELECT oid FROM pg_database WHERE datname = current_database()) \
               GROUP BY s.dbid) o LEFT JOIN pg_database d ON d.oid = o.dbid)"
                .to_string(),
        ),
    ];
    if server_version.has_parameter_privileges() {
        // SET matters only where a role could not set it anyway (superuser
        // and server-wide contexts); ALTER SYSTEM on any parameter writes
        // the server's configuration (archive_command runs shell commands).
        parts.push((
            "parameters",
            "no SET on superuser parameters, no ALTER SYSTEM (pg_parameter_acl)",
            "(SELECT array_agg(name || CASE WHEN has_parameter_privilege(name, 'ALTER SYSTEM') \
                 THEN ' (ALTER SYSTEM)' ELSE ' (SET)' END ORDER BY 1) FROM ( \
               SELECT name, context FROM pg_settings \
               UNION SELECT parname, NULL FROM pg_parameter_acl WHERE parname NOT IN (SELECT name FROM pg_settings)) s \
               WHERE has_parameter_privilege(name, 'ALTER SYSTEM') \
                  OR (coalesce(context, 'superuser') NOT IN ('user') AND has_parameter_privilege(name, 'SET')))"
                .to_string(),
        ));
    }
    parts
}

/// Runs the powers query as the role `client` is logged in as.
pub fn check(
    client: &mut Client,
    role: &str,
    server_version: dbenv::ServerVersion,
    queries: &QueryCount,
) -> Result<Vec<Probe>> {
    let parts = parts(server_version);
    let sql = format!("SELECT {}", parts.iter().map(|(_, _, expr)| expr.as_str()).collect::<Vec<_>>().join(", "));
    queries.add(1);
    let row = client.query_one(&sql, &[])?;
    let mut probes = Vec::new();
    for (i, (id, capability, _)) in parts.iter().enumerate() {
        let found: Vec<String> = row.get::<_, Option<Vec<String>>>(i).unwrap_or_default();
        let (observed, verdict) = if found.is_empty() {
            ("none".to_string(), Verdict::Pass)
        } else {
            let shown: Vec<&str> = found.iter().take(6).map(String::as_str).collect();
            let more = if found.len() > 6 { format!(" and {} more", found.len() - 6) } else { String::new() };
            (format!("HELD: {}{more}", shown.join(", ")), Verdict::Fail)
        };
        probes.push(Probe {
            role: role.to_string(),
            id,
            capability: capability.to_string(),
            sql: "has_*_privilege(…) as the role".to_string(),
            expected: "none held".to_string(),
            observed,
            verdict,
        });
    }
    Ok(probes)
}
