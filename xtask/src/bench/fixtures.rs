//! The databases and folders the bench measures on, built with raw SQL as
//! fast as the server allows: a folder of generated migrations, 10,000 more
//! RLS tables in the app database, and a legacy database of 10,000 tables
//! owned by the runtime role, kept as a template and copied per run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use dbenv::RoleKind;

use super::Lab;

/// `meta/_journal.json` for `tags`, in order, one millisecond apart.
fn write_journal(dir: &Path, tags: &[String]) -> Result<()> {
    let entries: Vec<String> = tags
        .iter()
        .enumerate()
        .map(|(n, tag)| {
            format!(
                "{{\"idx\":{n},\"version\":\"7\",\"when\":{},\"tag\":\"{tag}\",\"breakpoints\":true}}",
                1_700_000_000_000u64 + n as u64
            )
        })
        .collect();
    std::fs::write(
        dir.join("meta/_journal.json"),
        format!("{{\"version\":\"7\",\"dialect\":\"postgresql\",\"entries\":[{}]}}", entries.join(",")),
    )?;
    Ok(())
}

/// A folder of `count` migrations, a table and an index each, and the same
/// SQL as one file for psql.
pub fn generated_folder(dir: &Path, count: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("meta"))?;
    let mut entries = Vec::new();
    let mut all = String::new();
    for n in 0..count {
        let tag = format!("{n:04}_t{n}");
        let sql = format!(
            "CREATE TABLE \"t{n}\" (\"id\" serial PRIMARY KEY, \"owner\" uuid, \"note\" text);\n--> statement-breakpoint\n\
             CREATE INDEX \"t{n}_owner_idx\" ON \"t{n}\" (\"owner\");"
        );
        all.push_str(&sql.replace("--> statement-breakpoint", ""));
        all.push('\n');
        std::fs::write(dir.join(format!("{tag}.sql")), sql)?;
        entries.push(tag);
    }
    write_journal(dir, &entries)?;
    let file = dir.join("all.sql");
    std::fs::write(&file, all)?;
    Ok(file)
}

/// A folder of `count` migrations shaped like a large project's history: a
/// third of them create tables (a table and an index each) in drizzle's
/// batch transaction, then one writes `COMMIT;` to build an index
/// concurrently, then the rest change those tables as projects do later
/// (a column added, an index, a backfill), and every twentieth adds an enum
/// value that the next one uses as a column default. drizzle-kit applies
/// it (the session is outside a transaction after the `COMMIT`), and so
/// does the runner.
pub fn mixed_folder(dir: &Path, count: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("meta"))?;
    let mut entries = Vec::new();
    let boundary = count / 3;
    for n in 0..count {
        let tag = format!("{n:04}_m{n}");
        let table = |n: usize| {
            format!(
                "CREATE TABLE \"m{n}\" (\"id\" serial PRIMARY KEY, \"owner\" uuid, \"note\" text);\n\
                 --> statement-breakpoint\nCREATE INDEX \"m{n}_owner_idx\" ON \"m{n}\" (\"owner\");"
            )
        };
        let target = n % boundary.max(1);
        let sql = match n {
            0 => format!("CREATE TYPE \"public\".\"state\" AS ENUM('s0');--> statement-breakpoint\n{}", table(0)),
            _ if n < boundary => table(n),
            _ if n == boundary => "COMMIT;--> statement-breakpoint\nSET lock_timeout = 0;--> statement-breakpoint\n\
                 CREATE INDEX CONCURRENTLY IF NOT EXISTS \"m0_note_idx\" ON \"m0\" (\"note\");"
                .to_string(),
            _ if n % 20 == 0 => format!("ALTER TYPE \"public\".\"state\" ADD VALUE 's{n}';"),
            _ if n % 20 == 1 && n > boundary + 1 => {
                format!("ALTER TABLE \"m0\" ADD COLUMN \"c{n}\" \"state\" DEFAULT 's{}' NOT NULL;", n - 1)
            }
            _ if n % 3 == 0 => format!("CREATE INDEX \"m{target}_note_idx\" ON \"m{target}\" (\"note\");"),
            _ if n % 3 == 1 => format!(
                "ALTER TABLE \"m{target}\" ADD COLUMN \"x{n}\" text;--> statement-breakpoint\n\
                 UPDATE \"m{target}\" SET \"x{n}\" = \"note\" WHERE \"note\" IS NOT NULL;"
            ),
            _ => format!("ALTER TABLE \"m{target}\" ADD COLUMN \"y{n}\" integer DEFAULT 0 NOT NULL;"),
        };
        std::fs::write(dir.join(format!("{tag}.sql")), sql)?;
        entries.push(tag);
    }
    write_journal(dir, &entries)?;
    Ok(())
}

/// Runs `statement(i)` for i in 0..10,000 as `role` in database `db`, 500 to
/// a transaction.
fn ten_thousand_statements(lab: &Lab, db: &str, role: RoleKind, statement: impl Fn(usize) -> String) -> Result<()> {
    let mut client = lab.connect(db, role)?;
    for batch in 0..20 {
        let mut ddl = String::from("BEGIN;");
        for i in batch * 500..(batch + 1) * 500 {
            ddl.push_str(&statement(i));
        }
        ddl.push_str("COMMIT;");
        client.batch_execute(&ddl)?;
    }
    Ok(())
}

/// 10,000 more RLS tables in `db` (already provisioned and migrated), each
/// with a foreign key to the users, created by the migrator.
pub fn ten_thousand_rls_tables(lab: &Lab, db: &str) -> Result<()> {
    ten_thousand_statements(lab, db, RoleKind::Migrator, |i| {
        format!(
            "CREATE TABLE extra_{i} (id serial PRIMARY KEY, owner_user_id uuid REFERENCES users(id)); \
             ALTER TABLE extra_{i} ENABLE ROW LEVEL SECURITY;"
        )
    })
}

/// `legacy_template`: the single-role layout, 10,000 tables owned by the
/// runtime role in a database and schema it owns.
pub fn legacy_template(lab: &Lab) -> Result<()> {
    let runtime = dbenv::quote_ident(&lab.role(RoleKind::Runtime).0);
    lab.admin("postgres")?.batch_execute(&format!("CREATE DATABASE legacy_template OWNER {runtime}"))?;
    lab.admin("legacy_template")?.batch_execute(&format!("ALTER SCHEMA public OWNER TO {runtime}"))?;
    ten_thousand_statements(lab, "legacy_template", RoleKind::Runtime, |i| {
        format!("CREATE TABLE t{i} (id serial PRIMARY KEY, note text);")
    })?;
    lab.admin("postgres")?.batch_execute("ALTER DATABASE legacy_template WITH IS_TEMPLATE true")?;
    Ok(())
}

/// A copy of the legacy template, flushed to disk before anything is
/// timed: the copy's own writes would otherwise land in the measurement.
pub fn legacy_copy(lab: &Lab, name: &str) -> Result<()> {
    let runtime = dbenv::quote_ident(&lab.role(RoleKind::Runtime).0);
    let mut admin = lab.admin("postgres")?;
    admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE legacy_template OWNER {runtime}"))?;
    admin.batch_execute("CHECKPOINT")?;
    let _ = Command::new("sync").status();
    Ok(())
}

/// `REASSIGN OWNED` in one transaction on a copy: what it says (on this
/// many tables the lock table overflows).
pub fn reassign_owned_note(lab: &Lab) -> Result<String> {
    legacy_copy(lab, "legacy_reassign")?;
    let (runtime, migrator) = (lab.role(RoleKind::Runtime).0, lab.role(RoleKind::Migrator).0);
    let statement = format!("REASSIGN OWNED BY {} TO {}", dbenv::quote_ident(&runtime), dbenv::quote_ident(&migrator));
    Ok(match lab.admin("legacy_reassign")?.batch_execute(&statement) {
        Ok(()) => "REASSIGN OWNED succeeded here".to_string(),
        Err(error) => format!(
            "REASSIGN OWNED fails: {}",
            error.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| error.to_string())
        ),
    })
}

/// The anchor of the conversion: a server-side `ALTER TABLE … OWNER` loop
/// on a fresh copy, committing every 1,000 tables.
pub fn owner_loop(lab: &Lab, db: &str) -> Result<Duration> {
    legacy_copy(lab, db)?;
    let (runtime, migrator) = (lab.role(RoleKind::Runtime).0, lab.role(RoleKind::Migrator).0);
    let mut client = lab.admin(db)?;
    client.batch_execute(&format!(
        "CREATE PROCEDURE reassign_in_batches() LANGUAGE plpgsql AS $$ \
         DECLARE r record; n int := 0; BEGIN \
           FOR r IN SELECT c.oid::regclass AS t FROM pg_class c WHERE c.relowner = {}::regrole \
                    AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace LOOP \
             EXECUTE format('ALTER TABLE %s OWNER TO %I', r.t, {}); n := n + 1; \
             IF n % 1000 = 0 THEN COMMIT; END IF; \
           END LOOP; END $$;",
        dbenv::quote_literal(&dbenv::quote_ident(&runtime)),
        dbenv::quote_literal(&migrator)
    ))?;
    let started = Instant::now();
    client.batch_execute("CALL reassign_in_batches()")?;
    Ok(started.elapsed())
}

/// A digest of the row versions (xmin, ctid) of the catalogs provisioning
/// writes: a converged run leaves them all as they were (autovacuum updates
/// statistics in place and does not count).
pub fn catalog_fingerprint(lab: &Lab, db: &str) -> Result<String> {
    Ok(lab
        .admin(db)?
        .query_one(
            "SELECT md5(string_agg(v, ',' ORDER BY v)) FROM ( \
               SELECT 'c' || oid || xmin || ctid AS v FROM pg_class UNION ALL \
               SELECT 'n' || oid || xmin || ctid FROM pg_namespace UNION ALL \
               SELECT 'd' || oid || xmin || ctid FROM pg_default_acl UNION ALL \
               SELECT 'a' || oid || xmin || ctid FROM pg_authid UNION ALL \
               SELECT 'b' || oid || xmin || ctid FROM pg_database UNION ALL \
               SELECT 'm' || roleid || member || xmin || ctid FROM pg_auth_members) rows",
            &[],
        )?
        .get(0))
}
