//! Shared by the runner tests: a provisioned throwaway cluster, migration
//! folders written on the fly, and the real drizzle-kit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dbenv::{keys, Dsn, EnvVars, Settings};
use postgres::Client;
use testkit::Cluster;
pub use testkit::{app_migrations, repo_root, sqlstate};

pub struct Fixture {
    pub kit: Cluster,
}

impl Fixture {
    /// A cluster with no databases of the app's yet.
    pub fn bare() -> Fixture {
        Fixture { kit: Cluster::start() }
    }

    /// A cluster with `db` provisioned by `db-provision`.
    pub fn provisioned(db: &str) -> Fixture {
        let fixture = Fixture::bare();
        fixture.provision(db);
        fixture
    }

    pub fn provision(&self, db: &str) {
        roles::provision(&self.settings(db), &roles::Options::default(), &mut roles::Quiet).unwrap();
    }

    /// `db` provisioned with extra variables (`APP_DB_SCHEMAS`, `APP_DB_EXTENSIONS`).
    pub fn provision_with(&self, db: &str, extra: &[(&str, &str)]) {
        let settings = self.env_with(db, extra).provisioning().unwrap();
        roles::provision(&settings, &roles::Options::default(), &mut roles::Quiet).unwrap();
    }

    pub fn env_with(&self, db: &str, extra: &[(&str, &str)]) -> EnvVars {
        self.kit.env_with(db, extra)
    }

    pub fn config_with(&self, db: &str, extra: &[(&str, &str)]) -> drizzle::Config {
        drizzle::Config::new(self.env_with(db, extra).migration().unwrap())
    }

    /// The structure of the app's schemas, as text lines, to compare two
    /// databases: schemas, columns, constraints, indexes (and whether they
    /// are valid), enum labels, policies, RLS flags, extensions.
    pub fn schema_fingerprint(&self, db: &str) -> Vec<String> {
        self.admin(db)
            .query(
                "WITH app AS (SELECT oid, nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                              AND nspname NOT IN ('information_schema', 'drizzle')) \
                 SELECT 'schema ' || nspname FROM app \
                 UNION ALL SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || \
                        format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || \
                        coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
                   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN app n ON n.oid = c.relnamespace \
                   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                   WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm') \
                 UNION ALL SELECT 'constraint ' || n.nspname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid) \
                   FROM pg_constraint k JOIN app n ON n.oid = k.connamespace \
                 UNION ALL SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN app n ON n.oid = c.relnamespace \
                 UNION ALL SELECT 'enum ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) \
                   FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN app n ON n.oid = t.typnamespace GROUP BY t.typname \
                 UNION ALL SELECT 'policy ' || p.polname || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '') \
                   FROM pg_policy p \
                 UNION ALL SELECT 'rls ' || n.nspname || '.' || c.relname || ' ' || c.relrowsecurity \
                   FROM pg_class c JOIN app n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') \
                 UNION ALL SELECT 'extension ' || extname FROM pg_extension \
                 ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub fn vars(&self, db: &str) -> Vec<(String, String)> {
        self.kit.vars(db)
    }

    pub fn env(&self, db: &str) -> EnvVars {
        self.kit.env(db)
    }

    pub fn settings(&self, db: &str) -> Settings {
        self.kit.settings(db)
    }

    pub fn config(&self, db: &str) -> drizzle::Config {
        drizzle::Config::new(self.env(db).migration().unwrap())
    }

    pub fn dsn(&self, role: &str, password: &str, db: &str) -> Dsn {
        self.kit.dsn(role, password, db)
    }

    pub fn admin(&self, db: &str) -> Client {
        self.kit.admin(db)
    }

    pub fn connect_as(&self, role: &str, db: &str) -> Client {
        self.kit.connect_as(role, db)
    }

    /// The bookkeeping rows: (id, hash, created_at).
    pub fn rows(&self, db: &str) -> Vec<(i32, String, Option<i64>)> {
        self.admin(db)
            .query("SELECT id, hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id", &[])
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
            .unwrap_or_default()
    }
}

/// A migrations folder written on the fly.
pub struct TestFolder {
    pub dir: tempfile::TempDir,
    entries: Vec<(String, i64)>,
}

impl TestFolder {
    pub fn new() -> TestFolder {
        TestFolder { dir: tempfile::tempdir().unwrap(), entries: Vec::new() }
    }

    /// A copy of the first `count` entries of `source` (all when `None`).
    pub fn copy_of(source: &Path, count: Option<usize>) -> TestFolder {
        let folder = drizzle::folder::read(source).unwrap();
        let mut copy = TestFolder::new();
        for migration in folder.migrations.iter().take(count.unwrap_or(usize::MAX)) {
            let bytes = std::fs::read(source.join(format!("{}.sql", migration.tag))).unwrap();
            copy.add(&migration.tag, migration.when, &bytes);
        }
        copy
    }

    pub fn add(&mut self, tag: &str, when: i64, sql: &[u8]) -> &mut TestFolder {
        std::fs::write(self.dir.path().join(format!("{tag}.sql")), sql).unwrap();
        self.entries.push((tag.to_string(), when));
        self.write_journal();
        self
    }

    pub fn write_journal(&self) {
        let entries: Vec<String> = self
            .entries
            .iter()
            .enumerate()
            .map(|(idx, (tag, when))| {
                format!("{{\"idx\":{idx},\"version\":\"7\",\"when\":{when},\"tag\":\"{tag}\",\"breakpoints\":true}}")
            })
            .collect();
        std::fs::create_dir_all(self.dir.path().join("meta")).unwrap();
        std::fs::write(
            self.dir.path().join("meta/_journal.json"),
            format!("{{\"version\":\"7\",\"dialect\":\"postgresql\",\"entries\":[{}]}}", entries.join(",")),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn read(&self) -> drizzle::Folder {
        drizzle::folder::read(self.path()).unwrap()
    }
}

/// The pinned drizzle-kit, or `None` (loudly) where Node is missing and CI
/// does not insist.
pub fn drizzle_kit() -> Option<PathBuf> {
    let bin = repo_root().join("platform/db/node_modules/drizzle-kit/bin.cjs");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node {
        assert!(std::env::var_os("XTASK_REQUIRE_TOOLS").is_none(), "node is required (`.ci/run` installs it)");
        eprintln!("SKIPPED drizzle-kit interop: node is not installed");
        return None;
    }
    assert!(bin.exists(), "drizzle-kit is not installed: run `npm ci --prefix platform/db` (cargo xtask check does)");
    Some(bin)
}

/// A real-world fixture set (`tests/fixtures/realworld/<name>/migrations`).
pub fn realworld(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/realworld").join(name).join("migrations")
}

/// `drizzle-kit migrate` with only the migrator DSN in its environment.
pub fn run_drizzle_kit(bin: &Path, dsn: &Dsn, dir: &Path) -> Output {
    Command::new("node")
        .arg(bin)
        .arg("migrate")
        .current_dir(repo_root().join("platform/db"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(keys::DATABASE_MIGRATOR_URL, dsn.expose_url())
        .env("DRIZZLE_MIGRATIONS_DIR", dir)
        .output()
        .unwrap()
}

pub fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// What a built-in run over `folder` stopped with before its first
/// statement (nothing applied); panics, showing the error, when it failed
/// for another reason.
pub fn refused(config: &drizzle::Config, folder: &drizzle::Folder) -> Vec<drizzle::Refusal> {
    let error = drizzle::migrate_builtin(config, folder, false, &mut drizzle::Silent).unwrap_err();
    match error.downcast_ref::<drizzle::Refused>() {
        Some(refused) => refused.refusals.clone(),
        None => panic!("not a refusal: {error:#}"),
    }
}
