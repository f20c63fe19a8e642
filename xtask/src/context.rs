//! The one context every command gets (rust-analyzer's `xtask` hands one
//! `Shell` around; this hands the project's paths and the process
//! environment too): where the project is, where the user stands, and the
//! process variables, captured once. A command loads its environment once
//! ([`Context::load_env`]) and takes the typed views it needs from that
//! value; nothing below the command line reads the process's variables.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use dbenv::{check_sibling_env_files, EnvVars, ProcessEnv, Settings};
use xshell::Shell;

use crate::flags::{EnvFile, MigrationsDir};

pub struct Context {
    pub sh: Shell,
    /// The workspace root: defaults are relative to it.
    pub root: PathBuf,
    /// Where the user stands: paths on the command line are relative to it.
    pub invoked_from: PathBuf,
    /// The process environment: it overrides the env files. Variables
    /// whose name or value is not UTF-8 are left out; a contract variable
    /// that is not UTF-8 is an error.
    pub process: ProcessEnv,
    /// `PATH` as the OS gave it, for the programs the commands start.
    pub search_path: std::ffi::OsString,
    /// What the process's variables tell the local PostgreSQL tooling
    /// (`PG_BIN`, `PG_OS_USER`, the data, cache and temporary directories).
    pub local: pgcluster::LocalEnv,
}

/// One command's environment: the file it came from and its variables
/// under the process environment.
pub struct Env {
    pub path: PathBuf,
    pub vars: EnvVars,
}

impl Context {
    pub fn new() -> Result<Context> {
        let sh = Shell::new()?;
        let invoked_from = std::env::current_dir()?;
        let root = crate::project_root();
        sh.change_dir(&root);
        let captured: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
        let local = pgcluster::LocalEnv::from_vars(|name| {
            captured.iter().find(|(key, _)| key.as_os_str() == name).map(|(_, value)| value.clone())
        });
        let search_path = captured.iter().find(|(key, _)| key == "PATH").map(|(_, value)| value.clone());
        let mut vars = Vec::new();
        for (key, value) in captured {
            match (key.into_string(), value.into_string()) {
                (Ok(key), Ok(value)) => vars.push((key, value)),
                // A contract variable must be read as written, never skipped.
                (Ok(key), Err(_)) if dbenv::keys::CONTRACT.contains(&key.as_str()) => anyhow::bail!(
                    "{key} in the process environment is not valid UTF-8; set it to UTF-8 text (percent-encode \
                     bytes in a DSN), or unset it to use the env file's value"
                ),
                _ => {}
            }
        }
        let (process, search_path) = (ProcessEnv::from_vars(vars), search_path.unwrap_or_default());
        Ok(Context { sh, root, invoked_from, process, search_path, local })
    }

    /// A path given on the command line, or `default` in the project.
    pub fn path_or(&self, given: Option<&Path>, default: &str) -> PathBuf {
        match given {
            Some(path) => self.invoked_from.join(path),
            None => self.root.join(default),
        }
    }

    pub fn env_file(&self, flag: &EnvFile) -> PathBuf {
        self.path_or(flag.path.as_deref(), dbenv::DEFAULT_ENV_FILE)
    }

    pub fn migrations(&self, flag: &MigrationsDir) -> PathBuf {
        self.path_or(flag.path.as_deref(), "platform/db/migrations")
    }

    /// The project's migrations folder.
    pub fn project_migrations(&self) -> PathBuf {
        self.root.join("platform/db/migrations")
    }

    /// Loads `path` under the process environment, once. A file named on
    /// the command line must exist; the default may be absent (containers
    /// pass their settings in the process environment).
    pub fn load_env(&self, path: &Path) -> Result<Env> {
        let explicit = path.file_name().and_then(|n| n.to_str()) != Some(dbenv::DEFAULT_ENV_FILE);
        Ok(Env { path: path.to_path_buf(), vars: EnvVars::load(path, explicit, &self.process)? })
    }

    /// Loads `path` even when it is not there (db-up, db-down).
    pub fn load_env_optional(&self, path: &Path) -> Result<Env> {
        Ok(Env { path: path.to_path_buf(), vars: EnvVars::load(path, false, &self.process)? })
    }
}

impl Env {
    /// The provisioning view, refusing env files beside this one that would
    /// give one role two passwords.
    pub fn settings(&self, ctx: &Context) -> Result<Settings> {
        let settings = self.vars.provisioning().with_context(|| match self.vars.file() {
            Some(file) => format!("read the settings from `{}` and the process environment", file.display()),
            None => {
                format!("`{}` does not exist, so the settings come from the process environment", self.path.display())
            }
        })?;
        check_sibling_env_files(&self.path, &self.vars, &ctx.process)?;
        Ok(settings)
    }
}
