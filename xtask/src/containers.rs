//! `cargo xtask check --containers`: the compose path users run, with a real
//! Docker engine, exactly as docs/containers.md shows it.
//!
//! 1. An engine: the one that answers, or `dockerd` started here (installed
//!    with apt when missing, as root) and stopped by its PID at the end.
//! 2. The base images the project's files name, pulled or stood in for
//!    (`standins`).
//! 3. The stack, from an env file whose passwords need quoting and
//!    percent-encoding: `up -d postgres`, `run --rm db-provision`,
//!    `run --rm db-migrate`; from the host, the task's `psql` denial and
//!    `db-check`; a second run of each one-shot service changes nothing;
//!    the `db-migrate` container holds no admin or runtime credential; the
//!    runtime image runs as a non-root user. `down -v` always runs.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dbenv::{envfile::quote_value, keys, Dsn, Secret};
use xshell::{cmd, Shell};

use crate::context::Context as Ctx;
use crate::host::{apt_install, require_root, which};
use crate::{db_check, standins};

const COMPOSE_FILE: &str = "platform/infra/services/runtime/docker-compose.dev.yml";
/// Compose projects of this tier are named `xtask-containers-<pid>`, so
/// nothing of a user's `runtime` stack, or of another run, is touched.
const PROJECT_PREFIX: &str = "xtask-containers";

/// The environment docker-compose.dev.yml gives `db-migrate`, in order:
/// the migrator's credentials and the runtime roles' names, nothing else
/// (the tidy test reads the file against it; the tier, the container).
pub const MIGRATE_ENVIRONMENT: &[&str] = &[
    keys::DATABASE_MIGRATOR_URL,
    keys::APP_DB_MIGRATOR_PASSWORD,
    keys::APP_DB_SCHEMAS,
    keys::APP_DB_USER,
    keys::APP_DB_SERVICE_USER,
    keys::DRIZZLE_MIGRATIONS_SCHEMA,
    keys::DRIZZLE_MIGRATIONS_TABLE,
];

/// What Docker sets in every container.
const DOCKER_ENVIRONMENT: &[&str] = &["PATH", "HOSTNAME", "HOME", "TERM"];

/// Passwords with what breaks naive handling: URL delimiters (`@ : / ? #`),
/// `%`, `&`, `$`, a space, double quotes. Each role has its own, and every
/// one of them must log in.
const PASSWORDS: [(&str, &str); 4] = [
    (keys::POSTGRES_ROOT_PASSWORD, "root p@ss/w:rd?#1"),
    (keys::APP_DB_PASSWORD, "user p@ss:w/rd?#%&$1"),
    (keys::APP_DB_SERVICE_PASSWORD, "svc \"p@ss\" w%25rd#/?"),
    (keys::APP_DB_MIGRATOR_PASSWORD, "mig p@ss:w/rd?#%&=$x"),
];

/// Set by SIGINT or SIGTERM during the tier: the run stops at the next
/// step and still tears the stack down and stops the engine it started.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run(ctx: &Ctx) -> Result<()> {
    let sh = &ctx.sh;
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; the previous handlers are not needed afterwards
    // (the process ends when `check` returns).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let started = Instant::now();
    let _engine = Engine::ensure(sh)?;
    println!("  engine ready ({:.1} s)", started.elapsed().as_secs_f64());
    let images = Instant::now();
    standins::ensure(sh)?;
    println!("  base images ready ({:.1} s)", images.elapsed().as_secs_f64());
    let stack = Stack::new(sh)?;
    let result = stack.exercise(ctx);
    stack.down(sh);
    // SAFETY: restores the default dispositions set aside above.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    result?;
    println!("  container tier passed ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// The Docker engine for the tier. Dropping it stops `dockerd` if, and only
/// if, this run started it.
struct Engine {
    started: Option<Child>,
}

impl Engine {
    fn ensure(sh: &Shell) -> Result<Engine> {
        if answers(sh) {
            println!("  a Docker engine answers; using it");
            return Ok(Engine { started: None });
        }
        let missing: Vec<&str> = [("dockerd", "docker.io"), ("docker-compose", "docker-compose")]
            .into_iter()
            .filter(|(program, _)| which(program).is_none())
            .map(|(_, package)| package)
            .collect();
        if !missing.is_empty() {
            require_root(&format!(
                "install {} (no Docker engine answers and none is installed)",
                missing.join(" and ")
            ))?;
            apt_install(sh, &missing)?;
        }
        require_root("start dockerd (no Docker engine answers)")?;
        let dockerd = which("dockerd").context("dockerd is not on PATH after installing docker.io")?;
        let dir = sh.current_dir().join("target/containers");
        sh.create_dir(&dir)?;
        let log = dir.join("dockerd.log");
        let mut command = Command::new(&dockerd);
        command.stdin(Stdio::null()).stdout(File::create(&log)?).stderr(File::create(&log)?);
        // Its own process group: a Ctrl-C does not kill the engine under a
        // half-torn-down stack; the tier notes the signal, tears the stack
        // down, and the guard stops the engine.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().with_context(|| format!("start {}", dockerd.display()))?;
        println!("  started dockerd (PID {}), log {}", child.id(), log.display());
        // From here on, any early return stops it (Drop).
        let mut engine = Engine { started: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if answers(sh) {
                return Ok(engine);
            }
            interrupted()?;
            if let Some(status) = engine.started.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                engine.started = None;
                bail!("dockerd exited ({status}) before answering; see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!("dockerd did not answer within 60 s; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Some(child) = &mut self.started else { return };
        let pid = child.id();
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                println!("  stopped dockerd (PID {pid})");
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.kill();
        let _ = child.wait();
        println!("  killed dockerd (PID {pid}): it did not stop within 30 s");
    }
}

fn answers(sh: &Shell) -> bool {
    cmd!(sh, "docker info").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// The compose stack of one run, with its env file.
struct Stack {
    _dir: tempfile::TempDir,
    project: String,
    env_file: PathBuf,
    port: u16,
    db_name: String,
}

impl Stack {
    fn new(sh: &Shell) -> Result<Stack> {
        let dir = tempfile::Builder::new().prefix("xtask-containers-").tempdir()?;
        let port = free_port()?;
        let env_file = dir.path().join(".env.local");
        let example = std::fs::read_to_string(sh.current_dir().join(".env.local.example"))?;
        let text = env_text(&example, port)?;
        std::fs::write(&env_file, text)?;
        let db_name = "cogni_template_dev".to_string();
        let project = format!("{PROJECT_PREFIX}-{}", std::process::id());
        Ok(Stack { _dir: dir, project, env_file, port, db_name })
    }

    /// `docker-compose -f <file> --env-file <env> <args…>`, as docs/containers.md
    /// shows it, in this run's project; output captured (it is printed by
    /// the caller, and holds no secret: the tool never prints one).
    fn compose(&self, sh: &Shell, args: &[&str]) -> Result<Output> {
        let env_file = &self.env_file;
        cmd!(sh, "docker-compose -f {COMPOSE_FILE} --env-file {env_file} {args...}")
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .quiet()
            .ignore_status()
            .output()
            .context("run docker-compose")
    }

    /// Runs a compose command that must succeed, prints its output, and
    /// returns it (standard output, then standard error).
    fn step(&self, sh: &Shell, what: &str, args: &[&str]) -> Result<String> {
        interrupted()?;
        let started = Instant::now();
        println!("  $ docker-compose -f {COMPOSE_FILE} --env-file <env> {}", args.join(" "));
        let output = self.compose(sh, args)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stdout.lines().chain(stderr.lines()) {
            println!("    {line}");
        }
        if !output.status.success() {
            bail!("{what} failed ({})", output.status);
        }
        println!("  {what}: ok ({:.1} s)", started.elapsed().as_secs_f64());
        Ok(format!("{stdout}{stderr}"))
    }

    fn exercise(&self, ctx: &Ctx) -> Result<()> {
        let sh = &ctx.sh;
        // `run` builds an image only when it is missing; `build` brings it
        // up to date with the sources (from the layer cache when nothing
        // changed).
        let built = self.step(sh, "build", &["--profile", "bootstrap", "build"])?;
        prune_build_stages(sh, &built);
        self.step(sh, "postgres up", &["up", "-d", "postgres"])?;
        let provision = self.step(sh, "db-provision", &["--profile", "bootstrap", "run", "--rm", "db-provision"])?;
        if provision.contains("nothing to change") {
            bail!("the first db-provision on a new server changed nothing");
        }
        // db-migrate depends on db-provision completing, so compose runs
        // provisioning once more first (its output is not shown; the second
        // explicit run below is the one checked to change nothing).
        self.step(sh, "db-migrate", &["--profile", "bootstrap", "run", "--rm", "db-migrate"])?;

        self.psql_denial(sh)?;
        let env = ctx.load_env(&self.env_file)?;
        let report = db_check::check(ctx, &env, &ctx.project_migrations(), None)?;
        print!("{}", report.to_text());
        if !report.holds() {
            bail!("db-check from the host: the model does not hold on the compose stack");
        }

        let again = self.step(sh, "db-provision again", &["--profile", "bootstrap", "run", "--rm", "db-provision"])?;
        if !again.contains("nothing to change") {
            bail!("a second db-provision should find nothing to change");
        }
        let migrate =
            self.step(sh, "db-migrate again", &["--profile", "bootstrap", "run", "--rm", "--no-deps", "db-migrate"])?;
        if !migrate.contains("nothing to apply") {
            bail!("a second db-migrate should find nothing pending");
        }
        self.migrate_environment(sh)?;
        self.runtime_image(sh)
    }

    /// The task's own acceptance check, through the published port.
    fn psql_denial(&self, sh: &Shell) -> Result<()> {
        let port = self.port.to_string();
        let db = &self.db_name;
        let password = PASSWORDS[1].1;
        let output =
            cmd!(sh, "psql -h 127.0.0.1 -p {port} -U app_user -d {db} -c 'CREATE TABLE _test_ddl_check (id int);'")
                .env("PGPASSWORD", password)
                .quiet()
                .ignore_status()
                .output()
                .context("run psql (install postgresql-client)")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("ERROR:  permission denied for schema public") {
            bail!("psql as app_user: expected `ERROR:  permission denied for schema public`, got: {stderr}");
        }
        println!("  psql as app_user from the host: {}", stderr.lines().next().unwrap_or_default());
        Ok(())
    }

    /// What the `db-migrate` container holds: the migrator's credentials and
    /// names, nothing of the admin or the runtime roles.
    fn migrate_environment(&self, sh: &Shell) -> Result<()> {
        let output = self.compose(
            sh,
            &["--profile", "bootstrap", "run", "--rm", "--no-deps", "--entrypoint", "env", "db-migrate"],
        )?;
        if !output.status.success() {
            bail!("reading db-migrate's environment failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        // Never printed: it holds the migrator's password.
        let environment = String::from_utf8_lossy(&output.stdout);
        let names: Vec<&str> = environment.lines().filter_map(|line| line.split_once('=')).map(|(k, _)| k).collect();
        // An allow-list: what the compose file gives it, and what Docker
        // itself sets.
        let allowed = |name: &&str| MIGRATE_ENVIRONMENT.contains(name) || DOCKER_ENVIRONMENT.contains(name);
        if let Some(extra) = names.iter().find(|name| !allowed(name)) {
            bail!("the db-migrate container's environment holds {extra}, which it must not need");
        }
        for (var, password) in &PASSWORDS[..3] {
            if environment.contains(password) || environment.contains(&dbenv::percent_encode(password)) {
                bail!("the db-migrate container's environment holds the value of {var}");
            }
        }
        if !names.contains(&keys::DATABASE_MIGRATOR_URL) {
            bail!("the db-migrate container's environment has no DATABASE_MIGRATOR_URL");
        }
        println!("  db-migrate's environment: {}", names.join(" "));
        Ok(())
    }

    /// The runtime image: a non-root user, no secret in its configuration,
    /// and its size.
    fn runtime_image(&self, sh: &Shell) -> Result<()> {
        // Compose v1 names a built image `<project>_<service>`, v2
        // `<project>-<service>`.
        let image = [format!("{}_db-migrate", self.project), format!("{}-db-migrate", self.project)]
            .into_iter()
            .find(|name| cmd!(sh, "docker image inspect {name}").quiet().ignore_stdout().ignore_stderr().run().is_ok())
            .context("the db-migrate image is not there after the build")?;
        let inspect = |format: &str| cmd!(sh, "docker image inspect --format {format} {image}").quiet().read();
        let user = inspect("{{.Config.User}}")?;
        if user.is_empty() || user == "root" || user == "0" {
            bail!("the runtime image runs as root (USER `{user}`)");
        }
        let uid = cmd!(sh, "docker run --rm --entrypoint id {image} -u").quiet().read()?;
        if uid.trim() == "0" {
            bail!("the runtime image runs as uid 0");
        }
        let env = inspect("{{json .Config.Env}}")?;
        for (var, password) in &PASSWORDS {
            if env.contains(var) || env.contains(password) {
                bail!("the runtime image's configuration holds {var}");
            }
        }
        let version = cmd!(sh, "docker run --rm --entrypoint xtask {image} --version").quiet().read()?;
        let size: u64 = inspect("{{.Size}}")?.trim().parse()?;
        println!(
            "  runtime image: user {user} (uid {}), `{}` starts, {:.1} MB",
            uid.trim(),
            version.trim(),
            size as f64 / 1e6
        );
        Ok(())
    }

    fn down(&self, sh: &Shell) {
        // The images go too (the build cache keeps their layers).
        match self.compose(sh, &["--profile", "bootstrap", "down", "-v", "--rmi", "local", "--remove-orphans"]) {
            Ok(output) if output.status.success() => println!("  stack down (volumes and images removed)"),
            Ok(output) => eprintln!("  docker-compose down failed: {}", String::from_utf8_lossy(&output.stderr)),
            Err(error) => eprintln!("  docker-compose down failed: {error:#}"),
        }
    }
}

/// Build stages of earlier runs stay behind as dangling images of about
/// 1.5 GB each. This run's stage (named in the legacy builder's output after
/// the `cargo build` step) stays as the next run's layer cache; the others
/// with the stage's label go. Without that name nothing is removed.
fn prune_build_stages(sh: &Shell, build_output: &str) {
    let Some(keep) = build_stage_id(build_output) else { return };
    let label = "label=org.opencontainers.image.title=xtask-build-stage";
    let Ok(ids) = cmd!(sh, "docker images -q --no-trunc --filter dangling=true --filter {label}").quiet().read() else {
        return;
    };
    for id in ids.lines().map(str::trim).filter(|id| !id.trim_start_matches("sha256:").starts_with(&keep)) {
        let _ = cmd!(sh, "docker rmi {id}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// The image id printed after the `RUN cargo build` step.
fn build_stage_id(output: &str) -> Option<String> {
    let mut lines = output.lines().skip_while(|line| !line.contains("RUN cargo build"));
    lines.next()?;
    lines.map(str::trim).filter_map(|line| line.strip_prefix("---> ")).find_map(|rest| {
        let id = rest.trim();
        (id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `.env.local.example` for this stack: its port, and the hostile passwords
/// written as `cargo xtask env` writes values (single-quoted; percent-encoded
/// inside DSNs).
fn env_text(example: &str, port: u16) -> Result<String> {
    let mut lines = Vec::new();
    for line in example.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or_default();
        let replaced = match key {
            keys::DB_PORT => format!("DB_PORT={port}"),
            keys::DATABASE_URL => dsn_line(key, "app_user", PASSWORDS[1].1, port)?,
            keys::DATABASE_SERVICE_URL => dsn_line(key, "app_service", PASSWORDS[2].1, port)?,
            keys::DATABASE_MIGRATOR_URL => dsn_line(key, "app_migrator", PASSWORDS[3].1, port)?,
            _ => match PASSWORDS.iter().find(|(var, _)| *var == key) {
                Some((var, password)) => format!("{var}={}", quote_value(var, password)?),
                None => line.to_string(),
            },
        };
        lines.push(replaced);
    }
    Ok(lines.join("\n") + "\n")
}

fn dsn_line(key: &str, user: &str, password: &str, port: u16) -> Result<String> {
    let dsn = Dsn::new(user, &Secret::new(password), "localhost", port, "cogni_template_dev");
    Ok(format!("{key}={}", quote_value(key, &dsn.expose_url())?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_build_stage_is_found_in_the_legacy_builders_output() {
        let output = "Step 3/12 : COPY . .\n ---> Using cache\n ---> 1111aaaa2222\nStep 4/12 : RUN cargo build --release --locked -p xtask\n ---> Running in 9f9f9f9f9f9f\n   Compiling xtask\nRemoving intermediate container 9f9f9f9f9f9f\n ---> 5d32be559b6a\nStep 5/12 : FROM debian:bookworm-slim\n ---> 5ea4ee4ac5de\n";
        assert_eq!(build_stage_id(output).as_deref(), Some("5d32be559b6a"));
        let cached = "Step 4/12 : RUN cargo build --release --locked -p xtask\n ---> Using cache\n ---> abcdef012345\n";
        assert_eq!(build_stage_id(cached).as_deref(), Some("abcdef012345"));
        assert_eq!(build_stage_id("BuildKit output without steps"), None);
    }

    #[test]
    fn the_env_file_reads_back_with_the_hostile_passwords() {
        let example = std::fs::read_to_string(crate::project_root().join(".env.local.example")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.local");
        std::fs::write(&path, env_text(&example, 54321).unwrap()).unwrap();
        let vars = dbenv::EnvVars::load(&path, true, &dbenv::ProcessEnv::none()).unwrap();
        for (var, password) in PASSWORDS {
            assert_eq!(vars.get(var), Some(password), "{var}");
        }
        let settings = dbenv::Settings::from_env(&vars).unwrap();
        assert_eq!(settings.port, 54321);
        assert_eq!(settings.role(dbenv::RoleKind::Migrator).password.expose(), PASSWORDS[3].1);
        assert!(Path::new(COMPOSE_FILE).is_relative());
    }
}
