//! `initdb`, configuration and readiness, shared by the development server and
//! the throwaway test clusters.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::osuser::{prepare, OsUser};
use crate::PgBin;

/// What `initdb` needs to know.
pub struct InitOptions<'a> {
    /// The bootstrap superuser's name (`POSTGRES_ROOT_USER`).
    pub superuser: &'a str,
    /// Its password; reaches `initdb` through a `0600` file, never argv.
    pub password: &'a str,
    /// Skip fsync (throwaway clusters only).
    pub no_sync: bool,
}

/// Runs `initdb` into `datadir` (created, mode 0700) with scram-sha-256
/// authentication for every connection, UTF-8 and the C locale.
pub fn initdb(bin: &PgBin, user: Option<&OsUser>, datadir: &Path, options: &InitOptions) -> Result<()> {
    if datadir.join("PG_VERSION").exists() {
        bail!("BUG: `{}` already holds a cluster", datadir.display());
    }
    fs::create_dir_all(datadir).with_context(|| format!("create `{}`", datadir.display()))?;
    fs::set_permissions(datadir, fs::Permissions::from_mode(0o700))?;
    if let Some(user) = user {
        user.check_can_reach(datadir)?;
        user.chown(datadir)?;
    }
    // The password file sits beside the data directory (initdb wants the
    // directory itself empty) and is removed as soon as initdb is done.
    let pwfile = datadir.with_extension("pwfile");
    let _ = fs::remove_file(&pwfile);
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pwfile)
            .with_context(|| format!("create `{}`", pwfile.display()))?;
        file.write_all(options.password.as_bytes())?;
        file.write_all(b"\n")?;
    }
    if let Some(user) = user {
        user.chown(&pwfile)?;
    }
    let mut command = Command::new(bin.path("initdb"));
    command
        .arg("-D")
        .arg(datadir)
        .arg("-U")
        .arg(options.superuser)
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]);
    if bin.major >= 14 {
        command.arg("--no-instructions");
    }
    if options.no_sync {
        command.arg("--no-sync");
    }
    prepare(&mut command, user, false);
    let output = command.stdin(Stdio::null()).output();
    let _ = fs::remove_file(&pwfile);
    let output = output.with_context(|| format!("run `{}`", bin.path("initdb").display()))?;
    if !output.status.success() {
        bail!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Appends settings to the cluster's `postgresql.conf`. Values are quoted.
pub fn append_settings(datadir: &Path, settings: &[(&str, String)]) -> Result<()> {
    let path = datadir.join("postgresql.conf");
    let mut file =
        fs::OpenOptions::new().append(true).open(&path).with_context(|| format!("open `{}`", path.display()))?;
    writeln!(file, "\n# Added by pgcluster (cargo xtask).")?;
    for (key, value) in settings {
        writeln!(file, "{key} = '{}'", value.replace('\'', "''"))?;
    }
    Ok(())
}

/// The major version a data directory was created by (`PG_VERSION`).
pub fn data_dir_major(datadir: &Path) -> Option<u32> {
    fs::read_to_string(datadir.join("PG_VERSION")).ok()?.trim().parse().ok()
}

/// The postmaster's pid and whether it reports itself ready, from
/// `postmaster.pid` (line 1 and, since PostgreSQL 10, line 8).
pub fn postmaster_status(datadir: &Path) -> Option<(i32, bool)> {
    let text = fs::read_to_string(datadir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    // A hot standby that accepts connections says `standby`.
    let ready = lines.get(7).is_some_and(|status| matches!(status.trim(), "ready" | "standby"));
    Some((pid, ready))
}

/// Whether a process with `pid` exists.
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Waits until the postmaster in `datadir` says it is ready. `alive` reports
/// whether the server process still runs, so a crash is an error at once.
pub fn wait_ready(datadir: &Path, timeout: Duration, mut alive: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some((_, true)) = postmaster_status(datadir) {
            return Ok(());
        }
        if !alive() {
            bail!("the server exited while starting");
        }
        if start.elapsed() > timeout {
            bail!("the server did not become ready within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether something accepts TCP connections on `host:port`.
pub fn port_answers(host: &str, port: u16) -> bool {
    let addresses: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(addresses) => addresses.collect(),
        Err(_) => return false,
    };
    addresses.iter().any(|address| TcpStream::connect_timeout(address, Duration::from_millis(500)).is_ok())
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free TCP port")?;
    Ok(listener.local_addr()?.port())
}
