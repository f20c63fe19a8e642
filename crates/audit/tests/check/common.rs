//! A provisioned and migrated throwaway database, and helpers to read a report.

#![allow(dead_code)]

use audit::checks::CheckId;
use std::path::{Path, PathBuf};

use audit::{CheckConfig, Exemptions, Report, Verdict};
use dbenv::{EnvVars, Settings};
use pgcluster::TestCluster;
use postgres::{Client, NoTls};

pub const DB: &str = "cogni_template_test";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

pub struct Fixture {
    pub cluster: TestCluster,
    pub migrations: PathBuf,
    /// Variables beyond the defaults (`APP_DB_SCHEMAS`, `APP_DB_EXTENSIONS`).
    pub extra: Vec<(String, String)>,
}

impl Fixture {
    /// Provisioned and migrated with the app's migrations.
    pub fn migrated() -> Fixture {
        let fixture = Fixture::provisioned();
        let folder = drizzle::folder::read(&fixture.migrations).unwrap();
        let config = drizzle::Config::new(fixture.env().migration().unwrap());
        drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap();
        fixture
    }

    pub fn provisioned() -> Fixture {
        Fixture::provisioned_with(&repo_root().join("platform/db/migrations"), &[])
    }

    /// Provisioned for another migration set, with extra variables.
    pub fn provisioned_with(migrations: &Path, extra: &[(&str, &str)]) -> Fixture {
        let cluster = TestCluster::start().unwrap();
        let extra = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let fixture = Fixture { cluster, migrations: migrations.to_path_buf(), extra };
        roles::provision(&Settings::from_env(&fixture.env()).unwrap(), &roles::Options::default(), &mut roles::Quiet)
            .unwrap();
        fixture
    }

    /// Applies this fixture's migrations with the runner.
    pub fn migrate(&self) -> drizzle::Outcome {
        let folder = drizzle::folder::read(&self.migrations).unwrap();
        let config = drizzle::Config::new(self.env().migration().unwrap());
        drizzle::migrate_builtin(&config, &folder, false, &mut drizzle::Silent).unwrap()
    }

    pub fn env(&self) -> EnvVars {
        let port = self.cluster.port().to_string();
        let dsn = |user: &str, password: &str| format!("postgresql://{user}:{password}@127.0.0.1:{port}/{DB}");
        let mut pairs: Vec<(String, String)> = vec![
            ("DB_HOST".into(), "127.0.0.1".into()),
            ("DB_PORT".into(), port.clone()),
            ("POSTGRES_ROOT_USER".into(), "postgres".into()),
            ("POSTGRES_ROOT_PASSWORD".into(), self.cluster.password().into()),
            ("APP_DB_NAME".into(), DB.into()),
            ("DATABASE_URL".into(), dsn("app_user", "password")),
            ("DATABASE_SERVICE_URL".into(), dsn("app_service", "service_password")),
            ("DATABASE_MIGRATOR_URL".into(), dsn("app_migrator", "migrator_password")),
        ];
        pairs.extend(self.extra.iter().cloned());
        EnvVars::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
    }

    pub fn admin(&self) -> Client {
        Client::connect(&self.cluster.admin_url(DB), NoTls).unwrap()
    }

    pub fn migrator(&self) -> Client {
        Client::connect(
            &format!("postgresql://app_migrator:migrator_password@127.0.0.1:{}/{DB}", self.cluster.port()),
            NoTls,
        )
        .unwrap()
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
