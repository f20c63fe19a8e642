//! What this machine's environment tells the PostgreSQL tooling, as a value:
//! where the server binaries are, which OS user runs them, where the
//! development data, the download cache and the throwaway clusters live.
//!
//! The command line builds one from the variables it captured
//! ([`LocalEnv::from_vars`]) and hands it down; nothing else in this crate
//! reads the process's variables. [`LocalEnv::from_process`] is for test
//! harnesses, which have no command line.

use std::ffi::OsString;
use std::path::PathBuf;

/// The variables the local tooling reads, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEnv {
    /// `PG_BIN`: the directory holding `initdb`, `pg_ctl` and `postgres`.
    pub pg_bin: Option<PathBuf>,
    /// `PG_CONFIG`: the `pg_config` to ask for `--bindir` (`pg_config` when
    /// unset; `None`, ask none, when set empty).
    pub pg_config: Option<OsString>,
    /// `PG_VERSIONS_DIR`: where the versioned binaries are
    /// (`/usr/lib/postgresql`, Debian's layout, when unset).
    pub versions_dir: PathBuf,
    /// `PG_OS_USER`: the unprivileged account a root caller runs the server as.
    pub os_user: Option<String>,
    /// `APP_DB_DATA_DIR`: the development server's data, instead of the default.
    pub data_dir: Option<PathBuf>,
    /// `XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `TMPDIR` (`/tmp` when unset): where throwaway clusters live.
    pub temp_dir: PathBuf,
}

impl LocalEnv {
    /// Reads the variables through `get`; an empty value counts as unset
    /// (except `PG_CONFIG`, where empty means "ask no `pg_config`").
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> LocalEnv {
        let set = |key: &str| get(key).filter(|value| !value.is_empty());
        let path = |key: &str| set(key).map(PathBuf::from);
        LocalEnv {
            pg_bin: path("PG_BIN"),
            pg_config: match get("PG_CONFIG") {
                None => Some(OsString::from("pg_config")),
                Some(value) if value.is_empty() => None,
                Some(value) => Some(value),
            },
            versions_dir: path("PG_VERSIONS_DIR").unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql")),
            os_user: set("PG_OS_USER").map(|name| name.to_string_lossy().into_owned()),
            data_dir: path("APP_DB_DATA_DIR"),
            xdg_data_home: path("XDG_DATA_HOME"),
            xdg_cache_home: path("XDG_CACHE_HOME"),
            home: path("HOME"),
            temp_dir: path("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp")),
        }
    }

    /// The process's own variables: for test harnesses, which have no
    /// command line to capture them once and hand them down.
    pub fn from_process() -> LocalEnv {
        LocalEnv::from_vars(|key| std::env::var_os(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> LocalEnv {
        let pairs: Vec<(String, OsString)> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        LocalEnv::from_vars(|key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn unset_and_empty_variables_take_the_defaults() {
        let none = of(&[]);
        assert_eq!(none.pg_bin, None);
        assert_eq!(none.pg_config, Some(OsString::from("pg_config")));
        assert_eq!(none.versions_dir, PathBuf::from("/usr/lib/postgresql"));
        assert_eq!(none.temp_dir, PathBuf::from("/tmp"));
        let empty = of(&[("PG_BIN", ""), ("PG_CONFIG", ""), ("PG_OS_USER", ""), ("TMPDIR", ""), ("HOME", "")]);
        assert_eq!((empty.pg_bin, empty.pg_config, empty.os_user, empty.home), (None, None, None, None));
        assert_eq!(empty.temp_dir, PathBuf::from("/tmp"));
    }

    #[test]
    fn set_variables_are_taken_as_given() {
        let env = of(&[
            ("PG_BIN", "/opt/pg/bin"),
            ("PG_CONFIG", "/opt/pg/bin/pg_config"),
            ("PG_VERSIONS_DIR", "/opt/versions"),
            ("PG_OS_USER", "builder"),
            ("APP_DB_DATA_DIR", "/srv/pg"),
            ("TMPDIR", "/var/tmp"),
        ]);
        assert_eq!(env.pg_bin, Some(PathBuf::from("/opt/pg/bin")));
        assert_eq!(env.pg_config, Some(OsString::from("/opt/pg/bin/pg_config")));
        assert_eq!(env.versions_dir, PathBuf::from("/opt/versions"));
        assert_eq!(env.os_user.as_deref(), Some("builder"));
        assert_eq!(env.data_dir, Some(PathBuf::from("/srv/pg")));
        assert_eq!(env.temp_dir, PathBuf::from("/var/tmp"));
    }
}
