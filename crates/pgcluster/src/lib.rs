//! Local PostgreSQL servers: finding the binaries, `initdb` and `pg_ctl` as an
//! unprivileged OS user when run as root, the development server of
//! `cargo xtask db-up`, and throwaway clusters for tests.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

mod bin;
mod dev;
pub mod fetch;
mod local;
mod osuser;
mod pooler;
mod server;
mod throwaway;

pub use bin::PgBin;
pub use dev::{default_base_dir, DevServer, Status};
pub use local::LocalEnv;
pub use osuser::OsUser;
pub use pooler::{auth_setup, PoolMode, PoolerOptions, TestPooler, AUTH_QUERY, AUTH_USER};
pub use server::{data_dir_major, free_port, initdb, port_answers, postmaster_status, process_alive, InitOptions};
pub use throwaway::{ClusterOptions, TestCluster, SUPERUSER};
