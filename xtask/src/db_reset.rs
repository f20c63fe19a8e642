//! `cargo xtask db-reset`: drop and recreate a test database, provision it,
//! migrate it. Replaces upstream's reset, which truncated tables as the
//! runtime role (impossible once it owns nothing).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::context::{Context, Env};
use crate::flags::DbReset;
use crate::{db_migrate, db_provision};

pub fn run(ctx: &Context, env: &Env, migrations_dir: &Path, flags: &DbReset) -> Result<ExitCode> {
    let settings = env.settings(ctx)?;
    let mut config = db_migrate::config(ctx, env)?;
    db_migrate::apply_flags(&mut config, &flags.runner)?;
    let folder = drizzle::folder::read(migrations_dir)?;
    db_migrate::warn_unlisted(&folder);
    let name = &settings.db_name;
    roles::reset::drop_database(&settings, flags.force)?;
    println!("dropped `{name}`");
    db_provision::provision(&settings, &db_provision::default_options(ctx)?)?;
    db_migrate::run_builtin(&config, &folder, false)?;
    println!("`{name}` is reset: provisioned and migrated");
    Ok(ExitCode::SUCCESS)
}
