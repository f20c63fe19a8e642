//! `db-provision` against real PostgreSQL servers, one throwaway cluster per test.

mod common;
mod conversion;
mod fresh;
mod input;
mod intent;
mod legacy;
mod locks;
mod logins;
mod managed;
mod passwords;
mod rotation;
mod sessions;
