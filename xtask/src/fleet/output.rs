//! What a fleet run prints: a line per target as it finishes (or a JSON
//! object per target with `--json`), then a summary table; and the JUnit
//! report, one `testsuite` per target.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use audit::ci::xml;
use dbenv::targets::{Target, Targets};
use serde_json::json;

use super::{Done, Verdict};

pub struct Output {
    json: bool,
    command: String,
    width: usize,
    /// One target's line at a time.
    lock: Mutex<()>,
}

fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Ok => "✓",
        Verdict::Problem => "✗",
        Verdict::Error => "!",
        Verdict::NotRun => "-",
    }
}

impl Output {
    pub fn new(targets: &Targets, command: &str, json: bool) -> Output {
        let width = targets.targets.iter().map(|t| t.name.chars().count()).max().unwrap_or(0);
        if !json {
            println!("{command} over {} targets of `{}`", targets.targets.len(), targets.path.display());
        }
        Output { json, command: command.to_string(), width, lock: Mutex::new(()) }
    }

    /// A target finished: its line, or its JSON object.
    pub fn finished(&self, target: &Target, done: &Done) {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(stdout, "{}", object(&self.command, target, done));
        } else {
            let _ = writeln!(
                stdout,
                "  {} {:<width$}  {:<7}  {:>7.2} s  {}",
                mark(done.verdict),
                target.name,
                done.verdict.word(),
                done.elapsed.as_secs_f64(),
                done.summary,
                width = self.width
            );
            if let Some(detail) = &done.detail {
                for line in detail.lines().skip(1) {
                    let _ = writeln!(stdout, "      {line}");
                }
            }
        }
        let _ = stdout.flush();
    }

    /// The table of every target, and what the exit code means.
    pub fn summary(&self, targets: &Targets, results: &[Done], elapsed: Duration, interrupted: bool) {
        let count = |verdict: Verdict| results.iter().filter(|d| d.verdict == verdict).count();
        let (ok, problem, error, not_run) =
            (count(Verdict::Ok), count(Verdict::Problem), count(Verdict::Error), count(Verdict::NotRun));
        let exit = if error + not_run > 0 {
            "exit 1: a target could not run"
        } else if problem > 0 {
            "exit 2: a target found a problem"
        } else {
            "exit 0: every target holds"
        };
        let line = format!(
            "{} targets in {:.2} s: {ok} ok, {problem} found a problem, {error} could not run, {not_run} not run{}; {exit}",
            results.len(),
            elapsed.as_secs_f64(),
            if interrupted { " (interrupted)" } else { "" }
        );
        if self.json {
            eprintln!("{line}");
            return;
        }
        let width = self.width.max("target".len());
        println!("\n{:<width$}  {:<7}  {:>9}  summary", "target", "result", "time");
        for (target, done) in targets.targets.iter().zip(results) {
            println!(
                "{:<width$}  {:<7}  {:>7.2} s  {}",
                target.name,
                done.verdict.word(),
                done.elapsed.as_secs_f64(),
                done.summary
            );
        }
        println!("{line}");
    }
}

/// The JSON object of one target.
pub fn object(command: &str, target: &Target, done: &Done) -> serde_json::Value {
    json!({
        "target": target.name,
        "env_file": target.env_file.display().to_string(),
        "command": command,
        "result": done.verdict.word(),
        "seconds": (done.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "summary": done.summary,
        "detail": done.detail,
        "report": done.json,
    })
}

/// JUnit XML: one `testsuite` per target, named after it, with the
/// command's cases, or one case for the whole command.
pub fn junit(targets: &Targets, command: &str, results: &[Done]) -> String {
    let mut suites = String::new();
    for (target, done) in targets.targets.iter().zip(results) {
        match &done.testsuite {
            Some(suite) => suites.push_str(suite),
            None => suites.push_str(&single_case(command, target, done)),
        }
    }
    // The totals of the cases in the suites (every `<` in text is escaped).
    let count = |element: &str| suites.matches(element).count();
    let (tests, failures, errors, skipped) =
        (count("<testcase "), count("<failure "), count("<error "), count("<skipped "));
    let seconds: f64 = results.iter().map(|d| d.elapsed.as_secs_f64()).sum();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{} {}\" tests=\"{tests}\" failures=\"{failures}\" \
         errors=\"{errors}\" skipped=\"{skipped}\" time=\"{seconds:.3}\">\n{suites}</testsuites>\n",
        xml(command),
        xml(&targets.path.display().to_string()),
    )
}

fn single_case(command: &str, target: &Target, done: &Done) -> String {
    let count = |verdict: Verdict| usize::from(done.verdict == verdict);
    let detail = done.detail.as_deref().unwrap_or(&done.summary);
    let body = match done.verdict {
        Verdict::Ok => format!("      <system-out>{}</system-out>\n", xml(&done.summary)),
        Verdict::Problem => {
            format!("      <failure message=\"{}\" type=\"{command}\">{}</failure>\n", xml(&done.summary), xml(detail))
        }
        Verdict::Error => {
            format!("      <error message=\"{}\" type=\"{command}\">{}</error>\n", xml(&done.summary), xml(detail))
        }
        Verdict::NotRun => format!("      <skipped message=\"{}\"/>\n", xml(&done.summary)),
    };
    format!(
        "  <testsuite name=\"{name}\" tests=\"1\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n    \
         <testcase classname=\"{command}\" name=\"{command} {name}\" time=\"{:.3}\">\n{body}    </testcase>\n  \
         </testsuite>\n",
        count(Verdict::Problem),
        count(Verdict::Error),
        count(Verdict::NotRun),
        done.elapsed.as_secs_f64(),
        done.elapsed.as_secs_f64(),
        name = xml(&target.name),
    )
}
