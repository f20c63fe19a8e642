//! How runs look on the terminal: progress on stderr, the list of changes on
//! stdout. Nothing printed here ever carries a password or a verifier: the
//! library hands over redacted statements and summaries only.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use roles::{Phase, Plan, Reporter, Step};

/// At most this many change lines per phase; the rest is counted.
const LINES_PER_PHASE: usize = 25;

pub struct Terminal {
    shown: HashMap<Phase, usize>,
    started: Instant,
    verbose: bool,
}

impl Terminal {
    pub fn new(verbose: bool) -> Terminal {
        Terminal { shown: HashMap::new(), started: Instant::now(), verbose }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Closes the phase lists (the "… and N more" lines).
    pub fn finish(&mut self, plan: &Plan) {
        for phase in Phase::ALL {
            let total = plan.steps_of(phase).count();
            let shown = self.shown.get(&phase).copied().unwrap_or(0);
            if total > shown {
                println!("    … and {} more", total - shown);
            }
        }
    }
}

impl Reporter for Terminal {
    fn waiting_for_server(&mut self, elapsed: Duration) {
        eprintln!("waiting for PostgreSQL to accept connections ({} s)…", elapsed.as_secs());
    }

    fn waiting_for_lock(&mut self, holder: Option<i32>) {
        match holder {
            Some(pid) => eprintln!("waiting for another db-provision (server pid {pid}) to finish…"),
            None => eprintln!("waiting for another db-provision to finish…"),
        }
    }

    fn warning(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }

    fn note(&mut self, message: &str) {
        println!("note: {message}");
    }

    fn phase(&mut self, phase: Phase, steps: usize, transactions: usize) {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        println!(
            "==> {}: {steps} change{} in {transactions} transaction{}",
            phase.title(),
            plural(steps),
            plural(transactions)
        );
    }

    fn applied(&mut self, step: &Step) {
        let shown = self.shown.entry(step.phase).or_insert(0);
        if *shown < LINES_PER_PHASE {
            *shown += 1;
            println!("  ✓ {}", step.summary);
            if self.verbose {
                for sql in &step.statements {
                    println!("      {sql}");
                }
            }
        }
    }

    fn progress(&mut self, phase: Phase, done: usize, total: usize) {
        if total > 1 {
            eprintln!("    [{done}/{total}] {} changes committed", phase.title());
            let _ = std::io::stderr().flush();
        }
    }

    fn retry(&mut self, phase: Phase, attempt: u32, reason: &str) {
        eprintln!("    {}: retrying (attempt {attempt}): {reason}", phase.title());
    }
}

/// Prints a plan without running it: every statement, secrets redacted.
pub fn print_plan(plan: &Plan) {
    for phase in Phase::ALL {
        let steps: Vec<&Step> = plan.steps_of(phase).collect();
        if steps.is_empty() {
            continue;
        }
        println!("==> {} ({} change{})", phase.title(), steps.len(), if steps.len() == 1 { "" } else { "s" });
        for step in steps {
            println!("  • {}", step.summary);
            for sql in &step.statements {
                println!("      {sql};");
            }
        }
    }
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
}
