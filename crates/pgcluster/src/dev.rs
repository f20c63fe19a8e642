//! The development server behind `cargo xtask db-up` / `db-down`: a cluster
//! that survives `cargo clean` and reboots of the tool, managed by `pg_ctl`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::osuser::{prepare, OsUser};
use crate::server::{append_settings, data_dir_major, initdb, postmaster_status, InitOptions};
use crate::{LocalEnv, PgBin};

/// Where the development data lives unless `APP_DB_DATA_DIR` (in `local`)
/// says otherwise:
/// `$XDG_DATA_HOME/cogni-template/pg-<port>` (`~/.local/share/…`), or
/// `/var/lib/cogni-template/pg-<port>` for root, whose home the server's OS
/// user cannot enter. Outside `target/`, so `cargo clean` keeps it.
pub fn default_base_dir(local: &LocalEnv, port: u16) -> PathBuf {
    if let Some(dir) = &local.data_dir {
        return dir.clone();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let base = if root {
        PathBuf::from("/var/lib")
    } else if let Some(dir) = &local.xdg_data_home {
        dir.clone()
    } else {
        local.home.clone().unwrap_or_else(|| PathBuf::from("/tmp")).join(".local/share")
    };
    base.join("cogni-template").join(format!("pg-{port}"))
}

/// A development cluster: `<base>/data` and its log `<base>/server.log`.
#[derive(Clone, Debug)]
pub struct DevServer {
    pub bin: PgBin,
    pub user: Option<OsUser>,
    pub base: PathBuf,
    pub port: u16,
}

/// What `pg_ctl status` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No cluster in the data directory yet.
    Absent,
    Stopped,
    Running {
        pid: i32,
    },
}

impl DevServer {
    pub fn new(local: &LocalEnv, bin: PgBin, base: PathBuf, port: u16) -> Result<DevServer> {
        Ok(DevServer { bin, user: OsUser::for_server(local)?, base, port })
    }

    pub fn datadir(&self) -> PathBuf {
        self.base.join("data")
    }

    pub fn logfile(&self) -> PathBuf {
        self.base.join("server.log")
    }

    pub fn status(&self) -> Result<Status> {
        let datadir = self.datadir();
        if !datadir.join("PG_VERSION").exists() {
            return Ok(Status::Absent);
        }
        match postmaster_status(&datadir) {
            Some((pid, _)) if crate::server::process_alive(pid) => Ok(Status::Running { pid }),
            _ => Ok(Status::Stopped),
        }
    }

    /// Creates the cluster: scram-sha-256 everywhere, loopback only, no unix
    /// socket (its path could exceed the 107-byte limit), and the upstream dev
    /// server's logging (`log_statement=ddl`, `log_connections=on`), which is
    /// why provisioning keeps its own statements out of the log.
    pub fn init(&self, superuser: &str, password: &str) -> Result<()> {
        fs::create_dir_all(&self.base).with_context(|| format!("create `{}`", self.base.display()))?;
        if let Some(user) = &self.user {
            user.check_can_reach(&self.base)?;
            user.chown(&self.base)?;
        }
        let datadir = self.datadir();
        initdb(&self.bin, self.user.as_ref(), &datadir, &InitOptions { superuser, password, no_sync: false })?;
        append_settings(
            &datadir,
            &[
                ("port", self.port.to_string()),
                ("listen_addresses", "localhost".to_string()),
                ("unix_socket_directories", String::new()),
                ("password_encryption", "scram-sha-256".to_string()),
                ("log_statement", "ddl".to_string()),
                ("log_connections", "on".to_string()),
            ],
        )
    }

    /// Starts the server with `pg_ctl start -w` and waits until it is ready.
    pub fn start(&self) -> Result<()> {
        let datadir = self.datadir();
        if let Some(major) = data_dir_major(&datadir) {
            if major != self.bin.major {
                bail!(
                    "`{}` was created by PostgreSQL {major} but the binaries are {} ({}); set PG_BIN to the \
                     {major} binaries, or recreate the data with `cargo xtask db-down --purge` (deletes it)",
                    datadir.display(),
                    self.bin.major,
                    self.bin.dir.display()
                );
            }
        }
        if let Some(user) = &self.user {
            // The log file is created by pg_ctl as the server user.
            user.chown(&self.base)?;
        }
        let output = self
            .pg_ctl(&["start", "-w", "-t", "120", "-l"])
            .arg(self.logfile())
            .arg("-D")
            .arg(&datadir)
            .stdin(Stdio::null())
            .output()
            .context("run pg_ctl start")?;
        if !output.status.success() {
            let log = fs::read_to_string(self.logfile()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            bail!(
                "pg_ctl start failed: {}{}\nlast lines of `{}`:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.logfile().display(),
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions end, nothing is lost).
    /// Returns whether it was running.
    pub fn stop(&self) -> Result<bool> {
        if !matches!(self.status()?, Status::Running { .. }) {
            return Ok(false);
        }
        let output = self
            .pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.datadir())
            .stdin(Stdio::null())
            .output()
            .context("run pg_ctl stop")?;
        if !output.status.success() {
            bail!(
                "pg_ctl stop failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(true)
    }

    /// Deletes the data directory and log (the server must be stopped).
    pub fn purge(&self) -> Result<bool> {
        if matches!(self.status()?, Status::Running { .. }) {
            bail!("BUG: purge while the server runs");
        }
        if !self.base.exists() {
            return Ok(false);
        }
        remove_tree(&self.base)?;
        Ok(true)
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.path("pg_ctl"));
        command.args(args);
        prepare(&mut command, self.user.as_ref(), false);
        command
    }
}

/// Removes a directory tree, refusing paths that look like a mistake.
fn remove_tree(path: &Path) -> Result<()> {
    let depth = path.components().count();
    if depth < 3 {
        bail!("refusing to delete `{}`: too close to the file system root", path.display());
    }
    fs::remove_dir_all(path).with_context(|| format!("delete `{}`", path.display()))
}
