//! `cargo xtask env`: creating `.env.local` and `.env.test` from the committed
//! examples and adding the keys an older file lacks, without ever changing a
//! value that is there.
//!
//! Values are written in single quotes, the one form that dotenvy, Node's
//! dotenv and docker compose all read literally (no `$` expansion, no escape
//! processing). A value that single quotes cannot carry (a `'`, a backslash,
//! a line break) is refused rather than written in a form one of them would
//! read differently; inside DSNs such characters are percent-encoded.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::env::{read_env_file, RoleKind};
use crate::{keys, Dsn, Secret};

/// The files `cargo xtask env` manages, each with the example it comes from.
pub const MANAGED_FILES: &[(&str, &str)] = &[(".env.local", ".env.local.example"), (".env.test", ".env.test.example")];

/// Keys whose value must be the same in both files: the server and the
/// cluster-wide roles (provisioning one file would otherwise rotate the
/// other's passwords).
const SERVER_KEYS: &[&str] = &[keys::DB_HOST, keys::DB_PORT, keys::POSTGRES_ROOT_USER, keys::POSTGRES_ROOT_PASSWORD];

/// [`SERVER_KEYS`] and every role's name and password variables.
fn shared_keys() -> Vec<&'static str> {
    let roles = [RoleKind::Runtime, RoleKind::Service, RoleKind::Migrator];
    SERVER_KEYS.iter().copied().chain(roles.iter().flat_map(|kind| [kind.user_var(), kind.password_var()])).collect()
}

/// Keys that hold secrets: compared, never printed.
const SECRET_KEYS: &[&str] = &[
    keys::POSTGRES_ROOT_PASSWORD,
    keys::APP_DB_PASSWORD,
    keys::APP_DB_SERVICE_PASSWORD,
    keys::APP_DB_MIGRATOR_PASSWORD,
];

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAction {
    Created,
    /// Keys appended at the end of an existing file.
    Added(Vec<String>),
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub action: FileAction,
    /// The file was readable by others and is now `0600`.
    pub tightened_mode: bool,
}

/// The result of [`sync_env_files`]: what was written, and the values the
/// two files disagree on (which the tool never overwrites, so the user must).
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub files: Vec<FileReport>,
    pub conflicts: Vec<String>,
}

/// One line of an example file: a `KEY=value` or anything else, kept verbatim.
enum Line {
    Var(String),
    Other(String),
}

/// Creates or completes the managed env files in `dir`. With `dry_run`,
/// computes the same report and writes nothing.
pub fn sync_env_files(dir: &Path, dry_run: bool) -> Result<SyncReport> {
    let files: Vec<(PathBuf, PathBuf)> =
        MANAGED_FILES.iter().map(|(file, example)| (dir.join(file), dir.join(example))).collect();
    sync_files(&files, dry_run)
}

/// Creates or completes exactly the files given, each from its example;
/// no other file is read or written.
pub fn sync_env_files_named(files: &[(PathBuf, PathBuf)], dry_run: bool) -> Result<SyncReport> {
    sync_files(files, dry_run)
}

/// One file to create or complete, with its example.
struct Target {
    path: PathBuf,
    example_lines: Vec<Line>,
    example_values: HashMap<String, String>,
    existing: Option<HashMap<String, String>>,
}

impl Target {
    fn read(path: &Path, example_path: &Path) -> Result<Target> {
        if !example_path.exists() {
            bail!(
                "`{}` is missing; it is committed with the project, restore it with `git checkout`",
                example_path.display()
            );
        }
        let text = fs::read_to_string(example_path).with_context(|| format!("read `{}`", example_path.display()))?;
        let existing = if path.exists() { Some(read_env_file(path)?) } else { None };
        Ok(Target {
            path: path.to_path_buf(),
            example_lines: example_lines(&text),
            example_values: read_env_file(example_path)?,
            existing,
        })
    }

    /// The example's keys, in order.
    fn keys(&self) -> Vec<&String> {
        self.example_lines.iter().filter_map(|l| if let Line::Var(k) = l { Some(k) } else { None }).collect()
    }

    /// The value of every example key for this file: its own, else another
    /// file's for a shared key, else the example's; DSNs derived last.
    fn resolve(
        &self,
        own: &HashMap<String, String>,
        others: &[&HashMap<String, String>],
    ) -> Result<HashMap<String, String>> {
        let keys = self.keys();
        let mut resolved: HashMap<String, String> = HashMap::new();
        for key in keys.iter().filter(|k| !is_dsn_key(k)) {
            let shared =
                || shared_keys().contains(&key.as_str()).then(|| others.iter().find_map(|o| o.get(*key))).flatten();
            let value = own.get(*key).or_else(shared).or_else(|| self.example_values.get(*key));
            resolved.insert((*key).clone(), value.cloned().unwrap_or_default());
        }
        for key in keys.iter().filter(|k| is_dsn_key(k)) {
            let value = match own.get(*key) {
                Some(value) => value.clone(),
                None => derive_dsn(key, self.example_values.get(*key), &resolved)?,
            };
            resolved.insert((*key).clone(), value);
        }
        Ok(resolved)
    }

    /// Writes the file from the example (or appends what it lacks), unless `dry_run`.
    fn write(&self, resolved: &HashMap<String, String>, dry_run: bool) -> Result<FileReport> {
        let Some(existing) = &self.existing else {
            let mut text = String::new();
            for line in &self.example_lines {
                match line {
                    Line::Var(key) => text.push_str(&format!("{key}={}\n", quote_value(key, &resolved[key])?)),
                    Line::Other(other) => {
                        text.push_str(other);
                        text.push('\n');
                    }
                }
            }
            if !dry_run {
                write_new_file(&self.path, &text)?;
            }
            return Ok(FileReport { path: self.path.clone(), action: FileAction::Created, tightened_mode: false });
        };
        let missing: Vec<&String> = self.keys().into_iter().filter(|k| !existing.contains_key(*k)).collect();
        let mut tightened_mode = false;
        if !missing.is_empty() {
            let mut text = String::from("\n# Added by `cargo xtask env`: keys the example has and this file lacked.\n");
            for key in &missing {
                text.push_str(&format!("{key}={}\n", quote_value(key, &resolved[*key])?));
            }
            if !dry_run {
                tightened_mode = append_to_file(&self.path, &text)?;
            }
        } else if !dry_run {
            tightened_mode = tighten_mode(&self.path)?;
        }
        let action = if missing.is_empty() {
            FileAction::Unchanged
        } else {
            FileAction::Added(missing.into_iter().cloned().collect())
        };
        Ok(FileReport { path: self.path.clone(), action, tightened_mode })
    }
}

/// Shared keys the existing files give different values; secrets are named, never shown.
fn conflicts(targets: &[Target], known: &[HashMap<String, String>]) -> Vec<String> {
    let mut conflicts = Vec::new();
    for (i, a) in known.iter().enumerate() {
        for (j, b) in known.iter().enumerate().skip(i + 1) {
            for key in &shared_keys() {
                if let (Some(x), Some(y)) = (a.get(*key), b.get(*key)) {
                    if x != y {
                        let shown =
                            if SECRET_KEYS.contains(key) { String::new() } else { format!(" (`{x}` and `{y}`)") };
                        conflicts.push(format!(
                            "{key} differs between `{}` and `{}`{shown}; edit one so they agree",
                            targets[i].path.display(),
                            targets[j].path.display()
                        ));
                    }
                }
            }
        }
    }
    conflicts
}

fn sync_files(files: &[(PathBuf, PathBuf)], dry_run: bool) -> Result<SyncReport> {
    let targets: Vec<Target> =
        files.iter().map(|(path, example)| Target::read(path, example)).collect::<Result<_>>()?;
    // What each existing file says about every key, DSN pieces included.
    let known: Vec<HashMap<String, String>> =
        targets.iter().map(|t| t.existing.as_ref().map(with_dsn_pieces).unwrap_or_default()).collect();
    let conflicts = conflicts(&targets, &known);
    // Files that disagree are left exactly as they are: completing one
    // from the other would spread a value the user has not settled.
    let dry_run = dry_run || !conflicts.is_empty();
    let mut reports = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let others: Vec<&HashMap<String, String>> =
            known.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, k)| k).collect();
        let resolved = target.resolve(&known[index], &others)?;
        reports.push(target.write(&resolved, dry_run)?);
    }
    Ok(SyncReport { files: reports, conflicts })
}

fn is_dsn_key(key: &str) -> bool {
    RoleKind::ALL.iter().any(|kind| kind.dsn_var() == key)
}

/// An env file's values plus the pieces its DSNs carry, so that a file with
/// `DATABASE_URL` but no `APP_DB_PASSWORD` gets the password the DSN has.
fn with_dsn_pieces(values: &HashMap<String, String>) -> HashMap<String, String> {
    let mut all = values.clone();
    for kind in RoleKind::ALL {
        let Some(dsn) = values.get(kind.dsn_var()).and_then(|text| Dsn::parse(kind.dsn_var(), text).ok()) else {
            continue;
        };
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                all.entry(key.to_string()).or_insert(value);
            }
        };
        // A DSN on a role's alternate login names the role, not the login.
        let role = dsn.user.as_deref().map(|user| crate::env::alt_login_of(user).unwrap_or(user).to_string());
        put(kind.user_var(), role);
        put(kind.password_var(), dsn.password.as_ref().map(|p| p.expose().to_string()));
        if kind == RoleKind::Runtime {
            put(keys::DB_HOST, dsn.host.as_ref().map(|h| h.to_string()));
            put(keys::DB_PORT, dsn.port.map(|p| p.to_string()));
            put(keys::APP_DB_NAME, dsn.dbname.clone());
        }
    }
    all
}

/// Builds a role's DSN from the file's pieces, keeping the example's scheme
/// and query parameters.
fn derive_dsn(key: &str, example: Option<&String>, values: &HashMap<String, String>) -> Result<String> {
    let kind = RoleKind::ALL.into_iter().find(|k| k.dsn_var() == key).context("BUG: not a DSN key")?;
    let piece = |name: &str| values.get(name).cloned().unwrap_or_default();
    let port = piece(keys::DB_PORT)
        .parse::<u16>()
        .with_context(|| format!("DB_PORT is not a port number, so {key} cannot be built; fix DB_PORT"))?;
    let mut dsn = Dsn::new(
        &piece(kind.user_var()),
        &Secret::new(piece(kind.password_var())),
        &piece(keys::DB_HOST),
        port,
        &piece(keys::APP_DB_NAME),
    );
    if let Some(example) = example.and_then(|text| Dsn::parse(key, text).ok()) {
        dsn.scheme = example.scheme;
        dsn.sslmode = example.sslmode;
        dsn.params = example.params;
    }
    Ok(dsn.expose_url())
}

fn example_lines(text: &str) -> Vec<Line> {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
            match body.split_once('=') {
                Some((key, _))
                    if !trimmed.starts_with('#')
                        && !key.is_empty()
                        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    Line::Var(key.to_string())
                }
                _ => Line::Other(line.to_string()),
            }
        })
        .collect()
}

/// `'value'`, or an error when single quotes cannot carry the value.
pub fn quote_value(key: &str, value: &str) -> Result<String> {
    if let Some(bad) = value.chars().find(|c| matches!(c, '\'' | '\\' | '\n' | '\r')) {
        bail!(
            "{key} contains {bad:?}, which dotenvy, Node's dotenv and docker compose read differently; \
             choose a value without it (inside a DSN, percent-encode it)"
        );
    }
    // docker-compose 1.x expands `${NAME}` even inside single quotes.
    if value.contains("${") {
        bail!(
            "{key} contains `${{`, which docker compose expands even in single quotes; choose a value \
             without it (inside a DSN, percent-encode it)"
        );
    }
    Ok(format!("'{value}'"))
}

/// Replaces the values of the `values` keys that `path` sets, atomically
/// (a temporary file beside it, then a rename; mode `0600`): every other
/// line stays byte for byte as it was, and a replaced line keeps its
/// indentation and `export `. Keys the file does not set are left out.
/// The result is read back before the rename: if any other value would
/// read differently (a value spread over lines, say), nothing is written.
/// Returns the keys replaced. Never prints a value.
pub fn replace_values<'k>(path: &Path, values: &[(&'k str, String)]) -> Result<Vec<&'k str>> {
    match stage_values(path, values)? {
        Some(staged) => staged.commit(),
        None => Ok(Vec::new()),
    }
}

/// A rewritten env file waiting beside the original ([`stage_values`]):
/// [`Staged::commit`] renames it over the original; dropped uncommitted, it
/// is removed and the original stays as it was.
#[must_use = "a staged file changes nothing until it is committed"]
pub struct Staged<'k> {
    path: PathBuf,
    temp: PathBuf,
    replaced: Vec<&'k str>,
    committed: bool,
}

impl<'k> Staged<'k> {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the staged file over the original; returns the keys replaced.
    pub fn commit(mut self) -> Result<Vec<&'k str>> {
        fs::rename(&self.temp, &self.path)
            .with_context(|| format!("replace `{}`; it was not changed", self.path.display()))?;
        self.committed = true;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(std::mem::take(&mut self.replaced))
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// [`replace_values`]'s first half: the rewritten file written and read
/// back beside the original, nothing replaced yet. `None` when the file
/// sets none of the keys.
pub fn stage_values<'k>(path: &Path, values: &[(&'k str, String)]) -> Result<Option<Staged<'k>>> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).with_context(|| format!("read `{}`", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "`{}` is a symbolic link: a rename would replace the link, not the file the app reads; name the file it \
             points to. Nothing was changed",
            path.display()
        );
    }
    let before = crate::env::read_env_file(path)?;
    let text = fs::read_to_string(path).with_context(|| format!("read `{}`", path.display()))?;
    let mut replaced = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = &body[..body.len() - body.trim_start().len()];
        let rest = body.trim_start();
        let (export, rest) = match rest.strip_prefix("export ") {
            Some(after) => (&rest[..rest.len() - after.len()], after),
            None => ("", rest),
        };
        let key = rest.split('=').next().unwrap_or_default().trim_end();
        match values.iter().find(|(k, _)| *k == key && rest[key.len()..].trim_start().starts_with('=')) {
            Some((key, value)) => {
                out.push_str(&format!("{indent}{export}{key}={}{ending}", quote_value(key, value)?));
                replaced.push(*key);
            }
            None => out.push_str(line),
        }
    }
    if replaced.is_empty() {
        return Ok(None);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("env");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    write_new_file(&temp, &out)?;
    let staged = Staged { path: path.to_path_buf(), temp, replaced, committed: false };
    // The file keeps its owner and group (root rewriting an app's file).
    if let Err(error) = std::os::unix::fs::chown(&staged.temp, Some(meta.uid()), Some(meta.gid())) {
        bail!("cannot give the rewritten `{}` its owner back ({error}); nothing was changed", path.display());
    }
    // Read back: the new values, and every other value as it was.
    let after = crate::env::read_env_file(&staged.temp);
    let agrees = after.as_ref().is_ok_and(|after| {
        after.len() == before.len()
            && after.iter().all(|(key, value)| match values.iter().find(|(k, _)| k == key) {
                Some((_, new)) if staged.replaced.contains(&key.as_str()) => value == new,
                _ => before.get(key) == Some(value),
            })
    });
    if !agrees {
        bail!(
            "`{}` would not read back as written (a value spread over several lines?); nothing was changed: \
             put each of {} on one line of its own",
            path.display(),
            staged.replaced.join(", ")
        );
    }
    Ok(Some(staged))
}

/// Writes a role's new login and its password into `path` where the file
/// holds the role's DSN or password variable (`db-rotate`); returns the
/// variables written. A DSN without a password keeps taking the password
/// variable's.
pub fn publish_login(path: &Path, kind: RoleKind, login: &str, password: &Secret) -> Result<Vec<&'static str>> {
    match stage_login(path, kind, login, password)? {
        Some(staged) => staged.commit(),
        None => Ok(Vec::new()),
    }
}

/// [`publish_login`]'s first half ([`stage_values`]): `db-rotate` stages
/// every file before it replaces any, so that a file it cannot write leaves
/// all of them as they were.
pub fn stage_login(path: &Path, kind: RoleKind, login: &str, password: &Secret) -> Result<Option<Staged<'static>>> {
    let vars = crate::EnvVars::load(path, true, &crate::ProcessEnv::none())?;
    let (dsn_var, password_var) = (kind.dsn_var(), kind.password_var());
    let mut values: Vec<(&'static str, String)> = Vec::new();
    if let Some(text) = vars.get(dsn_var) {
        let mut dsn = Dsn::parse(dsn_var, text)?;
        dsn.user = Some(login.to_string());
        if dsn.password.is_some() {
            dsn.password = Some(password.clone());
        }
        values.push((dsn_var, dsn.expose_url()));
    }
    if vars.get(password_var).is_some() {
        values.push((password_var, password.expose().to_string()));
    }
    stage_values(path, &values).with_context(|| format!("publish into `{}`", path.display()))
}

fn write_new_file(path: &Path, text: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create `{}`", path.display()))?;
    let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
    if let Err(error) = written {
        // A partial file may hold secrets: it does not stay.
        let _ = fs::remove_file(path);
        return Err(error).with_context(|| format!("write `{}`", path.display()));
    }
    Ok(())
}

/// Appends through a temporary file and a rename, so an interruption leaves
/// either the old file or the new one. Returns whether the mode was tightened.
fn append_to_file(path: &Path, addition: &str) -> Result<bool> {
    let mut text = fs::read_to_string(path).with_context(|| format!("read `{}`", path.display()))?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(addition);
    let tightened = fs::metadata(path)?.permissions().mode() & 0o077 != 0;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp =
        dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("env"), std::process::id()));
    let _ = fs::remove_file(&temp);
    write_new_file(&temp, &text)?;
    fs::rename(&temp, path).with_context(|| format!("replace `{}`", path.display()))?;
    Ok(tightened)
}

fn tighten_mode(path: &Path) -> Result<bool> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 `{}`", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_values_leave_every_other_line_as_it_was() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.env");
        let text = "# the app's runtime environment\r\nexport DATABASE_URL=\"postgresql://app_user:old@db:5432/app\"\r\n\n  APP_DB_PASSWORD = old\nAPP_DB_SERVICE_PASSWORD='keep me'\nOTHER=\"a b\" # note\n";
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let new = [
            ("DATABASE_URL", "postgresql://app_user_alt:new@db:5432/app".to_string()),
            ("APP_DB_PASSWORD", "new".to_string()),
            ("DATABASE_MIGRATOR_URL", "postgresql://nobody@db/app".to_string()),
        ];
        let replaced = replace_values(&path, &new).unwrap();
        assert_eq!(replaced, ["DATABASE_URL", "APP_DB_PASSWORD"], "a key the file does not set is not added");
        let after = fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            "# the app's runtime environment\r\nexport DATABASE_URL='postgresql://app_user_alt:new@db:5432/app'\r\n\n  APP_DB_PASSWORD='new'\nAPP_DB_SERVICE_PASSWORD='keep me'\nOTHER=\"a b\" # note\n"
        );
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(values(&path)["APP_DB_SERVICE_PASSWORD"], "keep me");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }

    #[test]
    fn pieces_taken_from_a_dsn_on_an_alternate_login_name_the_role() {
        let values =
            HashMap::from([("DATABASE_URL".to_string(), "postgresql://app_user_alt:secret@db:5432/app".to_string())]);
        let pieces = with_dsn_pieces(&values);
        assert_eq!(pieces["APP_DB_USER"], "app_user");
        assert_eq!(pieces["APP_DB_PASSWORD"], "secret");
    }

    #[test]
    fn a_staged_file_changes_nothing_until_committed_and_leaves_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        fs::write(&path, "DATABASE_URL=old\n").unwrap();
        let values = [("DATABASE_URL", "new".to_string())];
        let staged = stage_values(&path, &values).unwrap().expect("the file sets the key");
        assert_eq!(fs::read_to_string(&path).unwrap(), "DATABASE_URL=old\n", "nothing replaced yet");
        drop(staged);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the staged file is gone");
        let staged = stage_values(&path, &values).unwrap().unwrap();
        assert_eq!(staged.commit().unwrap(), ["DATABASE_URL"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "DATABASE_URL='new'\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symbolic_link_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.env");
        fs::write(&target, "APP_DB_PASSWORD='old'\n").unwrap();
        let link = dir.path().join("app.env");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = replace_values(&link, &[("APP_DB_PASSWORD", "new".to_string())]).unwrap_err().to_string();
        assert!(error.contains("is a symbolic link"), "{error}");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "APP_DB_PASSWORD='old'\n");
    }

    #[test]
    fn a_value_that_would_not_read_back_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.env");
        // A double-quoted value over two lines: replacing its first line would
        // leave the second as a line of its own.
        let text = "APP_DB_PASSWORD=\"first\nsecond\"\nOTHER=x\n";
        fs::write(&path, text).unwrap();
        let error = replace_values(&path, &[("APP_DB_PASSWORD", "new".to_string())]).unwrap_err().to_string();
        assert!(error.contains("nothing was changed"), "{error}");
        assert!(!error.contains("new") && !error.contains("first"), "no value is named: {error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let error = replace_values(&path, &[("OTHER", "it's".to_string())]).unwrap_err().to_string();
        assert!(error.starts_with("OTHER contains '\\''"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    const LOCAL_EXAMPLE: &str = "# dev\nDB_HOST=localhost\nDB_PORT=55432\nPOSTGRES_ROOT_USER=postgres\nPOSTGRES_ROOT_PASSWORD=postgres\nAPP_DB_NAME=cogni_template_dev\nAPP_DB_USER=app_user\nAPP_DB_PASSWORD=password\nAPP_DB_SERVICE_USER=app_service\nAPP_DB_SERVICE_PASSWORD=service_password\nAPP_DB_MIGRATOR_USER=app_migrator\nAPP_DB_MIGRATOR_PASSWORD=migrator_password\nDATABASE_URL=\"postgresql://app_user:password@localhost:55432/cogni_template_dev\"\nDATABASE_SERVICE_URL=\"postgresql://app_service:service_password@localhost:55432/cogni_template_dev\"\nDATABASE_MIGRATOR_URL=\"postgresql://app_migrator:migrator_password@localhost:55432/cogni_template_dev\"\nDRIZZLE_MIGRATIONS_SCHEMA=drizzle\n";

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".env.local.example"), LOCAL_EXAMPLE).unwrap();
        fs::write(
            dir.path().join(".env.test.example"),
            LOCAL_EXAMPLE.replace("cogni_template_dev", "cogni_template_stack_test"),
        )
        .unwrap();
        dir
    }

    fn values(path: &Path) -> HashMap<String, String> {
        read_env_file(path).unwrap()
    }

    #[test]
    fn creates_both_files_private_and_equal_to_the_examples() {
        let dir = project();
        let report = sync_env_files(dir.path(), false).unwrap();
        assert!(report.conflicts.is_empty());
        assert!(report.files.iter().all(|f| f.action == FileAction::Created));
        for (file, example) in MANAGED_FILES {
            let path = dir.path().join(file);
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(values(&path), values(&dir.path().join(example)));
        }
        let again = sync_env_files(dir.path(), false).unwrap();
        assert!(again.files.iter().all(|f| f.action == FileAction::Unchanged));
    }

    #[test]
    fn an_upgrading_file_gets_the_migrator_keys_and_keeps_its_values() {
        let dir = project();
        let legacy = "DB_HOST=localhost\nDB_PORT=55432\nPOSTGRES_ROOT_USER=postgres\nPOSTGRES_ROOT_PASSWORD=postgres\nAPP_DB_NAME=cogni_template_dev\nAPP_DB_USER=app_user\nAPP_DB_PASSWORD='my $ecret pw'\nAPP_DB_SERVICE_USER=app_service\nAPP_DB_SERVICE_PASSWORD=service_password\nDATABASE_URL=\"postgresql://app_user:my%20%24ecret%20pw@localhost:55432/cogni_template_dev\"\nDATABASE_SERVICE_URL=\"postgresql://app_service:service_password@localhost:55432/cogni_template_dev\"\nEXTRA=kept";
        let local = dir.path().join(".env.local");
        fs::write(&local, legacy).unwrap();
        fs::set_permissions(&local, fs::Permissions::from_mode(0o644)).unwrap();
        let before = fs::read_to_string(&local).unwrap();

        let report = sync_env_files(dir.path(), false).unwrap();
        assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
        let local_report = &report.files[0];
        assert_eq!(
            local_report.action,
            FileAction::Added(vec![
                "APP_DB_MIGRATOR_USER".into(),
                "APP_DB_MIGRATOR_PASSWORD".into(),
                "DATABASE_MIGRATOR_URL".into(),
                "DRIZZLE_MIGRATIONS_SCHEMA".into()
            ])
        );
        assert!(local_report.tightened_mode);
        let after = fs::read_to_string(&local).unwrap();
        assert!(after.starts_with(&before), "existing lines are kept verbatim");
        assert_eq!(fs::metadata(&local).unwrap().permissions().mode() & 0o777, 0o600);
        let local_values = values(&local);
        assert_eq!(local_values["EXTRA"], "kept");
        assert_eq!(
            local_values["DATABASE_MIGRATOR_URL"],
            "postgresql://app_migrator:migrator_password@localhost:55432/cogni_template_dev"
        );

        // The new test file gets the same role passwords as the dev file.
        let test_values = values(&dir.path().join(".env.test"));
        assert_eq!(test_values["APP_DB_PASSWORD"], "my $ecret pw");
        assert_eq!(
            test_values["DATABASE_URL"],
            "postgresql://app_user:my%20%24ecret%20pw@localhost:55432/cogni_template_stack_test"
        );
        assert_eq!(test_values["APP_DB_NAME"], "cogni_template_stack_test");
    }

    #[test]
    fn disagreeing_files_are_reported_not_overwritten_and_secrets_stay_hidden() {
        let dir = project();
        sync_env_files(dir.path(), false).unwrap();
        let test = dir.path().join(".env.test");
        let text =
            fs::read_to_string(&test).unwrap().replace("APP_DB_PASSWORD='password'", "APP_DB_PASSWORD='other-secret'");
        fs::write(&test, &text).unwrap();
        let report = sync_env_files(dir.path(), false).unwrap();
        assert_eq!(report.conflicts.len(), 1, "{:?}", report.conflicts);
        assert!(report.conflicts[0].starts_with("APP_DB_PASSWORD differs"));
        assert!(!report.conflicts[0].contains("other-secret"));
        assert_eq!(fs::read_to_string(&test).unwrap(), text);
    }

    #[test]
    fn dry_run_writes_nothing() {
        let dir = project();
        let report = sync_env_files(dir.path(), true).unwrap();
        assert!(report.files.iter().all(|f| f.action == FileAction::Created));
        assert!(!dir.path().join(".env.local").exists());
    }

    #[test]
    fn values_single_quotes_cannot_carry_are_refused() {
        for value in ["it's", "back\\slash", "two\nlines", "pa${PATH}"] {
            let error = quote_value("APP_DB_PASSWORD", value).unwrap_err().to_string();
            assert!(error.starts_with("APP_DB_PASSWORD contains"), "{error}");
        }
        assert_eq!(quote_value("K", "pa$word #1").unwrap(), "'pa$word #1'");
    }

    #[test]
    fn a_missing_example_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = sync_env_files(dir.path(), false).unwrap_err().to_string();
        assert!(error.contains(".env.local.example` is missing"), "{error}");
    }
}
