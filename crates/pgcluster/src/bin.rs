//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

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
    pub fn find() -> Result<PgBin> {
        if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
            return PgBin::from_dir(Path::new(&dir)).context("PG_BIN does not hold the PostgreSQL server binaries");
        }
        if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
            if output.status.success() {
                let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
                if let Ok(bin) = PgBin::from_dir(&dir) {
                    return Ok(bin);
                }
            }
        }
        let mut found: Vec<PgBin> = std::fs::read_dir("/usr/lib/postgresql")
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
                 /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: `sudo apt-get install postgresql`, \
                 macOS: `brew install postgresql@15`) or set PG_BIN to their directory"
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
    fn parses_versions() {
        assert_eq!(parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 13.22"), Some(13));
        assert_eq!(parse_major("nonsense"), None);
    }
}
