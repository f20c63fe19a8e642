//! Drizzle's bookkeeping table, `"drizzle"."__drizzle_migrations"` by default:
//! `id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint`, one row
//! per applied migration.

use std::fmt;

use anyhow::{Context, Result};
use dbenv::quote_ident;
use postgres::types::Type;
use postgres::GenericClient;

/// Where the bookkeeping lives (`DRIZZLE_MIGRATIONS_SCHEMA`/`_TABLE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
}

impl Table {
    pub fn new(schema: &str, name: &str) -> Table {
        Table { schema: schema.to_string(), name: name.to_string() }
    }

    /// `"schema"."name"` for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The session advisory lock every run takes: FNV-1a (64 bit) of
    /// `drizzle-migrations:<schema>.<table>`, in the app database. Documented
    /// so other tools can take the same lock.
    pub fn lock_key(&self) -> i64 {
        let text = format!("drizzle-migrations:{}.{}", self.schema, self.name);
        text.bytes().fold(0xcbf29ce484222325u64, |hash, byte| (hash ^ byte as u64).wrapping_mul(0x100000001b3)) as i64
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: i32,
    pub hash: String,
    pub created_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableState {
    /// No table yet: nothing applied.
    Missing,
    Present {
        rows: Vec<Row>,
        /// drizzle-kit 1.0's layout (`name`, `applied_at`): read, never written.
        has_name_column: bool,
    },
}

impl TableState {
    pub fn rows(&self) -> &[Row] {
        match self {
            TableState::Missing => &[],
            TableState::Present { rows, .. } => rows,
        }
    }

    pub fn is_drizzle_v1(&self) -> bool {
        matches!(self, TableState::Present { has_name_column: true, .. })
    }
}

/// Reads the table without creating it: two queries.
pub fn read(client: &mut impl GenericClient, table: &Table) -> Result<TableState> {
    let columns: Option<Vec<String>> = client
        .query_typed_one(
            "SELECT (SELECT ARRAY(SELECT a.attname::text FROM pg_attribute a \
                                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2)",
            &[(&table.schema, Type::TEXT), (&table.name, Type::TEXT)],
        )
        .context("look for the bookkeeping table")?
        .get(0);
    let Some(columns) = columns else { return Ok(TableState::Missing) };
    let rows = client
        .query_typed(&format!("SELECT id, hash, created_at FROM {} ORDER BY id", table.sql()), &[])
        .with_context(|| format!("read the bookkeeping table `{table}`"))?
        .iter()
        .map(|r| Row { id: r.get(0), hash: r.get(1), created_at: r.get(2) })
        .collect();
    Ok(TableState::Present { rows, has_name_column: columns.iter().any(|c| c == "name") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_depends_on_the_table() {
        let default = Table::new("drizzle", "__drizzle_migrations");
        assert_eq!(default.lock_key(), Table::new("drizzle", "__drizzle_migrations").lock_key());
        assert_ne!(default.lock_key(), Table::new("other", "__drizzle_migrations").lock_key());
        assert_eq!(default.sql(), "\"drizzle\".\"__drizzle_migrations\"");
    }
}
