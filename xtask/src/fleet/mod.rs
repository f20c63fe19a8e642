//! `--targets FILE`: one command over a fleet of databases, each target
//! failing alone. The file is read and checked before any target runs
//! (`dbenv::targets`); then the canaries run, then the rest, `--parallel`
//! at a time. Provisioning runs the first target of each server before that
//! server's others, so the cluster-wide part (the roles) converges once and
//! the others find nothing to do there. Ctrl-C starts no new target and
//! lets the running ones finish (provisioning stops after its current
//! transaction).

pub mod commands;
mod jobs;
mod output;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use dbenv::targets::{database_of, Target, Targets};
use dbenv::EnvVars;

use crate::context::Context;
use crate::flags::FleetFlags;

/// Targets at once unless `--parallel` says otherwise. Each target holds up
/// to five sessions on its server (db-check's catalog reader, each runtime
/// role's probes, the RLS sampling and a fresh runtime session), so four
/// targets keep both CPUs of a small machine busy while one target waits on
/// the disk, and stay at 20 sessions per server: far under PostgreSQL's
/// default `max_connections` of 100, and within a pooler's default pool of
/// 20. More does not go faster where the CPUs are the limit (`cargo xtask
/// bench`'s fleet row shows the CPU time per database).
pub const DEFAULT_PARALLEL: usize = 4;

/// How one target ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It ran and everything holds.
    Ok,
    /// It ran and found a problem (db-check, db-status: exit 2 alone).
    Problem,
    /// It could not run (exit 1 alone): a refusal, an unreachable server, a
    /// bad env file.
    Error,
    /// It was not started: a canary failed, or Ctrl-C.
    NotRun,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Problem => "problem",
            Verdict::Error => "error",
            Verdict::NotRun => "not run",
        }
    }
}

/// What one target's run reports.
pub struct Done {
    pub verdict: Verdict,
    /// One line.
    pub summary: String,
    /// The whole error or finding, when there is more than the line.
    pub detail: Option<String>,
    /// The command's own JSON for the target (db-check's report, db-status's status).
    pub json: Option<serde_json::Value>,
    /// The target's JUnit `testsuite`, when the command has cases of its own.
    pub testsuite: Option<String>,
    pub elapsed: Duration,
}

impl Done {
    pub fn new(verdict: Verdict, summary: impl Into<String>) -> Done {
        Done { verdict, summary: summary.into(), detail: None, json: None, testsuite: None, elapsed: Duration::ZERO }
    }

    /// A target that could not run: the error's first line, and all of it.
    pub fn error(error: &anyhow::Error) -> Done {
        let text = format!("{error:#}");
        let mut lines = text.lines();
        let mut summary = lines.next().unwrap_or_default().to_string();
        // "4 problems in the environment:" says little alone: the first of them too.
        if let Some(first) = lines.next().filter(|_| summary.ends_with(':')) {
            summary = format!("{summary} {}", first.trim_start_matches([' ', '-']));
        }
        let detail = (text != summary).then_some(text);
        Done { detail, ..Done::new(Verdict::Error, summary) }
    }
}

/// What the fleet runs for one target: its entry of the targets file and
/// its env file's variables (read alone).
pub type Job<'a> = dyn Fn(&Target, &EnvVars) -> Done + Sync + 'a;

/// How the fleet reports, besides one line per target and the table.
pub struct Reports {
    pub json: bool,
    pub junit: Option<PathBuf>,
}

/// Set by Ctrl-C: no new target starts. Shared with provisioning, which
/// stops between its transactions.
pub static CANCEL: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

extern "C" fn on_interrupt(_: libc::c_int) {
    if CANCEL.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe; the server rolls back what
        // the dropped sessions had open.
        unsafe { libc::_exit(130) };
    }
    let message = b"\ninterrupted: no new target starts; the running ones finish (Ctrl-C again stops at once)\n";
    // SAFETY: write(2) is async-signal-safe; a failed write is harmless.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
}

/// Runs `job` over the targets file of `flags` as `command`.
pub fn run(ctx: &Context, flags: &FleetFlags, command: &str, reports: &Reports, job: &Job<'_>) -> Result<ExitCode> {
    let Some(path) = &flags.targets else { bail!("BUG: a fleet run without --targets") };
    warn_process_overrides(ctx);
    let targets = Targets::load(&ctx.invoked_from.join(path))?;
    let parallel = flags.parallel.unwrap_or(DEFAULT_PARALLEL);
    if parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let canaries = canary_indices(&targets, &flags.canary)?;
    let loaded = targets.load_env_files();
    targets.check_across(&loaded)?;
    let leaders = if command == "db-provision" { leaders(&loaded) } else { vec![None; loaded.len()] };
    LazyLock::force(&CANCEL);
    // SAFETY: the handler stores to an atomic and calls write/_exit, all
    // async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t) };

    let started = Instant::now();
    let out = output::Output::new(&targets, command, reports.json);
    let fleet = Fleet { targets: &targets, loaded: &loaded, leaders: &leaders, job, out: &out };
    let mut results: Vec<Option<Done>> = (0..targets.targets.len()).map(|_| None).collect();
    fleet.phase(&canaries, parallel, &mut results);
    let failed_canary = canaries.iter().find(|i| results[**i].as_ref().is_none_or(|d| d.verdict != Verdict::Ok));
    let rest: Vec<usize> = (0..targets.targets.len()).filter(|i| !canaries.contains(i)).collect();
    match failed_canary {
        Some(_) if CANCEL.load(Ordering::SeqCst) => {}
        Some(canary) => {
            let why = format!("canary `{}` did not pass; fix it and run again", targets.targets[*canary].name);
            for i in rest {
                results[i] = Some(Done::new(Verdict::NotRun, why.clone()));
            }
        }
        None => fleet.phase(&rest, parallel, &mut results),
    }
    let interrupted = CANCEL.load(Ordering::SeqCst);
    // SAFETY: restores the default disposition.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let results: Vec<Done> = results
        .into_iter()
        .map(|done| done.unwrap_or_else(|| Done::new(Verdict::NotRun, "interrupted before it started")))
        .collect();
    out.summary(&targets, &results, started.elapsed(), interrupted);
    if let Some(junit) = &reports.junit {
        let text = output::junit(&targets, command, &results);
        crate::db_check::write_report(&ctx.invoked_from.join(junit), &text, "--junit")?;
    }
    Ok(exit_code(&results))
}

/// 0 when every target holds, 1 when any could not run (or was not
/// started), else 2 when any found a problem.
pub fn exit_code(results: &[Done]) -> ExitCode {
    if results.iter().any(|d| matches!(d.verdict, Verdict::Error | Verdict::NotRun)) {
        ExitCode::from(1)
    } else if results.iter().any(|d| d.verdict == Verdict::Problem) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Each target's settings come from its env file alone: a contract
/// variable in the process environment (which overrides the env file of a
/// single-database command) would give every target one value, so it is
/// not read, and said so.
fn warn_process_overrides(ctx: &Context) {
    let set: Vec<&str> = dbenv::CONTRACT_KEYS.iter().copied().filter(|key| ctx.process.get(key).is_some()).collect();
    if !set.is_empty() {
        eprintln!(
            "warning: {} set in the process environment and not used: with --targets each target's settings come \
             from its own env file alone",
            set.join(", ") + if set.len() == 1 { " is" } else { " are" }
        );
    }
}

fn canary_indices(targets: &Targets, names: &[String]) -> Result<Vec<usize>> {
    let mut indices = Vec::new();
    for name in names {
        let Some(index) = targets.targets.iter().position(|t| &t.name == name) else {
            bail!("--canary `{name}`: no target of that name in `{}`", targets.path.display());
        };
        if !indices.contains(&index) {
            indices.push(index);
        }
    }
    Ok(indices)
}

/// For each target, the first target on its server when that is another:
/// it runs first, so the roles converge once per server.
fn leaders(loaded: &[Result<EnvVars>]) -> Vec<Option<usize>> {
    let servers: Vec<Option<String>> =
        loaded.iter().map(|vars| vars.as_ref().ok().and_then(database_of).map(|a| a.server())).collect();
    servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let server = server.as_ref()?;
            servers[..i].iter().position(|s| s.as_ref() == Some(server))
        })
        .collect()
}

struct Fleet<'a> {
    targets: &'a Targets,
    loaded: &'a [Result<EnvVars>],
    leaders: &'a [Option<usize>],
    job: &'a Job<'a>,
    out: &'a output::Output,
}

/// The targets of one phase not yet started, and which have finished.
struct Queue {
    pending: VecDeque<usize>,
    finished: Vec<bool>,
}

impl Fleet<'_> {
    /// Runs `indices`, `parallel` at a time, a target waiting for its leader
    /// when the leader is in this phase.
    fn phase(&self, indices: &[usize], parallel: usize, results: &mut [Option<Done>]) {
        let in_phase = |i: usize| indices.contains(&i);
        let finished = (0..self.targets.targets.len()).map(|i| !in_phase(i)).collect();
        let queue = Mutex::new(Queue { pending: indices.iter().copied().collect(), finished });
        let changed = Condvar::new();
        let done: Mutex<Vec<(usize, Done)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..parallel.min(indices.len()) {
                scope.spawn(|| {
                    while let Some(index) = self.next(&queue, &changed) {
                        let result = self.run_one(index);
                        self.out.finished(&self.targets.targets[index], &result);
                        done.lock().unwrap_or_else(|e| e.into_inner()).push((index, result));
                        queue.lock().unwrap_or_else(|e| e.into_inner()).finished[index] = true;
                        changed.notify_all();
                    }
                });
            }
        });
        for (index, result) in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
            results[index] = Some(result);
        }
    }

    /// The next target whose leader has finished; `None` once the phase is
    /// done or Ctrl-C was pressed.
    fn next(&self, queue: &Mutex<Queue>, changed: &Condvar) -> Option<usize> {
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if CANCEL.load(Ordering::SeqCst) || queue.pending.is_empty() {
                return None;
            }
            let ready = queue.pending.iter().position(|i| self.leaders[*i].is_none_or(|leader| queue.finished[leader]));
            if let Some(position) = ready {
                return queue.pending.remove(position);
            }
            queue = changed.wait_timeout(queue, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// One target's run; a panic in it is that target's error, never the
    /// fleet's.
    fn run_one(&self, index: usize) -> Done {
        let started = Instant::now();
        let target = &self.targets.targets[index];
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &self.loaded[index] {
            Ok(vars) => (self.job)(target, vars),
            Err(error) => jobs::unreadable(target, error),
        }));
        let mut done = run.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Done::new(Verdict::Error, format!("BUG: this target's run panicked: {what}"))
        });
        done.elapsed = started.elapsed();
        done
    }
}
