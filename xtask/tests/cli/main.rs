//! The `xtask` binary run the way a user runs it.

mod check;
mod common;
mod containers;
mod envcheck;
mod faults;
mod fleet;
mod hostile;
mod migrate;
mod pooler;
mod progress;
mod rotate;
mod secrets;
mod setup;
mod standby;
