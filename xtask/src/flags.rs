//! Every command-line type of `cargo xtask`, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
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
    /// The env file to read; the process environment overrides it.
    #[arg(long = "env-file", value_name = "PATH", default_value = dbenv::DEFAULT_ENV_FILE, global = true)]
    pub path: PathBuf,
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
    /// The newcomer's one command: env files, the local server, provisioning.
    ///
    /// Example: cargo xtask db-setup
    #[command(name = "db-setup", visible_alias = "db:setup")]
    DbSetup(DbSetup),
    /// Everything CI runs: formatting, clippy with warnings denied, all tests.
    ///
    /// Every step runs and is timed; one summary of failures at the end.
    ///
    /// Example: cargo xtask check
    Check(Check),
}

#[derive(Args, Debug)]
pub struct EnvCmd {
    /// The env files (and their examples) live in this file's directory.
    #[command(flatten)]
    pub env: EnvFile,
    /// Report what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Validate both env files (they parse, agree with each other, keep the roles apart); write nothing.
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
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub lock_timeout: f64,
}

#[derive(Args, Debug)]
pub struct DbSetup {
    #[command(flatten)]
    pub env: EnvFile,
}

#[derive(Args, Debug)]
pub struct Check {}
