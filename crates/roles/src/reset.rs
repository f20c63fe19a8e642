//! Dropping a test database before it is provisioned and migrated again
//! (`db-reset`): upstream's reset truncated tables as the runtime role,
//! which is impossible once it owns nothing.

use anyhow::{bail, Context, Result};
use dbenv::{connect, Settings};

/// Drops the database of `settings` as the admin, ending the sessions
/// still connected (`WITH (FORCE)`, PostgreSQL 13+). Only a database whose
/// name ends in `_test`, unless `force`.
pub fn drop_database(settings: &Settings, force: bool) -> Result<()> {
    let name = &settings.db_name;
    if !name.ends_with("_test") && !force {
        bail!("db-reset drops `{name}`; it resets only databases whose name ends in `_test` (pass --force to reset this one)");
    }
    let mut admin = connect(&settings.admin.dsn, "the admin DSN")?;
    admin
        .batch_execute(&crate::Statement::new(crate::Change::DropDatabase { database: name.clone() }).text())
        .with_context(|| format!("drop database `{name}`"))?;
    Ok(())
}
