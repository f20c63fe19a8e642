//! The targets file of a fleet (`--targets FILE`): one `[[target]]` per
//! database, each a `name` and an `env_file` (relative to the targets file),
//! and for a hot standby optionally its primary's env file (`primary_env`,
//! read by `db-check` as `--primary-env` reads it).
//!
//! ```toml
//! [[target]]
//! name = "tenant-a"
//! env_file = "tenants/a.env"
//!
//! [[target]]
//! name = "tenant-a-replica"
//! env_file = "replicas/a.env"
//! primary_env = "tenants/a.env"
//! ```
//!
//! [`Targets::load`] reads the file and refuses, naming the file and the
//! line, what no target could run with: TOML that does not parse, unknown
//! keys, a bad or repeated name, an env file that is not there.
//! [`Targets::check_across`] then refuses, before any target runs, two
//! targets naming one database and two targets on one server giving a role
//! two passwords. An env file that exists but cannot be read or lacks a
//! variable fails its own target only.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::env::{server_of, EnvVars, ProcessEnv};
use crate::filecheck::password_conflicts;
use crate::keys;

/// One database of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// The env file, resolved against the targets file's directory.
    pub env_file: PathBuf,
    /// The line of its `name` in the targets file.
    pub line: usize,
    /// On a hot standby: the primary's env file (`db-check` compares the
    /// audited catalogs with the primary's), resolved as `env_file` is.
    pub primary_env: Option<PathBuf>,
}

/// A parsed, checked targets file.
#[derive(Debug)]
pub struct Targets {
    pub path: PathBuf,
    pub targets: Vec<Target>,
}

/// The longest target name: names become JUnit suite names and table cells.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    target: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Spanned<String>,
    env_file: Spanned<String>,
    #[serde(default)]
    primary_env: Option<Spanned<String>>,
}

/// Where a server's database is, as the env files write it: loopback names
/// are one host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatabaseAddress {
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl DatabaseAddress {
    /// The server part (`host:port`): roles are shared by every database there.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for DatabaseAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.port, self.database)
    }
}

/// The database a target's env file names: [`server_of`] and `APP_DB_NAME`
/// (else the migrator's, then the runtime role's DSN's database). `None`
/// when the file does not say.
pub fn database_of(vars: &EnvVars) -> Option<DatabaseAddress> {
    let (host, port) = server_of(vars)?;
    let database =
        vars.get(keys::APP_DB_NAME).map(str::to_string).or_else(|| crate::env::dsns(vars).find_map(|d| d.dbname))?;
    Some(DatabaseAddress { host, port, database })
}

/// `given` resolved against `dir`, when that file exists; else why not,
/// naming `what` of target `name`.
fn existing(given: &Spanned<String>, dir: &Path, (what, name): (&str, &str)) -> Result<PathBuf, String> {
    let path = dir.join(given.get_ref());
    if path.is_file() {
        return Ok(path);
    }
    Err(format!(
        "target `{name}`: {what} `{}` does not exist (a relative path is relative to the targets file); create it \
         (`cargo xtask env --env-file {}`) or fix the path",
        path.display(),
        path.display()
    ))
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

impl Targets {
    /// Reads and checks the targets file at `path`.
    pub fn load(path: &Path) -> Result<Targets> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("--targets: cannot read `{}`; give the path of a TOML file of [[target]] entries", path.display())
        })?;
        Targets::parse(path, &text)
    }

    /// Checks `text`, the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Targets> {
        let shown = path.display();
        let shape: FileShape = toml::from_str(text).map_err(|error| {
            let at = error.span().map(|span| format!(" line {}", line_of(text, span.start))).unwrap_or_default();
            format_err!(
                "targets file `{shown}`{at}: {}; each target is a `[[target]]` with `name` and `env_file`",
                error.message()
            )
        })?;
        if shape.target.is_empty() {
            bail!("targets file `{shown}` names no target: add a `[[target]]` with `name` and `env_file` per database");
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut targets: Vec<Target> = Vec::new();
        for entry in shape.target {
            let line = line_of(text, entry.name.span().start);
            let name = entry.name.into_inner();
            check_name(&name).map_err(|why| format_err!("targets file `{shown}` line {line}: target name {why}"))?;
            if let Some(first) = targets.iter().find(|t| t.name == name) {
                bail!(
                    "targets file `{shown}` line {line}: target name `{name}` is used twice (first on line {}); \
                     give each target its own name",
                    first.line
                );
            }
            let env_file = existing(&entry.env_file, dir, ("env file", &name)).map_err(|why| {
                format_err!("targets file `{shown}` line {}: {why}", line_of(text, entry.env_file.span().start))
            })?;
            let primary_env = entry
                .primary_env
                .as_ref()
                .map(|given| {
                    existing(given, dir, ("primary env file", &name)).map_err(|why| {
                        format_err!("targets file `{shown}` line {}: {why}", line_of(text, given.span().start))
                    })
                })
                .transpose()?;
            targets.push(Target { name, env_file, line, primary_env });
        }
        Ok(Targets { path: path.to_path_buf(), targets })
    }

    /// Loads every target's env file alone (the process environment would
    /// give every target the same value). A file that cannot be read is
    /// that target's error.
    pub fn load_env_files(&self) -> Vec<Result<EnvVars>> {
        self.targets.iter().map(|t| EnvVars::load(&t.env_file, true, &ProcessEnv::none())).collect()
    }

    /// What must hold across targets before any runs: no two name one
    /// database, and targets on one server give each role one password.
    pub fn check_across(&self, loaded: &[Result<EnvVars>]) -> Result<()> {
        let shown = self.path.display();
        let mut seen: Vec<(DatabaseAddress, &Target)> = Vec::new();
        for (target, vars) in self.targets.iter().zip(loaded) {
            let Some(address) = vars.as_ref().ok().and_then(database_of) else { continue };
            if let Some((_, first)) = seen.iter().find(|(a, _)| *a == address) {
                bail!(
                    "targets file `{shown}` line {}: targets `{}` (line {}) and `{}` both name database `{address}`; \
                     each database is one target: remove one",
                    target.line,
                    first.name,
                    first.line,
                    target.name
                );
            }
            seen.push((address, target));
        }
        let files: Vec<(PathBuf, EnvVars)> = self
            .targets
            .iter()
            .zip(loaded)
            .filter_map(|(t, vars)| vars.as_ref().ok().map(|v| (t.env_file.clone(), v.clone())))
            .collect();
        let conflicts = password_conflicts(&files);
        if !conflicts.is_empty() {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|c| {
                    let name = |path: &PathBuf| {
                        let t = self.targets.iter().find(|t| &t.env_file == path);
                        t.map(|t| format!("target `{}` (line {})", t.name, t.line)).unwrap_or_default()
                    };
                    format!("{c} [{} and {}]", name(&c.files.0), name(&c.files.1))
                })
                .collect();
            bail!(
                "targets file `{shown}`: roles are cluster-wide, and targets on one server give a role two \
                 passwords; provisioning one would change the other's. Nothing was changed:\n  - {}",
                lines.join("\n  - ")
            );
        }
        Ok(())
    }
}

/// A target name: letters, digits, `.`, `_` and `-`, at most
/// [`MAX_NAME_LEN`] bytes.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is empty; name each target".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("`{name}` is longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("`{name}` contains {c:?}; use letters, digits, `.`, `_` and `-`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    fn parse(dir: &tempfile::TempDir, text: &str) -> Result<Targets> {
        Targets::parse(&dir.path().join("targets.toml"), text)
    }

    fn error(dir: &tempfile::TempDir, text: &str) -> String {
        format!("{:#}", parse(dir, text).unwrap_err())
    }

    #[test]
    fn targets_resolve_their_env_files_against_the_targets_file() {
        let dir = dir_with(&["tenants/a.env", "b.env"]);
        let text = "# two tenants\n[[target]]\nname = \"tenant-a\"\nenv_file = \"tenants/a.env\"\n\n[[target]]\n\
                    name = \"tenant_b.eu\"\nenv_file = \"b.env\"\n";
        let targets = parse(&dir, text).unwrap().targets;
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].env_file, dir.path().join("tenants/a.env"));
        assert_eq!((targets[0].line, targets[1].line), (3, 7));
        assert_eq!(targets[0].primary_env, None);
    }

    #[test]
    fn a_replica_names_its_primary_env_file() {
        let dir = dir_with(&["tenants/a.env", "replicas/a.env"]);
        let text = "[[target]]\nname = \"a-replica\"\nenv_file = \"replicas/a.env\"\nprimary_env = \"tenants/a.env\"\n";
        let targets = parse(&dir, text).unwrap().targets;
        assert_eq!(targets[0].primary_env, Some(dir.path().join("tenants/a.env")));
        let missing = error(&dir, &text.replace("\"tenants/a.env\"", "\"tenants/b.env\""));
        assert!(
            missing.contains("line 4") && missing.contains("primary env file") && missing.contains("b.env"),
            "{missing}"
        );
    }

    #[test]
    fn bad_input_names_the_file_and_the_line() {
        let dir = dir_with(&["a.env"]);
        let cases = [
            ("[[target]]\nname = \"a\"\nenv_file = \"a.env\"\n[[target\n", "line 4", "[[target]]"),
            ("[[target]]\nname = \"a\"\nenv_file = \"a.env\"\ndatabase = \"x\"\n", "line 4", "unknown field"),
            ("[[target]]\nname = \"a\"\n", "line 1", "missing field `env_file`"),
            ("[[target]]\nname = \"a\"\nenv_file = 3\n", "line 3", "string"),
            ("[target]\nname = \"a\"\n", "line 1", "[[target]]"),
            ("title = \"fleet\"\n", "line 1", "unknown field"),
            ("", "no target", "[[target]]"),
            ("[[target]]\nname = \"a b\"\nenv_file = \"a.env\"\n", "line 2", "contains ' '"),
            ("[[target]]\nname = \"\"\nenv_file = \"a.env\"\n", "line 2", "is empty"),
            (
                "[[target]]\nname = \"a\"\nenv_file = \"a.env\"\n[[target]]\nname = \"a\"\nenv_file = \"a.env\"\n",
                "line 5",
                "used twice (first on line 2)",
            ),
            ("[[target]]\nname = \"a\"\nenv_file = \"missing.env\"\n", "line 3", "does not exist"),
        ];
        for (text, line, what) in cases {
            let error = error(&dir, text);
            assert!(error.contains("targets.toml"), "{text:?}: {error}");
            assert!(error.contains(line), "{text:?} should say {line}: {error}");
            assert!(error.contains(what), "{text:?} should say {what}: {error}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> EnvVars {
        EnvVars::from_pairs(pairs.iter().copied())
    }

    fn two(dir: &tempfile::TempDir) -> Targets {
        parse(dir, "[[target]]\nname = \"a\"\nenv_file = \"a.env\"\n[[target]]\nname = \"b\"\nenv_file = \"b.env\"\n")
            .unwrap()
    }

    #[test]
    fn two_targets_naming_one_database_are_refused_whatever_the_loopback_name() {
        let dir = dir_with(&["a.env", "b.env"]);
        let a = env(&[("DB_HOST", "localhost"), ("DB_PORT", "5432"), ("APP_DB_NAME", "app")]);
        let b = env(&[("DATABASE_MIGRATOR_URL", "postgresql://m:p@127.0.0.1:5432/app")]);
        let error = format!("{:#}", two(&dir).check_across(&[Ok(a.clone()), Ok(b)]).unwrap_err());
        assert!(error.contains("line 5") && error.contains("`a` (line 2)"), "{error}");
        assert!(error.contains("localhost:5432/app"), "{error}");
        let other = env(&[("DATABASE_MIGRATOR_URL", "postgresql://m:p@127.0.0.1:5432/app2")]);
        two(&dir).check_across(&[Ok(a.clone()), Ok(other)]).unwrap();
        // A target whose env file cannot be read fails alone, later.
        two(&dir).check_across(&[Ok(a), Err(format_err!("unreadable"))]).unwrap();
    }

    #[test]
    fn targets_on_one_server_must_agree_on_passwords() {
        let dir = dir_with(&["a.env", "b.env"]);
        let vars = |db: &str, password: &str| {
            let dsn = format!("postgresql://app_user:{password}@localhost:5432/{db}");
            env(&[("DB_HOST", "localhost"), ("DB_PORT", "5432"), ("APP_DB_NAME", db), ("DATABASE_URL", &dsn)]).clone()
        };
        two(&dir).check_across(&[Ok(vars("one", "same")), Ok(vars("two", "same"))]).unwrap();
        // One server under two loopback names is one server.
        let other_name = env(&[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", "5432"),
            ("APP_DB_NAME", "two"),
            ("DATABASE_URL", "postgresql://app_user:pw2@127.0.0.1:5432/two"),
        ]);
        let error = format!("{:#}", two(&dir).check_across(&[Ok(vars("one", "pw1")), Ok(other_name)]).unwrap_err());
        assert!(error.contains("role `app_user`"), "{error}");
        let error =
            format!("{:#}", two(&dir).check_across(&[Ok(vars("one", "pw1")), Ok(vars("two", "pw2"))]).unwrap_err());
        assert!(error.contains("role `app_user`") && error.contains("target `b` (line 5)"), "{error}");
        assert!(!error.contains("pw1") && !error.contains("pw2"), "a password was printed: {error}");
    }
}
