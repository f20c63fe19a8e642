//! Who runs the server: `initdb`, `pg_ctl` and `postgres` refuse to run as
//! root, so a root caller hands them to an unprivileged OS user.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::LocalEnv;

/// An unprivileged OS account the server binaries run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl OsUser {
    /// `None` when the caller is not root (the server then runs as the
    /// caller); otherwise `PG_OS_USER` (in `local`), else `postgres`, else
    /// `nobody`.
    pub fn for_server(local: &LocalEnv) -> Result<Option<OsUser>> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        if let Some(name) = &local.os_user {
            return match OsUser::lookup(name)? {
                Some(user) if user.uid != 0 => Ok(Some(user)),
                Some(_) => bail!("PG_OS_USER is `{name}`, which is root; the server binaries refuse to run as root"),
                None => bail!("PG_OS_USER is `{name}`, which is not an account on this machine"),
            };
        }
        for name in ["postgres", "nobody"] {
            if let Some(user) = OsUser::lookup(name)? {
                return Ok(Some(user));
            }
        }
        bail!(
            "running as root, and neither a `postgres` nor a `nobody` account exists to run the server; \
             create one (`useradd --system postgres`) or set PG_OS_USER"
        )
    }

    fn lookup(name: &str) -> Result<Option<OsUser>> {
        let c_name = CString::new(name).context("account name contains a NUL byte")?;
        // SAFETY: getpwnam reads a static buffer; we copy out of it at once
        // and nothing else in this process calls getpwnam concurrently in a
        // way that matters (a race would at worst misread an account).
        let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
        if entry.is_null() {
            return Ok(None);
        }
        // SAFETY: non-null pointer from getpwnam.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Some(OsUser { name: name.to_string(), uid, gid }))
    }

    /// Makes `command` run as this user (the caller is root).
    pub fn apply(&self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid).env("USER", &self.name).env("LOGNAME", &self.name);
        // The server's HOME is irrelevant, and root's is unreadable to it.
        command.env("HOME", "/");
    }

    /// Gives `path` (one file or directory, not recursive) to this user.
    pub fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("chown `{}` to `{}`", path.display(), self.name))
    }

    /// Gives a whole tree to this user.
    pub fn chown_tree(&self, path: &Path) -> Result<()> {
        self.chown(path)?;
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                let entry = entry?;
                if entry.file_type()?.is_symlink() {
                    std::os::unix::fs::lchown(entry.path(), Some(self.uid), Some(self.gid))?;
                } else {
                    self.chown_tree(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// Checks that this user can reach `dir` (every parent searchable), so
    /// the error comes from us and not from a failing `initdb`.
    pub fn check_can_reach(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut current = dir.parent();
        while let Some(parent) = current {
            if let Ok(meta) = std::fs::metadata(parent) {
                let mode = meta.mode();
                let searchable = if meta.uid() == self.uid {
                    mode & 0o100 != 0
                } else if meta.gid() == self.gid {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                };
                if !searchable {
                    bail!(
                        "the server runs as OS user `{}`, which cannot enter `{}` (mode {:o}); \
                         put the data directory elsewhere (APP_DB_DATA_DIR) or run as another user",
                        self.name,
                        parent.display(),
                        mode & 0o7777
                    );
                }
            }
            current = parent.parent();
        }
        Ok(())
    }
}

/// Makes `command` run as `user` when given, and die with the calling thread.
///
/// `PR_SET_PDEATHSIG` is set after the uid change (std runs `pre_exec` hooks
/// after `setuid`), since a credential change would clear it. `SIGQUIT` makes
/// a postmaster do an immediate shutdown, taking its backends with it.
pub fn prepare(command: &mut Command, user: Option<&OsUser>, die_with_parent: bool) {
    if let Some(user) = user {
        user.apply(command);
    }
    if die_with_parent {
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
