//! Running a plan: sessions that keep secrets out of the server log, the
//! advisory lock that makes concurrent runs wait, transactions per phase,
//! batches that commit under `lock_timeout` with retries, and interruption.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, format_err, Context, Result};
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::Client;

use crate::plan::{Phase, Plan, Step};
use crate::sql::{merge_grants, Statement};

/// The cluster's provisioning lock, an advisory lock in the admin's
/// maintenance database: held while a run reads the catalogs, and for the
/// whole run when its plan changes roles (roles are cluster-wide). FNV-1a of
/// `cargo-xtask db-provision`.
pub const PROVISION_LOCK_KEY: i64 = fnv1a_i64(b"cargo-xtask db-provision");

const fn fnv1a_i64(bytes: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x100000001b3);
        i += 1;
    }
    hash as i64
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Print the plan, change nothing (sessions are read-only).
    pub dry_run: bool,
    /// `lock_timeout` of every writing transaction: an owner change waits at
    /// most this long behind the app's transactions before retrying, so the
    /// app never queues long behind it.
    pub lock_timeout: Duration,
    /// Attempts per transaction before giving up on locks.
    pub max_attempts: u32,
    /// Locks one transaction may take (owner changes lock a table, its
    /// indexes and TOAST); well under the default lock table of 6,400.
    pub lock_budget: u32,
    /// Set to stop between transactions (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
    /// The app's exemptions file: what the conversion may leave as it is.
    pub exemptions: crate::exemptions::Exemptions,
    /// What the operator confirmed (`--take-over`, `--allow-postgres-database`).
    pub confirmed: crate::model::Confirmations,
}

/// How long one transaction waits for a lock before it is rolled back and retried.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3);
/// Locks one owner-change transaction may take.
pub const DEFAULT_LOCK_BUDGET: u32 = 2000;

impl Default for Options {
    fn default() -> Options {
        Options {
            dry_run: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            max_attempts: 20,
            lock_budget: DEFAULT_LOCK_BUDGET,
            cancel: None,
            exemptions: Default::default(),
            confirmed: Default::default(),
        }
    }
}

/// What the caller hears while a run goes on. Every method has a default
/// that ignores the event.
pub trait Reporter {
    fn waiting_for_server(&mut self, _wait: &dbenv::Wait) {}
    fn waiting_for_lock(&mut self, _holder: Option<i32>) {}
    fn warning(&mut self, _message: &str) {}
    /// Something the run leaves to others on purpose.
    fn note(&mut self, _message: &str) {}
    /// A phase starts: its number of steps and of transactions.
    fn phase(&mut self, _phase: Phase, _steps: usize, _transactions: usize) {}
    /// A step committed.
    fn applied(&mut self, _step: &Step) {}
    /// A batch committed: `done` of the phase's `total` changes are in. The
    /// total stays what [`Reporter::phase`] announced, whatever retries or
    /// smaller transactions the run needs.
    fn progress(&mut self, _phase: Phase, _done: usize, _total: usize) {}
    /// A transaction was rolled back and will be tried again.
    fn retry(&mut self, _phase: Phase, _attempt: u32, _reason: &str) {}
}

/// A reporter that ignores everything.
pub struct Quiet;
impl Reporter for Quiet {}

/// The lock of one app database, in the same maintenance database: held by
/// a run for its whole life, so two runs against one database never
/// interleave, while runs against different databases of a cluster only
/// wait for each other's catalog reads and role changes.
pub fn database_lock_key(db_name: &str) -> i64 {
    let mut bytes = b"cargo-xtask db-provision database ".to_vec();
    bytes.extend_from_slice(db_name.as_bytes());
    fnv1a_i64(&bytes)
}

/// Takes the lock of the app database (first) and the cluster's lock for
/// the session, waiting up to `timeout` for another run to let go of each.
/// Every run takes them in this order, so two runs never wait on each other
/// in a circle.
pub fn take_locks(client: &mut Client, db_name: &str, timeout: Duration, reporter: &mut dyn Reporter) -> Result<()> {
    take_lock(client, database_lock_key(db_name), timeout, reporter)?;
    take_lock(client, PROVISION_LOCK_KEY, timeout, reporter)
}

/// Lets go of the cluster's lock once the catalogs are read and the plan
/// changes no role: other databases' runs may read and change theirs.
pub fn release_cluster_lock(client: &mut Client) -> Result<()> {
    let released: bool =
        client.query_typed_one("SELECT pg_advisory_unlock($1)", &[(&PROVISION_LOCK_KEY, Type::INT8)])?.get(0);
    if !released {
        bail!("BUG: the cluster's provisioning lock was not held");
    }
    Ok(())
}

/// Takes the advisory lock `key` for the session, waiting up to `timeout`
/// for another run to finish.
fn take_lock(client: &mut Client, key: i64, timeout: Duration, reporter: &mut dyn Reporter) -> Result<()> {
    if client.query_typed_one("SELECT pg_try_advisory_lock($1)", &[(&key, Type::INT8)])?.get::<_, bool>(0) {
        return Ok(());
    }
    let holder: Option<i32> = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
               AND classid::int8 = ($1::int8 >> 32) & 4294967295 AND objid::int8 = $1::int8 & 4294967295 LIMIT 1",
            &[&key],
        )?
        .map(|row| row.get(0));
    reporter.waiting_for_lock(holder);
    client.batch_execute(&crate::sql::lock_timeout(timeout, false))?;
    let result = client.query_one("SELECT pg_advisory_lock($1)", &[&key]);
    client.batch_execute("RESET lock_timeout")?;
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => bail!(
            "another db-provision{} held the provisioning lock for more than {} s (PG_TIMEOUT); wait for it or stop it",
            holder.map(|pid| format!(" (server pid {pid})")).unwrap_or_default(),
            timeout.as_secs()
        ),
        Err(error) => Err(error).context("take the provisioning lock"),
    }
}

/// Runs every step of `plan` in phase order. `cluster` is the maintenance
/// session; `app_db` opens a session in the app database (after `CREATE
/// DATABASE`, when that is in the plan).
pub fn execute(
    plan: &Plan,
    cluster: &mut Client,
    mut app_db: impl FnMut() -> Result<Client>,
    options: &Options,
    reporter: &mut dyn Reporter,
) -> Result<Option<Client>> {
    let mut app: Option<Client> = None;
    let mut helper: Option<Client> = None;
    let mut asynchronous = false;
    for phase in Phase::ALL {
        let steps: Vec<&Step> = plan.steps_of(phase).collect();
        if steps.is_empty() {
            continue;
        }
        check_cancel(options, phase)?;
        if !phase.on_cluster() && app.is_none() {
            app = Some(app_db()?);
        }
        let client = if phase.on_cluster() { &mut *cluster } else { app.as_mut().context("BUG: no app session")? };
        if phase == Phase::CreateDatabase {
            reporter.phase(phase, steps.len(), steps.len());
            for step in &steps {
                for sql in &step.statements {
                    client.batch_execute(&sql.text()).map_err(|e| template_in_use(describe_error(&e, sql), &e))?;
                }
                reporter.applied(step);
            }
            continue;
        }
        if !phase.batched() {
            run_batches(vec![client], phase, vec![steps.clone()], true, options, reporter)?;
            continue;
        }
        // Long phases run on two sessions: the server works on one batch
        // while the other is sent or committed.
        let batches = batches(&steps, options.lock_budget / PARALLEL_SESSIONS as u32);
        let mut sessions = vec![client];
        if batches.len() >= 4 {
            if helper.is_none() {
                helper = Some(app_db()?);
            }
            sessions.extend(helper.as_mut());
        }
        run_batches(sessions, phase, batches, false, options, reporter)?;
        asynchronous = true;
    }
    if asynchronous {
        // The batches committed without waiting for their WAL flush (a crash
        // could only lose whole batches, and the next run redoes them). One
        // synchronous commit flushes the WAL up to here, so "done" means durable.
        let client = app.as_mut().context("BUG: no app session")?;
        client.batch_execute("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT;")?;
    }
    Ok(app)
}

/// Sessions a long phase is spread over; each takes part of the lock budget.
const PARALLEL_SESSIONS: usize = 2;

/// Splits steps into transactions of at most `budget` locks (and a bounded
/// number of statements, so one transaction never grows huge).
fn batches<'a>(steps: &[&'a Step], budget: u32) -> Vec<Vec<&'a Step>> {
    const MAX_STATEMENTS: usize = 5000;
    let mut batches = Vec::new();
    let mut current: Vec<&Step> = Vec::new();
    let (mut locks, mut statements) = (0u32, 0usize);
    for step in steps {
        let cost = step.lock_cost.max(1);
        if !current.is_empty() && (locks + cost > budget || statements + step.statements.len() > MAX_STATEMENTS) {
            batches.push(std::mem::take(&mut current));
            locks = 0;
            statements = 0;
        }
        locks += cost;
        statements += step.statements.len();
        current.push(step);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// What a worker tells the thread that reports.
enum Event<'a> {
    Committed(Vec<&'a Step>),
    Retry(u32, String),
}

/// Runs `batches` on `sessions` (one worker thread each), every batch one
/// transaction that commits. Progress is reported from this thread.
fn run_batches(
    sessions: Vec<&mut Client>,
    phase: Phase,
    batches: Vec<Vec<&Step>>,
    synchronous: bool,
    options: &Options,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    let steps: usize = batches.iter().map(Vec::len).sum();
    reporter.phase(phase, steps, batches.len());
    let queue = Mutex::new(VecDeque::from(batches));
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let (events, received) = mpsc::channel();
    std::thread::scope(|scope| {
        let workers: Vec<_> = sessions
            .into_iter()
            .map(|client| {
                let events = events.clone();
                let (queue, stop, done) = (&queue, &stop, &done);
                scope.spawn(move || worker(client, phase, queue, stop, done, synchronous, options, events))
            })
            .collect();
        drop(events);
        let mut committed = 0;
        for event in received {
            match event {
                Event::Committed(batch) => {
                    committed += batch.len();
                    for step in &batch {
                        reporter.applied(step);
                    }
                    reporter.progress(phase, committed, steps);
                }
                Event::Retry(attempt, reason) => reporter.retry(phase, attempt, &reason),
            }
        }
        let mut first_error = None;
        for handle in workers {
            let result = handle.join().unwrap_or_else(|_| Err(format_err!("BUG: a provisioning worker panicked")));
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// One session working through the shared queue.
#[allow(clippy::too_many_arguments)]
fn worker<'a>(
    client: &mut Client,
    phase: Phase,
    queue: &Mutex<VecDeque<Vec<&'a Step>>>,
    stop: &AtomicBool,
    done: &AtomicUsize,
    synchronous: bool,
    options: &Options,
    events: mpsc::Sender<Event<'a>>,
) -> Result<()> {
    let mut attempt = 0u32;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(batch) = queue.lock().map_err(|_| format_err!("BUG: poisoned queue"))?.pop_front() else {
            return Ok(());
        };
        if let Err(error) = check_cancel(options, phase) {
            stop.store(true, Ordering::SeqCst);
            let committed = done.load(Ordering::SeqCst);
            return Err(error.context(format!("{committed} transactions of phase `{}` had committed", phase.title())));
        }
        let statements: Vec<&Statement> = batch.iter().flat_map(|s| s.statements.iter()).collect();
        let error = match run_transaction(client, &statements, options.lock_timeout, synchronous) {
            Ok(()) => {
                attempt = 0;
                done.fetch_add(1, Ordering::SeqCst);
                let _ = events.send(Event::Committed(batch));
                continue;
            }
            Err(error) => error,
        };
        let code = error.code().cloned();
        if code == Some(SqlState::OUT_OF_MEMORY) && batch.len() > 1 {
            // The lock table is smaller than the budget assumed: halve.
            let half = batch.len() / 2;
            let mut queue = queue.lock().map_err(|_| format_err!("BUG: poisoned queue"))?;
            queue.push_front(batch[half..].to_vec());
            queue.push_front(batch[..half].to_vec());
            let _ = events.send(Event::Retry(attempt, "out of shared memory for locks; smaller transactions".into()));
            continue;
        }
        if is_retryable(&error) && attempt + 1 < options.max_attempts {
            attempt += 1;
            let reason = match &code {
                Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => "a lock is held by another transaction".to_string(),
                Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => "deadlock with another transaction".to_string(),
                _ => error.to_string(),
            };
            let _ = events.send(Event::Retry(attempt, reason));
            std::thread::sleep(backoff(attempt));
            queue.lock().map_err(|_| format_err!("BUG: poisoned queue"))?.push_front(batch);
            continue;
        }
        stop.store(true, Ordering::SeqCst);
        let located = locate_failure(client, &statements, options.lock_timeout);
        let committed = done.load(Ordering::SeqCst);
        let prefix = format!(
            "phase `{}`: a transaction failed and was rolled back ({committed} committed before it; the database \
             works as it is, run `cargo xtask db-provision` again to finish)",
            phase.title()
        );
        if code == Some(SqlState::LOCK_NOT_AVAILABLE) {
            bail!(
                "{prefix}: could not take the locks within lock_timeout ({} ms) in {attempt} attempts; a \
                 long-running transaction holds them (look in pg_stat_activity for old `xact_start`)",
                options.lock_timeout.as_millis()
            );
        }
        return Err(located.unwrap_or_else(|| format_err!("{}", pg_message(&error))).context(prefix));
    }
}

/// One transaction in one round trip: the statements joined into a simple
/// query between BEGIN and COMMIT. The server stops at the first error.
fn run_transaction(
    client: &mut Client,
    statements: &[&Statement],
    lock_timeout: Duration,
    synchronous: bool,
) -> Result<(), postgres::Error> {
    let mut text = format!("BEGIN;\n{};\n", crate::sql::lock_timeout(lock_timeout, true));
    if !synchronous {
        text.push_str("SET LOCAL synchronous_commit = off;\n");
    }
    let (others, grants) = merge_grants(statements);
    for sql in others {
        text.push_str(&sql.in_transaction());
    }
    for grant in grants {
        text.push_str(&Statement::new(grant).in_transaction());
    }
    text.push_str("COMMIT;");
    let result = client.batch_execute(&text);
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK");
    }
    result
}

/// Replays a failed transaction statement by statement (then rolls it back)
/// to name the statement that fails.
fn locate_failure(client: &mut Client, statements: &[&Statement], lock_timeout: Duration) -> Option<anyhow::Error> {
    client.batch_execute(&format!("BEGIN; {}", crate::sql::lock_timeout(lock_timeout, true))).ok()?;
    let mut found = None;
    for sql in statements {
        if let Err(error) = client.batch_execute(&sql.in_transaction()) {
            found = Some(describe_error(&error, sql));
            break;
        }
    }
    let _ = client.batch_execute("ROLLBACK");
    found
}

fn describe_error(error: &postgres::Error, sql: &Statement) -> anyhow::Error {
    format_err!("{}\n  statement: {sql}", pg_message(error))
}

/// `CREATE DATABASE` copies its template, which no other session may use
/// while it does (the server waits 5 s for them to leave, then refuses).
fn template_in_use(described: anyhow::Error, error: &postgres::Error) -> anyhow::Error {
    if error.code() != Some(&SqlState::OBJECT_IN_USE) {
        return described;
    }
    described.context(
        "the new database is a copy of its template (template1), and PostgreSQL copies it only while no other \
         session is connected to it: a tool or a person connected there blocks it (see `SELECT pid, usename, \
         application_name FROM pg_stat_activity WHERE datname = 'template1'`). Nothing in the app database was \
         changed; run again once they have left",
    )
}

/// `message (SQLSTATE xxxxx)`, with detail and hint when the server sent them.
pub fn pg_message(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => error.to_string(),
    }
}

fn is_retryable(error: &postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code();
            *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                // Two sessions changing one catalog row (a GRANT racing ours).
                || db.message().contains("tuple concurrently updated")
        }
        None => false,
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(5)).min(2000))
}

fn check_cancel(options: &Options, phase: Phase) -> Result<()> {
    if options.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
        bail!(
            "interrupted before phase `{}` went on; everything committed so far leaves a working database, \
             and `cargo xtask db-provision` finishes the job",
            phase.title()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Change;

    fn step(cost: u32) -> Step {
        Step {
            phase: Phase::Ownership,
            summary: String::new(),
            statements: vec![Change::MarkRole { role: "r".into() }.into()],
            lock_cost: cost,
        }
    }

    #[test]
    fn batches_respect_the_lock_budget() {
        let steps: Vec<Step> = (0..10).map(|_| step(3)).collect();
        let refs: Vec<&Step> = steps.iter().collect();
        let sizes: Vec<usize> = batches(&refs, 10).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        // A step costing more than the budget still runs, alone.
        let big = [step(50), step(1)];
        let refs: Vec<&Step> = big.iter().collect();
        assert_eq!(batches(&refs, 10).len(), 2);
    }

    #[test]
    fn the_lock_key_is_stable() {
        assert_eq!(PROVISION_LOCK_KEY, fnv1a_i64(b"cargo-xtask db-provision"));
        assert_ne!(PROVISION_LOCK_KEY, 0);
        assert_ne!(database_lock_key("app"), database_lock_key("app2"));
        assert_ne!(database_lock_key(""), PROVISION_LOCK_KEY);
    }
}
