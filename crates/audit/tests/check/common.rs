//! A provisioned and migrated throwaway database, and helpers to read a report.

#![allow(dead_code)]

use audit::checks::CheckId;
use std::path::{Path, PathBuf};

use audit::{CheckConfig, Exemptions, Report, Verdict};
use dbenv::EnvVars;
use postgres::Client;
use testkit::Cluster;
pub use testkit::{repo_root, DB};

pub struct Fixture {
    pub kit: Cluster,
    pub migrations: PathBuf,
    /// Variables beyond the defaults (`APP_DB_SCHEMAS`, `APP_DB_EXTENSIONS`).
    pub extra: Vec<(String, String)>,
}

impl Fixture {
    /// Provisioned and migrated with the app's migrations: a copy of a
    /// cluster this test binary provisioned and migrated once.
    pub fn migrated() -> Fixture {
        let migrations = repo_root().join("platform/db/migrations");
        let kit = Cluster::start_prepared("audit-migrated", &[&migrations], |kit| {
            let env = Fixture::env_of(kit, &[]);
            roles::provision(&env.provisioning().unwrap(), &roles::Options::default(), &mut roles::Quiet).unwrap();
            let folder = drizzle::folder::read(&migrations).unwrap();
            let config = drizzle::Config::new(env.migration().unwrap());
            drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap();
        });
        Fixture { kit, migrations, extra: Vec::new() }
    }

    pub fn provisioned() -> Fixture {
        Fixture::provisioned_with(&repo_root().join("platform/db/migrations"), &[])
    }

    /// Provisioned for another migration set, with extra variables.
    pub fn provisioned_with(migrations: &Path, extra: &[(&str, &str)]) -> Fixture {
        let kit = Cluster::start();
        let extra = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let fixture = Fixture { kit, migrations: migrations.to_path_buf(), extra };
        roles::provision(&fixture.env().provisioning().unwrap(), &roles::Options::default(), &mut roles::Quiet)
            .unwrap();
        fixture
    }

    /// Applies this fixture's migrations with the runner.
    pub fn migrate(&self) -> drizzle::Outcome {
        let folder = drizzle::folder::read(&self.migrations).unwrap();
        let config = drizzle::Config::new(self.env().migration().unwrap());
        drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap()
    }

    /// The server, the admin and the three DSNs (no role pieces), with
    /// this fixture's extra variables.
    pub fn env(&self) -> EnvVars {
        Fixture::env_of(&self.kit, &self.extra)
    }

    fn env_of(kit: &Cluster, extra: &[(String, String)]) -> EnvVars {
        let mut pairs = kit.server_vars(DB);
        pairs.extend(kit.dsn_vars(DB));
        pairs.extend(extra.iter().cloned());
        testkit::env_of(&pairs)
    }

    pub fn admin(&self) -> Client {
        self.kit.admin(DB)
    }

    pub fn migrator(&self) -> Client {
        self.kit.connect_as("app_migrator", DB)
    }

    pub fn check_with(&self, migrations: &Path, exemptions: Exemptions) -> Report {
        let config =
            CheckConfig::new(self.env().checking().unwrap(), Some(migrations.to_path_buf()), exemptions).unwrap();
        audit::check(&config).unwrap()
    }

    pub fn check(&self) -> Report {
        let exemptions = Exemptions::load_default(&repo_root()).unwrap();
        self.check_with(&self.migrations, exemptions)
    }
}

/// `subject: message` of every failure of one catalog check.
pub fn catalog_failures(report: &Report, id: CheckId) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.id == id)
        .flat_map(|c| {
            c.findings.iter().filter(|f| f.verdict == Verdict::Fail).map(|f| format!("{}: {}", f.subject, f.message))
        })
        .collect()
}

/// `role observed` of every failed probe with this id.
pub fn probe_failures(report: &Report, id: &str) -> Vec<String> {
    report
        .probes
        .iter()
        .filter(|p| p.id == id && p.verdict == Verdict::Fail)
        .map(|p| format!("{} {}", p.role, p.observed))
        .collect()
}

/// Asserts the report fails, and that `id` names `needle`.
pub fn assert_caught(report: &Report, id: CheckId, needle: &str) {
    assert!(!report.holds(), "the report must not hold:\n{}", report.to_text());
    let found = catalog_failures(report, id);
    assert!(
        found.iter().any(|f| f.contains(needle)),
        "{id} should name `{needle}`, found {found:?}\n{}",
        report.to_text()
    );
}
