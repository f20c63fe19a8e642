//! The host the tool runs on: finding a program, needing root, installing
//! a Debian package. Used by the container tier and its stand-in images.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// `program` on `PATH` or in the sbin directories.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Refuses unless running as root, naming `what` needed it.
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the container tier needs to {what}, which only root may do here; install and start Docker \
             yourself, or run `cargo xtask check` without --containers"
        );
    }
    Ok(())
}

/// Installs Debian `packages` with apt-get, quietly.
pub fn apt_install(sh: &Shell, packages: &[&str]) -> Result<()> {
    if which("apt-get").is_none() {
        bail!(
            "{} missing and apt-get is not available; install them, or run `cargo xtask check` without \
             --containers",
            packages.join(", ")
        );
    }
    println!("  installing {}", packages.join(" "));
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(sh, "apt-get install -y -qq --no-install-recommends {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("apt-get install {}", packages.join(" ")))
}
