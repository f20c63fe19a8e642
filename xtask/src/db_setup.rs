//! `cargo xtask db-setup`: the newcomer's one command. Env files, the local
//! server when nothing answers, then provisioning.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use dbenv::Host;
use pgcluster::{default_base_dir, port_answers, DevServer, PgBin};
use crate::{db_provision, db_up, env};

pub fn run(env_file: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    println!("==> env files");
    env::sync(env::directory_of(env_file), false)?;

    let settings = db_provision::load_settings(env_file)?;
    println!("==> server");
    let local = Host::Tcp(settings.host.clone()).is_local();
    if local && !port_answers(&settings.host, settings.port) {
        let server = DevServer::new(PgBin::find()?, default_base_dir(settings.port), settings.port)?;
        let password = settings.admin.dsn.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        db_up::start(&server, &settings.host, &settings.admin.name, &password).context("start the local server")?;
    } else {
        println!("using the server on {}:{}", settings.host, settings.port);
    }

    println!("==> provision");
    db_provision::provision(&settings, &roles::Options::default())?;
    println!(
        "db-setup done in {:.1} s: `{}` on {}:{} is ready (runtime DSN: {})",
        started.elapsed().as_secs_f64(),
        settings.db_name,
        settings.host,
        settings.port,
        settings.runtime.dsn
    );
    Ok(ExitCode::SUCCESS)
}
