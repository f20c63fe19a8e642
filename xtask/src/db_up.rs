//! `cargo xtask db-up` / `db-down`: the local development server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use dbenv::{admin_creds, server_address, Host};

use crate::context::Context as Ctx;
use pgcluster::{default_base_dir, port_answers, DevServer, Status};

/// The dev server for the env file's `DB_HOST`/`DB_PORT`, and the admin.
/// `fetch`: whether missing server binaries may be downloaded (`db-up`), or
/// only installed or already cached ones used (`db-down`).
fn dev_server(ctx: &Ctx, env_file: &Path, fetch: bool) -> Result<(DevServer, String, String, String)> {
    let vars = ctx.load_env_optional(env_file)?.vars;
    let (host, port) = server_address(&vars)?;
    if !Host::Tcp(host.clone()).is_local() {
        bail!(
            "DB_HOST is `{host}`, not this machine: db-up only runs a local server. Start that server yourself, \
             or set DB_HOST=localhost for a local one"
        );
    }
    let admin = admin_creds(&vars, &host, port)?;
    let password = admin.dsn.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
    let bin = if fetch {
        pgcluster::fetch::find_or_fetch(&ctx.local, |line| println!("{line}"))?
    } else {
        pgcluster::fetch::find_or_cached(&ctx.local)
            .context("no PostgreSQL server binaries are installed or cached, so no db-up server can be running here")?
    };
    let server = DevServer::new(&ctx.local, bin, default_base_dir(&ctx.local, port), port)?;
    Ok((server, host, admin.name, password))
}

pub fn up(ctx: &Ctx, env_file: &Path) -> Result<ExitCode> {
    let (server, host, superuser, password) = dev_server(ctx, env_file, true)?;
    start(&server, &host, &superuser, &password)?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the dev server when needed; says what it found. Returns whether
/// it started one.
pub fn start(server: &DevServer, host: &str, superuser: &str, password: &str) -> Result<bool> {
    let address = format!("{host}:{}", server.port);
    match server.status()? {
        Status::Running { pid } => {
            println!("PostgreSQL already runs on {address} (pid {pid}, data in {})", server.datadir().display());
            return Ok(false);
        }
        _ if port_answers(host, server.port) => {
            println!(
                "something already answers on {address} and it is not db-up's server ({}); using it as it is",
                server.datadir().display()
            );
            return Ok(false);
        }
        Status::Absent => {
            println!(
                "creating a PostgreSQL {} cluster in {} (superuser `{superuser}`, scram-sha-256, loopback only)",
                server.bin.major,
                server.datadir().display()
            );
            server.init(superuser, password)?;
        }
        Status::Stopped => {}
    }
    server.start()?;
    println!(
        "started PostgreSQL {} on {address} (data: {}, log: {})",
        server.bin.major,
        server.datadir().display(),
        server.logfile().display()
    );
    Ok(true)
}

pub fn down(ctx: &Ctx, env_file: &Path, purge: bool) -> Result<ExitCode> {
    let (server, host, _, _) = dev_server(ctx, env_file, false)?;
    let address = format!("{host}:{}", server.port);
    if server.stop()? {
        println!("stopped PostgreSQL on {address}");
    } else {
        println!("no db-up server runs on {address} ({})", server.datadir().display());
    }
    if purge {
        if server.purge()? {
            println!("deleted {}", server.base.display());
        } else {
            println!("nothing to delete at {}", server.base.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
