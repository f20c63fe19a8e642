//! The runner against real PostgreSQL servers and the real drizzle-kit.

mod app;
mod common;
mod drizzle_roles;
mod guard;
mod intent;
mod interop;
mod realworld;
mod refusals;
mod runs;
mod search_path;
mod transactions;
