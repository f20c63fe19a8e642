//! Local images with the tags of the public ones the project's container
//! files name (`debian:bookworm-slim`, `postgres:15`, `rust:1.95-bookworm`),
//! for machines that reach no image registry. A tag that exists is used as
//! it is; a missing one is pulled; only when the pull fails is a stand-in
//! built, offline from Debian's packages:
//!
//! - `debian:bookworm-slim`: `debootstrap --variant=minbase bookworm`,
//!   imported with the official image's `PATH` and `CMD`;
//! - `postgres:15`: `xtask/standins/postgres` (Debian's postgresql-15 and an
//!   entry point with the official one's contract);
//! - `rust:1.95-bookworm`: `xtask/standins/rust` (the host's toolchain).
//!
//! Stand-ins carry a label saying what they stand in for. They stay in the
//! engine's image store, so the next run finds them (the warm cache).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

pub const DEBIAN: &str = "debian:bookworm-slim";
pub const POSTGRES: &str = "postgres:15";
pub const RUST: &str = "rust:1.95-bookworm";

/// Makes sure the three base images exist, in dependency order.
pub fn ensure(sh: &Shell) -> Result<()> {
    for tag in [DEBIAN, POSTGRES, RUST] {
        let standin = exists(sh, tag).then(|| is_standin(sh, tag));
        if standin == Some(false) {
            println!("  {tag}: present");
            continue;
        }
        // A stand-in gives way to the real image as soon as a registry
        // answers.
        match pull(sh, tag) {
            Pull::Pulled => {
                println!("  {tag}: pulled");
                continue;
            }
            Pull::Refused(reason) => bail!(
                "`docker pull {tag}` failed ({reason}); a stand-in replaces a public image only when no registry \
                 can be reached at all, so fix the pull (log in, wait for a rate limit) and run again"
            ),
            Pull::Unreachable if standin == Some(true) => {
                println!("  {tag}: present (stand-in; no registry answers)");
                continue;
            }
            Pull::Unreachable => {}
        }
        let started = Instant::now();
        println!("  {tag}: no registry answers; building a stand-in");
        match tag {
            DEBIAN => debian(sh)?,
            POSTGRES => build(sh, tag, &sh.current_dir().join("xtask/standins/postgres"))?,
            _ => rust(sh)?,
        }
        println!("  {tag}: stand-in built ({:.0} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

enum Pull {
    Pulled,
    /// No registry could be reached: DNS, TCP or TLS failed.
    Unreachable,
    /// A registry answered and said no (authentication, rate limit…).
    Refused(String),
}

fn pull(sh: &Shell, tag: &str) -> Pull {
    let output = match cmd!(sh, "docker pull -q {tag}").quiet().ignore_status().output() {
        Ok(output) => output,
        Err(error) => return Pull::Refused(error.to_string()),
    };
    if output.status.success() {
        return Pull::Pulled;
    }
    let reason = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if unreachable(&reason) {
        Pull::Unreachable
    } else {
        Pull::Refused(reason)
    }
}

/// Whether a pull failed for want of any registry to talk to.
fn unreachable(reason: &str) -> bool {
    const SIGNS: &[&str] = &[
        "no such host",
        "dial tcp",
        "connection refused",
        "network is unreachable",
        "i/o timeout",
        "TLS handshake timeout",
        "Client.Timeout exceeded",
        "server misbehaving",
    ];
    SIGNS.iter().any(|sign| reason.contains(sign))
}

fn exists(sh: &Shell, tag: &str) -> bool {
    cmd!(sh, "docker image inspect {tag}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

fn is_standin(sh: &Shell, tag: &str) -> bool {
    let format = "{{index .Config.Labels \"org.opencontainers.image.description\"}}";
    cmd!(sh, "docker image inspect --format {format} {tag}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|label| label.starts_with("stand-in"))
}

fn build(sh: &Shell, tag: &str, context: &Path) -> Result<()> {
    cmd!(sh, "docker build --quiet --tag {tag} {context}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("build the {tag} stand-in from {}", context.display()))
}

/// A Debian bookworm `minbase` root file system, as the slim image is made.
fn debian(sh: &Shell) -> Result<()> {
    crate::host::require_root("build the debian:bookworm-slim stand-in with debootstrap")?;
    if cmd!(sh, "debootstrap --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        crate::host::apt_install(sh, &["debootstrap"])?;
    }
    let root = tempfile::Builder::new().prefix("xtask-bookworm-").tempdir()?;
    let dir = root.path().join("rootfs");
    let log = root.path().join("debootstrap.log");
    let log_file = std::fs::File::create(&log)?;
    let status = std::process::Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .context("run debootstrap")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "debootstrap failed ({status}); its last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // What the official slim image trims, and what no container needs.
    for cache in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for entry in std::fs::read_dir(dir.join(cache))? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(path)?;
            }
        }
    }
    let label = format!(
        "LABEL org.opencontainers.image.description=\"stand-in for {DEBIAN}, built by cargo xtask check --containers\""
    );
    let path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let shell = "CMD [\"bash\"]";
    let mut tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("run tar")?;
    let status = std::process::Command::new("docker")
        .args(["import", "--change", &label, "--change", path, "--change", shell, "-", DEBIAN])
        .stdin(tar.stdout.take().context("tar's output")?)
        .stdout(std::process::Stdio::null())
        .status()
        .context("run docker import")?;
    let tar_status = tar.wait().context("wait for tar")?;
    if !tar_status.success() {
        // A partial root file system must not pass for the base image.
        let _ = cmd!(sh, "docker rmi {DEBIAN}").quiet().ignore_stdout().ignore_stderr().run();
        bail!("tar of the debootstrap root failed ({tar_status}); the {DEBIAN} stand-in was not kept");
    }
    if !status.success() {
        bail!("docker import of the {DEBIAN} stand-in failed ({status})");
    }
    Ok(())
}

/// The host's toolchain on the Debian stand-in. Its version must be the
/// tag's, or the stand-in would lie about what it builds with.
fn rust(sh: &Shell) -> Result<()> {
    let version = cmd!(sh, "rustc --version").read()?;
    let wanted = RUST.trim_start_matches("rust:").trim_end_matches("-bookworm");
    if !version.starts_with(&format!("rustc {wanted}.")) {
        bail!("the {RUST} stand-in copies the host's toolchain, but it is `{version}`; install Rust {wanted}");
    }
    let sysroot = cmd!(sh, "rustc --print sysroot").read()?;
    let context = tempfile::Builder::new().prefix("xtask-rust-standin-").tempdir()?;
    let dir = context.path();
    std::fs::copy(sh.current_dir().join("xtask/standins/rust/Dockerfile"), dir.join("Dockerfile"))?;
    let toolchain = dir.join("toolchain");
    sh.create_dir(&toolchain)?;
    for part in ["bin", "lib", "libexec"] {
        let from = Path::new(&sysroot).join(part);
        if from.exists() {
            cmd!(sh, "cp -a {from} {toolchain}").quiet().run()?;
        }
    }
    let certs = dir.join("ca-certificates");
    sh.create_dir(&certs)?;
    let host_certs = Path::new("/usr/local/share/ca-certificates");
    if host_certs.is_dir() {
        for entry in std::fs::read_dir(host_certs)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "crt") {
                std::fs::copy(&path, certs.join(path.file_name().context("file name")?))?;
            }
        }
    }
    build(sh, RUST, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_registry_calls_for_a_stand_in() {
        let offline = "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup \
                       registry-1.docker.io on 10.255.255.53:53: no such host";
        assert!(unreachable(offline));
        assert!(!unreachable("Error response from daemon: toomanyrequests: You have reached your pull rate limit."));
        assert!(!unreachable("Error response from daemon: pull access denied for postgres, repository does not exist"));
    }
}
