//! The runner against real PostgreSQL servers and the real drizzle-kit.

mod app;
mod common;
mod interop;
mod refusals;
mod runs;
mod transactions;
