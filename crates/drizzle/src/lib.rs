//! A migration runner that can swap places with `drizzle-kit migrate`
//! (0.31.x) at any point: the same folder format, the same decoding,
//! splitting and hashing, the same bookkeeping rows and the same batch
//! transaction. Where drizzle is weak it is stricter: a session advisory lock,
//! hash verification, loud refusal of out-of-order entries, NULL
//! `created_at`, duplicates and unknown rows, `lock_timeout`, precise errors,
//! and a positive check that it runs as the migrator.

// House rule: a function fits on a screen (clippy.toml sets the limit).
#![warn(clippy::too_many_lines)]

pub mod bookkeeping;
pub mod config;
pub mod folder;
pub mod grants;
pub mod guard;
pub mod kit;
pub mod refusal;
pub mod run;
pub mod session;
pub mod status;
pub mod transactions;

pub use bookkeeping::{Row, Table, TableState};
pub use config::{Config, Progress, Silent};
pub use folder::{Folder, Migration, BREAKPOINT};
pub use refusal::{Lack, NotTheMigrator, Refusal, Refused};
pub use run::{migrate_builtin, Outcome, RunFailed};
pub use session::{prepare, Prepared};
pub use status::{State, Status};
