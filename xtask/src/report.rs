//! How runs look on the terminal: progress on stderr, the list of changes on
//! stdout. Nothing printed here ever carries a password or a verifier: the
//! library hands over redacted statements and summaries only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dbenv::Wait;
use roles::{Phase, Plan, Reporter, Step};

use crate::progress::Activity;

/// At most this many change lines per phase; the rest is counted.
const LINES_PER_PHASE: usize = 25;

pub struct Terminal {
    shown: HashMap<Phase, usize>,
    started: Instant,
    verbose: bool,
    /// Waiting for the server, then for a phase's commits.
    waiting: Option<Activity>,
    committing: Option<(Phase, Activity)>,
}

impl Terminal {
    pub fn new(verbose: bool) -> Terminal {
        Terminal { shown: HashMap::new(), started: Instant::now(), verbose, waiting: None, committing: None }
    }

    /// The server answered: the wait ends with one line saying how long.
    fn end_wait(&mut self) {
        if let Some(wait) = self.waiting.take() {
            let seconds = wait.elapsed().as_secs_f64();
            wait.finish(Some(&format!("PostgreSQL answered after {seconds:.1} s")));
        }
    }

    /// The phase's commits are done (or the run stopped): the live line
    /// goes, and a log gets the count it reached.
    fn end_commits(&mut self) {
        if let Some((phase, activity)) = self.committing.take() {
            let summary = format!(
                "    {}: {} of {} changes committed in {:.1} s",
                phase.title(),
                activity.done(),
                activity.total().unwrap_or_default(),
                activity.elapsed().as_secs_f64()
            );
            activity.finish(Some(&summary));
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Closes the phase lists (the "… and N more" lines).
    pub fn finish(&mut self, plan: &Plan) {
        self.end_wait();
        self.end_commits();
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
    fn waiting_for_server(&mut self, wait: &Wait) {
        match &mut self.waiting {
            Some(activity) => activity.update(0, ""),
            None => {
                if wait.nothing_listens_locally {
                    eprintln!(
                        "no PostgreSQL server is running on {} (nothing listens there): start one with `cargo xtask \
                         db-up` (or the compose file's `up -d postgres`), or fix DB_HOST/DB_PORT",
                        wait.address
                    );
                }
                self.waiting = Some(Activity::start(
                    format!(
                        "waiting for PostgreSQL on {} to accept connections (up to {} s, PG_TIMEOUT)",
                        wait.address,
                        wait.timeout.as_secs()
                    ),
                    None,
                ));
            }
        }
    }

    fn waiting_for_lock(&mut self, holder: Option<i32>) {
        self.end_wait();
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
        self.end_wait();
        self.end_commits();
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
            let verbose = self.verbose;
            let print = || {
                println!("  ✓ {}", step.summary);
                if verbose {
                    for sql in &step.statements {
                        println!("      {sql}");
                    }
                }
            };
            match &self.committing {
                Some((_, activity)) => activity.suspend(print),
                None => print(),
            }
        }
    }

    fn progress(&mut self, phase: Phase, done: usize, total: usize) {
        if total <= 1 {
            return;
        }
        if self.committing.as_ref().is_none_or(|(current, _)| *current != phase) {
            self.end_commits();
            let label = format!("    {} changes committed", phase.title());
            self.committing = Some((phase, Activity::start(label, Some(total as u64))));
        }
        if let Some((_, activity)) = &mut self.committing {
            activity.update(done as u64, "");
        }
        if done >= total {
            self.end_commits();
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

impl Drop for Terminal {
    /// A run that stops early (an error) clears its live lines and claims
    /// nothing about the server.
    fn drop(&mut self) {
        if let Some(wait) = self.waiting.take() {
            wait.finish(None);
        }
        self.end_commits();
    }
}
