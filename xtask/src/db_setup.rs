//! `cargo xtask db-setup`: the newcomer's one command. Env files, the local
//! server when nothing answers, provisioning, migrations, and the proof.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use crate::context::Context as Ctx;
use crate::{db_check, db_migrate, db_provision, db_up, env};
use anyhow::{Context, Result};
use dbenv::Host;
use pgcluster::{default_base_dir, port_answers, DevServer};

pub fn run(ctx: &Ctx, env_file: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    println!("==> env files");
    // The project's pair (`.env.local` and `.env.test`) beside each other,
    // or exactly the file named otherwise.
    match env_file.file_name().and_then(|n| n.to_str()) {
        Some(".env.local" | ".env.test") => env::sync(env::directory_of(env_file), false)?,
        _ => env::sync_named(&ctx.root, &[env_file.to_path_buf()], false)?,
    }

    // One load of the environment for provisioning, migrating and checking.
    let env = ctx.load_env(env_file)?;
    let settings = env.settings(ctx)?;
    println!("==> server");
    let local = Host::Tcp(settings.host.clone()).is_local();
    let answers = port_answers(&settings.host, settings.port);
    // Binaries are fetched only when they are needed: nothing answers here.
    let bin = match (local, answers) {
        (true, false) => Some(
            pgcluster::fetch::find_or_fetch(&ctx.local, |line| println!("{line}"))
                .context("nothing answers on DB_PORT and db-up cannot start a server")?,
        ),
        (true, true) => pgcluster::fetch::find_or_cached(&ctx.local),
        (false, _) => None,
    };
    match bin {
        Some(bin) => {
            // db-up's own checks: its server already runs, another server
            // answers on the port, or it starts one (creating it first).
            let base = default_base_dir(&ctx.local, settings.port);
            let server = DevServer::new(&ctx.local, bin, base, settings.port)?;
            let password = settings.admin.dsn.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
            db_up::start(&server, &settings.host, &settings.admin.name, &password).context("start the local server")?;
        }
        None => println!("using the server on {}:{}", settings.host, settings.port),
    }

    println!("==> provision");
    db_provision::provision(&settings, &db_provision::default_options(ctx)?)?;

    println!("==> migrate");
    let config = db_migrate::config(ctx, &env)?;
    let folder = drizzle::folder::read(&ctx.project_migrations())?;
    db_migrate::run_builtin(&config, &folder, false)?;

    println!("==> check");
    let report = db_check::check(ctx, &env, &ctx.project_migrations(), None)?;
    print!("{}", report.to_text());
    if !report.holds() {
        anyhow::bail!("db-check found the model violated (above); `cargo xtask db-provision` fixes what it can");
    }
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
