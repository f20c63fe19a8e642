//! The environment contract's keys (spec §2), named once: code names a key
//! through these constants, never by a string literal of its own.

pub const DB_HOST: &str = "DB_HOST";
pub const DB_PORT: &str = "DB_PORT";
pub const POSTGRES_ROOT_USER: &str = "POSTGRES_ROOT_USER";
pub const POSTGRES_ROOT_PASSWORD: &str = "POSTGRES_ROOT_PASSWORD";
pub const DATABASE_ROOT_URL: &str = "DATABASE_ROOT_URL";
pub const PG_TIMEOUT: &str = "PG_TIMEOUT";
pub const APP_DB_NAME: &str = "APP_DB_NAME";
pub const APP_DB_SCHEMAS: &str = "APP_DB_SCHEMAS";
pub const APP_DB_EXTENSIONS: &str = "APP_DB_EXTENSIONS";
pub const APP_DB_USER: &str = "APP_DB_USER";
pub const APP_DB_PASSWORD: &str = "APP_DB_PASSWORD";
pub const APP_DB_SERVICE_USER: &str = "APP_DB_SERVICE_USER";
pub const APP_DB_SERVICE_PASSWORD: &str = "APP_DB_SERVICE_PASSWORD";
pub const APP_DB_MIGRATOR_USER: &str = "APP_DB_MIGRATOR_USER";
pub const APP_DB_MIGRATOR_PASSWORD: &str = "APP_DB_MIGRATOR_PASSWORD";
pub const DATABASE_URL: &str = "DATABASE_URL";
pub const DATABASE_SERVICE_URL: &str = "DATABASE_SERVICE_URL";
pub const DATABASE_MIGRATOR_URL: &str = "DATABASE_MIGRATOR_URL";
pub const DRIZZLE_MIGRATIONS_SCHEMA: &str = "DRIZZLE_MIGRATIONS_SCHEMA";
pub const DRIZZLE_MIGRATIONS_TABLE: &str = "DRIZZLE_MIGRATIONS_TABLE";

/// The keys of the contract, in the order env files list them.
pub const CONTRACT: &[&str] = &[
    DB_HOST,
    DB_PORT,
    POSTGRES_ROOT_USER,
    POSTGRES_ROOT_PASSWORD,
    DATABASE_ROOT_URL,
    PG_TIMEOUT,
    APP_DB_NAME,
    APP_DB_SCHEMAS,
    APP_DB_EXTENSIONS,
    APP_DB_USER,
    APP_DB_PASSWORD,
    APP_DB_SERVICE_USER,
    APP_DB_SERVICE_PASSWORD,
    APP_DB_MIGRATOR_USER,
    APP_DB_MIGRATOR_PASSWORD,
    DATABASE_URL,
    DATABASE_SERVICE_URL,
    DATABASE_MIGRATOR_URL,
    DRIZZLE_MIGRATIONS_SCHEMA,
    DRIZZLE_MIGRATIONS_TABLE,
];
