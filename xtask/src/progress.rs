//! Progress of long steps, shaped by where it is shown. On a terminal: one
//! live line per step (indicatif) with counts, rate and elapsed time,
//! cleared when the step ends. In a log (stderr is not a terminal): a start
//! line, at most one line every [`LOG_EVERY`], and the caller's summary.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The longest a log goes without a progress line during a long step.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Activity {
    label: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Activity {
    /// Starts a step of `total` items (`None`: a wait, shown as a spinner).
    pub fn start(label: impl Into<String>, total: Option<u64>) -> Activity {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, {elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_message(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            match total {
                Some(total) => eprintln!("{label}: {total} to do"),
                None => eprintln!("{label}…"),
            }
        }
        let now = Instant::now();
        Activity { label, bar, total, done: 0, started: now, last_line: now }
    }

    /// `done` items so far; `current` names the one in hand.
    pub fn update(&mut self, done: u64, current: &str) {
        self.done = done;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            if !current.is_empty() {
                bar.set_message(format!("{}: {current}", self.label));
            }
            return;
        }
        let now = Instant::now();
        if let Some(line) = log_line(&self.label, done, self.total, self.started, self.last_line, now) {
            eprintln!("{line}");
            self.last_line = now;
        }
    }

    /// Prints around the live line (which would otherwise be torn).
    pub fn suspend(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn total(&self) -> Option<u64> {
        self.total
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the step: the live line goes; the summary, if any, stays.
    pub fn finish(self, summary: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(summary) = summary {
            eprintln!("{summary}");
        }
    }
}

/// The log line due at `now`, if one is due: never more often than
/// [`LOG_EVERY`].
fn log_line(
    label: &str,
    done: u64,
    total: Option<u64>,
    started: Instant,
    last: Instant,
    now: Instant,
) -> Option<String> {
    if now.duration_since(last) < LOG_EVERY {
        return None;
    }
    let elapsed = now.duration_since(started).as_secs_f64();
    Some(match total {
        Some(total) => {
            let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
            format!("{label}: {done}/{total} ({rate:.0}/s, {elapsed:.0} s)")
        }
        None => format!("{label}: still waiting ({elapsed:.0} s)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gets_a_line_every_few_seconds_at_most() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Ticks every 100 ms for 30 s: one line per LOG_EVERY.
        let mut last = start;
        let mut lines = Vec::new();
        for tick in 1..=300u64 {
            if let Some(line) = log_line("applying migrations", tick, Some(300), start, last, at(tick * 100)) {
                lines.push(line);
                last = at(tick * 100);
            }
        }
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines[0], "applying migrations: 50/300 (10/s, 5 s)");
        let wait = log_line("waiting for PostgreSQL on localhost:5432", 0, None, start, start, at(5000));
        assert_eq!(wait.as_deref(), Some("waiting for PostgreSQL on localhost:5432: still waiting (5 s)"));
    }
}
