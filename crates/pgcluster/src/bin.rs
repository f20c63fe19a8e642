//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::LocalEnv;

/// A directory holding `initdb`, `pg_ctl` and `postgres`, and their major version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgBin {
    pub dir: PathBuf,
    pub major: u32,
    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
}

const REQUIRED: &[&str] = &["initdb", "pg_ctl", "postgres"];

impl PgBin {
    /// Finds the binaries: `PG_BIN`, then `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/*/bin` (Debian's layout, not on `PATH`).
    /// `PG_CONFIG` names another `pg_config` (empty: ask none), and
    /// `PG_VERSIONS_DIR` another versions directory than
    /// `/usr/lib/postgresql`; `local` holds what they say.
    pub fn find(local: &LocalEnv) -> Result<PgBin> {
        PgBin::find_in(local.pg_bin.as_deref(), local.pg_config.as_deref(), &local.versions_dir)
    }

    /// [`PgBin::find`] with its three sources given explicitly.
    pub fn find_in(pg_bin: Option<&Path>, pg_config: Option<&OsStr>, versions_dir: &Path) -> Result<PgBin> {
        if let Some(dir) = pg_bin {
            return PgBin::from_dir(dir).context("PG_BIN does not hold the PostgreSQL server binaries");
        }
        if let Some(Ok(output)) = pg_config.map(|program| Command::new(program).arg("--bindir").output()) {
            if output.status.success() {
                let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
                if let Ok(bin) = PgBin::from_dir(&dir) {
                    return Ok(bin);
                }
            }
        }
        let mut found: Vec<PgBin> = std::fs::read_dir(versions_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| PgBin::from_dir(&entry.path().join("bin")).ok())
            .collect();
        found.sort_by_key(|bin| bin.major);
        match found.pop() {
            Some(bin) => Ok(bin),
            None => bail!(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in PG_BIN, `pg_config --bindir` or \
                 {}/*/bin; install them (Debian/Ubuntu: `sudo apt-get install postgresql`, \
                 macOS: `brew install postgresql@15`) or set PG_BIN to their directory",
                versions_dir.display()
            ),
        }
    }

    /// Uses the binaries in `dir`.
    pub fn from_dir(dir: &Path) -> Result<PgBin> {
        for name in REQUIRED {
            if !dir.join(name).is_file() {
                bail!("`{}` has no `{name}`", dir.display());
            }
        }
        let output = Command::new(dir.join("postgres"))
            .arg("--version")
            .output()
            .with_context(|| format!("run `{}/postgres --version`", dir.display()))?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let major = parse_major(&version)
            .with_context(|| format!("`{}/postgres --version` printed `{version}`, not a version", dir.display()))?;
        Ok(PgBin { dir: dir.to_path_buf(), major, version })
    }

    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }
}

/// `postgres (PostgreSQL) 15.18 (Debian …)` → 15; `… 9.6.1` → 9.
fn parse_major(version: &str) -> Option<u32> {
    let number = version.split_whitespace().find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    number.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_binaries_is_an_error_that_says_how_to_install_them() {
        let empty = std::env::temp_dir().join(format!("pgbin-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let error = PgBin::find_in(None, None, &empty).unwrap_err().to_string();
        assert!(error.contains("apt-get install postgresql") && error.contains("PG_BIN"), "{error}");
        let error = format!("{:#}", PgBin::find_in(Some(&empty), None, &empty).unwrap_err());
        assert!(error.starts_with("PG_BIN does not hold"), "{error}");
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn finds_the_newest_debian_layout_version() {
        let Ok(bin) = PgBin::find_in(None, None, Path::new("/usr/lib/postgresql")) else { return };
        assert!(bin.major >= 13, "{bin:?}");
        assert_eq!(PgBin::find_in(Some(&bin.dir), None, Path::new("/nonexistent")).unwrap(), bin);
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 13.22"), Some(13));
        assert_eq!(parse_major("nonsense"), None);
    }
}
