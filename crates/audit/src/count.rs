//! The one count of the statements `db-check` sends beyond the catalog
//! snapshot: every part of the proof (the catalog audit's own reads, the
//! probes of each role on their threads, the sampling and the tenancy
//! proof) adds to the same counter, which the report prints. It must not
//! grow with the number of objects.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
pub struct QueryCount(AtomicU32);

impl QueryCount {
    /// Counts `statements` more.
    pub fn add(&self, statements: u32) {
        self.0.fetch_add(statements, Ordering::Relaxed);
    }

    /// How many so far.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}
