//! `db-check` against real servers: a correct database holds; every planted
//! violation is named.

mod common;
mod holds;
mod holes;
mod logins;
mod nothing_changes;
mod policy_file;
mod probe_rows;
mod realworld;
mod sessions;
mod tenant_states;
mod violations;
