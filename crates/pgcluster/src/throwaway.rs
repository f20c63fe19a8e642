//! Throwaway clusters for tests: one `postgres` child process on a free port,
//! in a directory of its own in memory (`/dev/shm`; a durable one in
//! `TMPDIR`), gone when the value drops or the test dies.
//!
//! `initdb` runs once per set of binaries into a cached template; each
//! cluster is a copy of it (tens of milliseconds instead of a second). A
//! test binary may keep a prepared snapshot too (provisioned and migrated,
//! say: [`TestCluster::start_prepared`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::osuser::{prepare, OsUser};
use crate::server::{free_port, initdb, postmaster_status, process_alive, wait_ready, InitOptions};
use crate::{LocalEnv, PgBin};

/// The superuser of every throwaway cluster.
pub const SUPERUSER: &str = "postgres";

/// Options for [`TestCluster::start_with`].
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// The binaries; [`PgBin::find`] when `None`.
    pub bin: Option<PgBin>,
    /// Where the binaries, the server's OS user and the temporary
    /// directory are; [`LocalEnv::from_process`] when `None` (a test
    /// harness). A command line passes the one it captured.
    pub local: Option<LocalEnv>,
    /// Extra `-c name=value` server settings (e.g. `log_statement=all`).
    pub settings: Vec<(String, String)>,
    /// Keep PostgreSQL's defaults, fsync included (for benchmarks against
    /// anchors measured on default settings).
    pub durable: bool,
}

/// A running throwaway cluster. Dropping it stops the server and deletes its
/// directory; if the test process dies instead, the server gets `SIGQUIT`
/// from the kernel (parent-death signal) and the next cluster started on this
/// machine removes the directory.
pub struct TestCluster {
    pub bin: PgBin,
    user: Option<OsUser>,
    root: PathBuf,
    child: Child,
    port: u16,
    password: String,
    durable: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestCluster {
    /// A cluster with default settings (plus `fsync=off`).
    pub fn start() -> Result<TestCluster> {
        TestCluster::start_with(ClusterOptions::default())
    }

    pub fn start_with(options: ClusterOptions) -> Result<TestCluster> {
        let (dir, bin, user) = where_to_start(&options)?;
        let (template, password) = template(&dir, &bin, user.as_ref())?;
        TestCluster::start_copy(&template, password, &dir, bin, user, &options)
    }

    /// A cluster copied from a snapshot of a prepared one: the first caller
    /// with this `name` and `key` starts a cluster, runs `prepare` on it,
    /// stops it cleanly and keeps its data directory (under a file lock, so
    /// parallel tests prepare once; `prepare` gets the cluster and hands it
    /// back); every caller then gets a copy. `key`
    /// must change with whatever `prepare` makes: a test passes a digest of
    /// its own binary and its inputs. Older snapshots of `name` go.
    pub fn start_prepared(
        options: ClusterOptions,
        name: &str,
        key: u64,
        prepare: impl FnOnce(TestCluster) -> Result<TestCluster>,
    ) -> Result<TestCluster> {
        let (dir, bin, user) = where_to_start(&options)?;
        let (_, password) = template(&dir, &bin, user.as_ref())?;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        // The template's password is in the name: a snapshot of an older
        // template would not let its superuser in.
        let family = format!(
            "pgcluster-template-u{uid}-{}-{:x}-{name}-",
            bin.major,
            fnv1a(format!("{}|{password}", bin.dir.display()).as_bytes())
        );
        let base = dir.join(format!("{family}{key:x}"));
        let lock_path = dir.join(format!("{family}{key:x}.lock"));
        let exclusive = lock(&lock_path, libc::LOCK_EX)?.context("BUG: a blocking lock that did not lock")?;
        if !base.join("data").join("PG_VERSION").exists() {
            remove_other_snapshots(&dir, &family, &base);
            let cluster = TestCluster::start_with(options.clone())?;
            let cluster = prepare(cluster).with_context(|| format!("prepare the `{name}` cluster snapshot"))?;
            let root = cluster.stop_cleanly()?;
            let _ = fs::remove_dir_all(&base);
            fs::create_dir_all(&base)?;
            fs::set_permissions(&base, fs::Permissions::from_mode(0o755))?;
            fs::rename(root.join("data"), base.join("data"))?;
            let _ = fs::remove_dir_all(&root);
        }
        drop(exclusive);
        // Copies share the snapshot; the lock is held for the copy only.
        let shared = lock(&lock_path, libc::LOCK_SH)?.context("BUG: a blocking lock that did not lock")?;
        if !base.join("data").join("PG_VERSION").exists() {
            bail!("the `{name}` snapshot `{}` went away while it was being copied", base.display());
        }
        let root = new_root(&dir)?;
        copy_tree(&base.join("data"), &root.join("data"))?;
        drop(shared);
        TestCluster::start_in(root, password, bin, user, &options)
    }

    fn start_copy(
        from: &Path,
        password: String,
        dir: &Path,
        bin: PgBin,
        user: Option<OsUser>,
        options: &ClusterOptions,
    ) -> Result<TestCluster> {
        let root = new_root(dir)?;
        copy_tree(from, &root.join("data"))?;
        TestCluster::start_in(root, password, bin, user, options)
    }

    /// Starts the server of `root`, whose `data` is in place.
    fn start_in(
        root: PathBuf,
        password: String,
        bin: PgBin,
        user: Option<OsUser>,
        options: &ClusterOptions,
    ) -> Result<TestCluster> {
        if let Some(user) = &user {
            user.chown(&root)?;
        }
        let (child, port) = start_on_a_free_port(&bin, user.as_ref(), &root, &options.settings, options.durable)?;
        Ok(TestCluster { bin, user, root, child, port, password, durable: options.durable })
    }

    /// Stops the server with a fast shutdown (a checkpoint, so a copy of
    /// the data directory starts without recovery) and hands back its
    /// directory, which the caller now owns.
    fn stop_cleanly(mut self) -> Result<PathBuf> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait()?;
        let root = self.root.clone();
        // Its Drop would signal a reaped process and delete the directory.
        std::mem::forget(self);
        if !status.success() {
            bail!("the server of `{}` did not stop cleanly: {status}", root.display());
        }
        Ok(root)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A hot standby of this cluster: `pg_basebackup -R -c fast` into a
    /// directory of its own, started on a free port, streaming from this
    /// one. Dropped like any throwaway cluster.
    pub fn standby(&self) -> Result<TestCluster> {
        let root = new_root(self.root.parent().context("BUG: a cluster directory without a parent")?)?;
        if let Some(user) = &self.user {
            user.chown(&root)?;
        }
        let mut backup = Command::new(self.bin.path("pg_basebackup"));
        backup
            .arg("-D")
            .arg(root.join("data"))
            .args(["-R", "-c", "fast", "-X", "stream", "-h", "127.0.0.1", "-U", SUPERUSER, "-p"])
            .arg(self.port.to_string())
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null());
        prepare(&mut backup, self.user.as_ref(), true);
        let output = backup.output().context("run pg_basebackup")?;
        if !output.status.success() {
            let _ = fs::remove_dir_all(&root);
            bail!("pg_basebackup failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let (child, port) = start_on_a_free_port(&self.bin, self.user.as_ref(), &root, &[], self.durable)?;
        let (bin, user, password) = (self.bin.clone(), self.user.clone(), self.password.clone());
        Ok(TestCluster { bin, user, root, child, port, password, durable: self.durable })
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn superuser(&self) -> &'static str {
        SUPERUSER
    }

    /// The superuser's password (random per machine).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A superuser URI for `dbname`.
    pub fn admin_url(&self, dbname: &str) -> String {
        format!("postgresql://{SUPERUSER}:{}@127.0.0.1:{}/{dbname}", self.password, self.port)
    }

    /// The cluster's directory (its data, log and helpers like a pooler).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OS user the server runs as (when the tests run as root).
    pub fn os_user(&self) -> Option<&OsUser> {
        self.user.as_ref()
    }

    pub fn datadir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Stops the server abruptly (as a crash or a kill would), keeping the
    /// directory; [`TestCluster::restart`] brings it back.
    pub fn crash(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port after [`TestCluster::crash`].
    pub fn restart(&mut self) -> Result<()> {
        self.child = spawn(&self.bin, self.user.as_ref(), &self.root, self.port, &[], self.durable)?;
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data is thrown away anyway.
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A new cluster directory under `parent`, readable by the server's user.
fn new_root(parent: &Path) -> Result<PathBuf> {
    let root = parent.join(format!(
        "pgcluster-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos()
    ));
    fs::create_dir(&root).with_context(|| format!("create `{}`", root.display()))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
    Ok(root)
}

/// Starts the server of `root` on a free port. A port found free may be
/// taken before the server binds it: tried again on another, then the
/// directory is removed.
fn start_on_a_free_port(
    bin: &PgBin,
    user: Option<&OsUser>,
    root: &Path,
    settings: &[(String, String)],
    durable: bool,
) -> Result<(Child, u16)> {
    let mut last_error = None;
    for _ in 0..5 {
        let port = free_port()?;
        match spawn(bin, user, root, port, settings, durable) {
            Ok(child) => return Ok((child, port)),
            Err(error) => last_error = Some(error),
        }
    }
    let _ = fs::remove_dir_all(root);
    Err(last_error.unwrap_or_else(|| anyhow::format_err!("BUG: no start attempt")))
}

fn spawn(
    bin: &PgBin,
    user: Option<&OsUser>,
    root: &Path,
    port: u16,
    settings: &[(String, String)],
    durable: bool,
) -> Result<Child> {
    let datadir = root.join("data");
    let log_path = root.join("server.log");
    let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    if let Some(user) = user {
        user.chown(&log_path)?;
    }
    let mut command = Command::new(bin.path("postgres"));
    command.arg("-D").arg(&datadir).arg("-p").arg(port.to_string()).args([
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
    ]);
    if !durable {
        // fsync=off only: an OS crash is no concern for throwaway data, but a
        // server crash must keep what was committed (the fault tests rely on it).
        command.args(["-c", "fsync=off"]);
    }
    for (key, value) in settings {
        command.arg("-c").arg(format!("{key}={value}"));
    }
    command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    prepare(&mut command, user, true);
    let mut child = command.spawn().with_context(|| format!("start `{}`", bin.path("postgres").display()))?;
    let ready = wait_ready(&datadir, Duration::from_secs(60), || matches!(child.try_wait(), Ok(None)));
    if let Err(error) = ready {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
        let _ = child.wait();
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let _ = fs::remove_file(datadir.join("postmaster.pid"));
        bail!("{error}; server log:\n{log}");
    }
    Ok(child)
}

/// The cached `initdb` output for these binaries and its superuser password,
/// created once (under a file lock, so parallel tests share one `initdb`).
fn template(temp_dir: &Path, bin: &PgBin, user: Option<&OsUser>) -> Result<(PathBuf, String)> {
    let key = format!("{}-{:x}", bin.major, fnv1a(bin.dir.to_string_lossy().as_bytes()));
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let base = temp_dir.join(format!("pgcluster-template-u{uid}-{key}"));
    let data = base.join("data");
    let password_file = base.join("password");
    let _lock = lock(&temp_dir.join(format!("pgcluster-template-u{uid}-{key}.lock")), libc::LOCK_EX)?;
    if !(data.join("PG_VERSION").exists() && password_file.exists()) {
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base)?;
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755))?;
        if let Some(user) = user {
            user.chown(&base)?;
        }
        let password = format!("pw{:x}{:x}", nanos(), fnv1a(&std::process::id().to_le_bytes()));
        initdb(bin, user, &data, &InitOptions { superuser: SUPERUSER, password: &password, no_sync: true })?;
        fs::write(&password_file, &password)?;
    }
    let password = fs::read_to_string(&password_file)?;
    Ok((data, password))
}

/// A `flock` (`LOCK_EX` or `LOCK_SH`, with `LOCK_NB` to try only) on
/// `path`, released when the file drops; `None` when `LOCK_NB` found it
/// taken. Lock files are never removed: a process waiting on a removed
/// one would hold a lock nobody else sees.
fn lock(path: &Path, how: libc::c_int) -> Result<Option<fs::File>> {
    use std::os::unix::io::AsRawFd;
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: flock on a file descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(lock.as_raw_fd(), how) } != 0 {
        let error = std::io::Error::last_os_error();
        if how & libc::LOCK_NB != 0 && error.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        bail!("lock `{}`: {error}", path.display());
    }
    Ok(Some(lock))
}

/// Removes the snapshots of `family` other than `keep` that nobody is
/// making or copying (their lock is free).
fn remove_other_snapshots(dir: &Path, family: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(family) || name.ends_with(".lock") || path == keep {
            continue;
        }
        if let Ok(Some(_free)) = lock(&dir.join(format!("{name}.lock")), libc::LOCK_EX | libc::LOCK_NB) {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The directory, binaries and OS user a cluster starts with, after
/// removing what dead test processes left there.
fn where_to_start(options: &ClusterOptions) -> Result<(PathBuf, PgBin, Option<OsUser>)> {
    let local = options.local.clone().unwrap_or_else(LocalEnv::from_process);
    let bin = match &options.bin {
        Some(bin) => bin.clone(),
        None => PgBin::find(&local)?,
    };
    let user = OsUser::for_server(&local)?;
    let dir = throwaway_dir(&local, options.durable);
    remove_stale_clusters(&dir);
    Ok((dir, bin, user))
}

/// Where a throwaway cluster lives: in memory (`/dev/shm`, when it is a
/// world-writable sticky directory with 1 GiB free) unless it is durable, else in
/// `TMPDIR`. Creating a file costs about a millisecond on some virtual
/// disks, and a cluster is a thousand files: copying one took a second of
/// system time per test. A durable cluster (the benchmarks, measured
/// against anchors on a real disk) stays on disk, where fsync means
/// something.
fn throwaway_dir(local: &LocalEnv, durable: bool) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    let in_memory =
        fs::metadata(shm).is_ok_and(|m| m.is_dir() && m.mode() & 0o1777 == 0o1777) && free_bytes(shm) >= 1 << 30;
    if !durable && in_memory {
        shm.to_path_buf()
    } else {
        local.temp_dir.clone()
    }
}

/// The bytes free for us under `path` (0 when unknown): a container's
/// `/dev/shm` is often 64 MiB, too small for clusters beside the
/// servers' own shared memory.
fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return 0;
        }
        stat.f_bavail as u64 * stat.f_frsize as u64
    }
}

/// Copies the template with `cp -a`, which keeps modes and (as root) owners.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status =
        Command::new("cp").arg("-a").arg(from).arg(to).status().context("run `cp -a` to copy the cluster template")?;
    if !status.success() {
        bail!("`cp -a {} {}` failed", from.display(), to.display());
    }
    Ok(())
}

/// Removes clusters left by test processes that died without dropping them.
/// Only directories of this naming scheme whose creating process is gone,
/// and owned by us, are touched.
fn remove_stale_clusters(temp_dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let Ok(entries) = fs::read_dir(temp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("pgcluster-") else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|pid| pid.parse::<i32>().ok()) else {
            continue;
        };
        let path = entry.path();
        let owned_by_us = fs::metadata(&path).is_ok_and(|m| m.uid() == uid || uid == 0);
        if !owned_by_us || owner == std::process::id() as i32 || process_alive(owner) {
            continue;
        }
        if let Some((server, _)) = postmaster_status(&path.join("data")) {
            if process_alive(server) {
                // SAFETY: plain kill(2); the server belongs to a dead test of ours.
                unsafe { libc::kill(server, libc::SIGQUIT) };
                continue;
            }
        }
        let _ = fs::remove_dir_all(&path);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |hash, byte| (hash ^ *byte as u64).wrapping_mul(0x100000001b3))
}
