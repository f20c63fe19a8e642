//! Applying migrations as the migrator: the batch transaction drizzle
//! uses, with errors that name the migration, the statement and the
//! SQLSTATE.

use std::time::Instant;

use anyhow::{bail, format_err, Context, Result};
use postgres::types::Type;
use postgres::Client;

use crate::bookkeeping::TableState;
use crate::config::{Config, Progress};
use crate::folder::{Folder, Migration, BREAKPOINT};
use crate::grants;
use crate::session::{prepare, release_lock};
use crate::transactions::Control;

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<String>,
    /// Grants sent so the runtime roles reach what the migrations created
    /// (app schemas the migrations made, objects default privileges missed),
    /// whoever applied them: sent on every run that finds something missing.
    pub granted: Vec<String>,
    /// A dry run: `applied` lists what would have been.
    pub dry_run: bool,
    /// Transactions that committed migration work (the runner's, and those a
    /// `COMMIT` written in a migration ended).
    pub transactions: usize,
    /// Migrations that ran, wholly or in part, outside any transaction (after
    /// a `COMMIT` written in a migration, as drizzle-kit runs them).
    pub outside: Vec<String>,
    /// Migrations after which the run committed so that later ones could use
    /// the enum values they add (where drizzle-kit fails with 55P04).
    pub committed_for_enum: Vec<String>,
}

/// `a, b, c`, or `first … last (n migrations)` for a long list.
pub fn summarise(tags: &[String]) -> String {
    match tags {
        [] => "none".to_string(),
        [first, .., last] if tags.len() > 4 => format!("{first} … {last} ({} migrations)", tags.len()),
        _ => tags.join(", "),
    }
}

/// Applies every pending migration, in one transaction (drizzle's default;
/// where a new enum value is used in the transaction that added it, that
/// transaction is applied again with a commit after each migration that
/// adds one) or one per migration; after a migration that leaves the
/// session outside a transaction, the rest runs as drizzle-kit runs it.
/// Every run, with or without pending migrations and after a failure,
/// grants the runtime roles what they lack in the app schemas (nothing is
/// sent when nothing is).
pub fn migrate_builtin(
    config: &Config,
    folder: &Folder,
    dry_run: bool,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    let mut prepared = prepare(config, folder, dry_run, progress)?;
    let pending: Vec<&Migration> = folder.migrations.iter().filter(|m| prepared.pending.contains(&m.tag)).collect();
    if dry_run {
        return Ok(Outcome { applied: prepared.pending, dry_run, ..Outcome::default() });
    }
    if pending.is_empty() {
        let granted = converge_grants(&mut prepared.client, config);
        release_lock(&mut prepared.client, config)?;
        return Ok(Outcome { granted: granted?, ..Outcome::default() });
    }
    let result = apply(&mut prepared.client, config, &prepared.table, &pending, progress);
    // The lock goes with the session too; releasing it keeps the session
    // reusable. The migrations ran with the migrator's own search_path: the
    // runner's statements run pinned again. After a failure, what the run
    // committed is made durable before the error is told (a commit that
    // waits for the WAL flush flushes every commit before it).
    let mut after = format!("{}; RESET synchronous_commit", dbenv::PINNED_SEARCH_PATH);
    if result.is_err() {
        after = format!("ROLLBACK; {after}; BEGIN; SELECT pg_catalog.pg_current_xact_id(); COMMIT");
    }
    let released = prepared
        .client
        .batch_execute(&after)
        .map_err(anyhow::Error::from)
        .and_then(|()| release_lock(&mut prepared.client, config));
    let outcome = result?;
    released?;
    Ok(outcome)
}

/// Grants what the runtime roles lack, in a transaction of its own; when
/// nothing is missing and the policy file keeps nothing `[[private]]`, one
/// read-only statement and nothing else (otherwise a transaction that only
/// reads). The session runs with the pinned search_path.
pub fn converge_grants(client: &mut Client, config: &Config) -> Result<Vec<String>> {
    if !grants::anything_missing(client, config)? {
        return Ok(Vec::new());
    }
    client.batch_execute("BEGIN")?;
    match grants::converge(client, config) {
        Ok(sent) => {
            client.batch_execute("COMMIT")?;
            Ok(sent)
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK");
            Err(error.context("grant the runtime roles their access to what the migrations created"))
        }
    }
}

fn apply(
    client: &mut Client,
    config: &Config,
    table: &TableState,
    pending: &[&Migration],
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    if *table == TableState::Missing {
        // What drizzle runs, minus its CREATE SCHEMA when the schema exists
        // (which fails for a role without CREATE on the database).
        let schema_exists = client.query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[(&config.table.schema, Type::TEXT)],
        )?;
        if !schema_exists.get::<_, bool>(0) {
            let ensure = roles::Change::EnsureSchema { schema: config.table.schema.clone() };
            client.batch_execute(&roles::Statement::new(ensure).text())?;
        }
        client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)",
            config.table.sql()
        ))?;
    }
    // The migrations run with the search_path the migrator's role and the
    // database configure, as under drizzle-kit; the runner's own statements
    // between them call only qualified functions and no operator, and are
    // pinned again before the grants.
    client.batch_execute("RESET search_path; RESET standard_conforming_strings")?;
    // Commits while applying do not wait for the WAL flush (after a `COMMIT`
    // a migration wrote, every statement commits on its own); the run's
    // last commit does, and with it everything before (WAL is flushed in
    // order), before success is told. A crash before that loses a suffix
    // of the run, as an interruption there would. A session configured
    // with `synchronous_commit = off` keeps it.
    client.batch_execute("SET synchronous_commit = off")?;
    let mut run = Run {
        client,
        config,
        in_transaction: false,
        unrecorded: Vec::new(),
        recorded: Vec::new(),
        transactions: 0,
        outside: Vec::new(),
        worked: false,
        ran_outside: false,
        committed_part: false,
        partial: Vec::new(),
        granted: Vec::new(),
        enum_commits: false,
        committed_for_enum: Vec::new(),
    };
    run.begin()?;
    let mut position = 0;
    while let Some(migration) = pending.get(position) {
        progress.applying(migration, position + 1, pending.len());
        let started = Instant::now();
        run.ran_outside = false;
        match run.migration(migration) {
            Ok(()) => {}
            // A new enum value used in the transaction that added it: this
            // transaction is rolled back and applied again, committing after
            // each migration that adds an enum value (drizzle-kit fails here).
            Err(failure) if run.enum_retry(&failure) => {
                position -= run.unrecorded.len();
                run.restart()?;
                progress.retrying(position);
                continue;
            }
            Err(failure) => return Err(run.fail(failure, pending.len())),
        }
        progress.applied(migration, started.elapsed());
        let more = position + 1 < pending.len();
        run.after_migration(migration, more).map_err(|error| run.fail_between(error, &migration.tag))?;
        position += 1;
    }
    run.finish().map_err(|error| run.fail_between(error, "the last migration"))?;
    Ok(Outcome {
        applied: std::mem::take(&mut run.recorded),
        granted: std::mem::take(&mut run.granted),
        dry_run: false,
        transactions: run.transactions,
        outside: std::mem::take(&mut run.outside),
        committed_for_enum: std::mem::take(&mut run.committed_for_enum),
    })
}

/// The state of a run: whether the session is inside a transaction the
/// runner (or a migration's `BEGIN`) opened, the migrations finished in it
/// whose rows are not written yet, and the tags recorded (committed).
struct Run<'a, 'c> {
    client: &'c mut Client,
    config: &'a Config,
    in_transaction: bool,
    unrecorded: Vec<&'a Migration>,
    recorded: Vec<String>,
    /// Transactions committed with migration work in them.
    transactions: usize,
    /// Migrations that ran, wholly or in part, outside a transaction.
    outside: Vec<String>,
    /// The open transaction holds migration work.
    worked: bool,
    /// The current migration sent a statement outside a transaction.
    ran_outside: bool,
    /// The current migration committed some of its statements.
    committed_part: bool,
    /// Migrations not recorded yet (in the open transaction) whose first
    /// statements a `COMMIT` of their own already made permanent.
    partial: Vec<String>,
    /// Grants sent at the end.
    granted: Vec<String>,
    /// Commit after each migration that adds an enum value (once a new
    /// value was used in the transaction that added it).
    enum_commits: bool,
    /// The migrations after which the run committed for that.
    committed_for_enum: Vec<String>,
}

/// Where a migration failed, and what of it had committed by then.
struct Failure {
    error: anyhow::Error,
    tag: String,
    /// The failing statement's SQLSTATE.
    code: Option<String>,
    /// Statements of the failing migration committed before the failure
    /// (before a `COMMIT` in it, or run in autocommit).
    committed_statements: usize,
    /// The failing statement (1-based) and the migration's statement count.
    failed_at: usize,
    total: usize,
    /// The failing statement was sent in autocommit.
    autocommit: bool,
    /// A `CREATE INDEX CONCURRENTLY` failed (it may leave an INVALID index).
    concurrent_index: bool,
}

impl<'a> Run<'a, '_> {
    /// After a migration's last statement: its row, and where the batch
    /// commits.
    fn after_migration(&mut self, migration: &'a Migration, more: bool) -> Result<()> {
        if self.ran_outside {
            self.outside.push(migration.tag.clone());
        }
        if self.in_transaction {
            self.unrecorded.push(migration);
            if self.committed_part {
                self.partial.push(migration.tag.clone());
            }
            // A new enum value may be used only once the transaction that
            // added it committed: the batch commits here, with this
            // migration's row, and goes on in a new transaction.
            let enum_value = self.enum_commits && migration.adds_enum_value().is_some();
            if more && (self.config.per_migration || enum_value) {
                self.commit()?;
                self.begin()?;
                if enum_value {
                    self.committed_for_enum.push(migration.tag.clone());
                }
            }
        } else {
            // It ended outside a transaction: its row goes in now, after its
            // last statement. What follows runs as drizzle-kit runs it, each
            // statement on its own, unless each migration gets its own.
            self.record_now(migration)?;
            if more && self.config.per_migration {
                self.begin()?;
            }
        }
        Ok(())
    }

    /// The runtime roles' access to what the migrations created, in the
    /// same transaction as the last migrations' rows, and the last commit,
    /// which waits for the WAL flush: it needs a transaction id to write a
    /// commit record at all, even when it holds no row.
    fn finish(&mut self) -> Result<()> {
        if !self.in_transaction {
            self.begin()?;
        }
        self.client.batch_execute(dbenv::PINNED_SEARCH_PATH)?;
        self.granted = grants::converge(self.client, self.config)
            .context("the migrations ran, but granting the runtime roles their access failed")?;
        self.client.batch_execute("RESET synchronous_commit; SELECT pg_catalog.pg_current_xact_id()")?;
        self.commit()
    }

    /// Whether a failure is a new enum value used in the transaction that
    /// added it, where committing after the migration that added it helps:
    /// an earlier migration of this transaction adds one, nothing of this
    /// transaction is committed yet, and the run has not done this before.
    fn enum_retry(&self, failure: &Failure) -> bool {
        failure.code.as_deref() == Some("55P04")
            && !self.enum_commits
            && !failure.autocommit
            && failure.committed_statements == 0
            && self.partial.is_empty()
            && self.unrecorded.iter().any(|m| m.adds_enum_value().is_some())
    }

    /// Rolls the open transaction back and opens a new one, committing
    /// after every migration that adds an enum value from now on.
    fn restart(&mut self) -> Result<()> {
        self.client.batch_execute("ROLLBACK")?;
        self.in_transaction = false;
        self.unrecorded.clear();
        self.worked = false;
        self.enum_commits = true;
        self.begin()
    }

    /// A failure between migrations (a commit, a bookkeeping row, the
    /// grants): what stays, and the grants for it.
    fn fail_between(&mut self, error: anyhow::Error, after: &str) -> anyhow::Error {
        let rolled_back: Vec<String> = self.unrecorded.iter().map(|m| m.tag.clone()).collect();
        let _ = self.client.batch_execute("ROLLBACK");
        self.in_transaction = false;
        let mut said = vec![format!("the run failed after {after}")];
        if !self.recorded.is_empty() {
            said.push(format!("applied and recorded: {}", summarise(&self.recorded)));
        }
        if !rolled_back.is_empty() {
            said.push(format!("rolled back: {}", summarise(&rolled_back)));
        }
        said.extend(self.partial_note());
        said.push("fix the cause and run again: the next run starts at the first migration not recorded".into());
        said.extend(self.grants_after_failure());
        error.context(said.join("; "))
    }

    /// Migrations rolled back with the failure whose first statements a
    /// `COMMIT` of their own made permanent.
    fn partial_note(&self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            format!(
                "of {}, the statements before a COMMIT of their own were committed and stay, though they are not \
                 recorded: the next run starts them again from their first statement, so make those statements \
                 idempotent (IF NOT EXISTS)",
                self.partial.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Grants what the runtime roles lack in what stays, and says so.
    fn grants_after_failure(&mut self) -> Option<String> {
        let pinned = self.client.batch_execute(dbenv::PINNED_SEARCH_PATH).map_err(anyhow::Error::from);
        match pinned.and_then(|()| converge_grants(self.client, self.config)) {
            Ok(sent) if !sent.is_empty() => Some(format!(
                "the runtime roles were granted their access to what stays ({} statement{})",
                sent.len(),
                if sent.len() == 1 { "" } else { "s" }
            )),
            Ok(_) => None,
            Err(error) => Some(format!(
                "granting the runtime roles their access to what stays failed too ({error:#}); `cargo xtask \
                 db-migrate` grants it on its next run"
            )),
        }
    }

    /// Opens the batch transaction, with a marker that lives exactly as long
    /// as it: if it is gone when rows are written, something ended the
    /// transaction where no `COMMIT` was seen (a procedure that commits).
    fn begin(&mut self) -> Result<()> {
        self.client.batch_execute("BEGIN; SELECT pg_catalog.set_config('xtask.migration_batch', 'open', true)")?;
        self.in_transaction = true;
        Ok(())
    }

    /// Writes the rows of the migrations finished in this transaction, in
    /// order, in one statement (the same rows as drizzle's one INSERT per
    /// migration). Hashes are hex and `when` a number: safe literals.
    fn write_rows(&mut self) -> Result<()> {
        let marker: Option<String> = self
            .client
            .query_typed_one("SELECT pg_catalog.current_setting('xtask.migration_batch', true)", &[])?
            .get(0);
        if marker.as_deref() != Some("open") {
            bail!(
                "the transaction ended where no COMMIT was written (a procedure that commits?): statements may have \
                 been committed without bookkeeping rows. Check the database by hand, then run again"
            );
        }
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = self.unrecorded.iter().map(|m| format!("('{}', {})", m.hash, m.when)).collect();
        self.client
            .batch_execute(&format!(
                "INSERT INTO {} (\"hash\", \"created_at\") VALUES {}",
                self.config.table.sql(),
                values.join(", ")
            ))
            .with_context(|| format!("record the migrations in `{}`", self.config.table))?;
        Ok(())
    }

    /// The rows are in the transaction that is about to commit.
    fn committed(&mut self) {
        if self.worked || !self.unrecorded.is_empty() {
            self.transactions += 1;
        }
        self.worked = false;
        self.partial.clear();
        self.recorded.extend(self.unrecorded.drain(..).map(|m| m.tag.clone()));
    }

    fn commit(&mut self) -> Result<()> {
        self.write_rows()?;
        self.client.batch_execute("COMMIT").context("commit the migrations")?;
        self.in_transaction = false;
        self.committed();
        Ok(())
    }

    /// A migration that ended in autocommit: its row, on its own.
    fn record_now(&mut self, migration: &'a Migration) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "INSERT INTO {} (\"hash\", \"created_at\") VALUES ('{}', {})",
                self.config.table.sql(),
                migration.hash,
                migration.when
            ))
            .with_context(|| format!("record migration `{}` in `{}`", migration.tag, self.config.table))?;
        self.recorded.push(migration.tag.clone());
        Ok(())
    }

    /// Sends each piece as one simple-protocol query, as drizzle does,
    /// following the transaction statements written in the migration.
    fn migration(&mut self, migration: &'a Migration) -> Result<(), Failure> {
        let controls = crate::transactions::statements(&migration.text);
        let pieces = migration.pieces();
        let mut offset = 0usize;
        let mut committed_statements = 0;
        for (index, piece) in pieces.iter().enumerate() {
            let range = offset..offset + piece.len();
            let mine: Vec<&crate::transactions::TxStatement> =
                controls.iter().filter(|s| range.contains(&s.offset)).collect();
            let commits = mine.iter().any(|s| s.control == Control::Commit);
            let failure =
                |error: anyhow::Error, code: Option<String>, autocommit: bool, committed_statements| Failure {
                    error,
                    tag: migration.tag.clone(),
                    code,
                    committed_statements,
                    failed_at: index + 1,
                    total: pieces.len(),
                    autocommit,
                    concurrent_index: piece
                        .to_ascii_uppercase()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .contains("INDEX CONCURRENTLY"),
                };
            if commits && self.in_transaction {
                // The migrations finished in this transaction are committed
                // by this COMMIT: their rows go in first, as drizzle's do.
                self.write_rows().map_err(|e| failure(e, None, false, committed_statements))?;
            }
            let autocommit = !self.in_transaction;
            let opens = mine.last().is_some_and(|s| s.control == Control::Begin);
            if let Err(error) = self.client.batch_execute(piece) {
                let code = error.code().map(|c| c.code().to_string());
                let error = statement_error(migration, &error, index, pieces.len(), offset, piece);
                return Err(failure(error, code, autocommit, committed_statements));
            }
            if autocommit && !opens {
                self.ran_outside = true;
            } else if !autocommit && crate::transactions::statement_count(piece) > mine.len() {
                self.worked = true;
            }
            if commits && self.in_transaction {
                self.committed();
            }
            if let Some(last) = mine.last() {
                self.in_transaction = last.control == Control::Begin;
                if self.in_transaction {
                    let _ = self
                        .client
                        .batch_execute("SELECT pg_catalog.set_config('xtask.migration_batch', 'open', true)");
                }
            }
            if (autocommit && !opens) || commits {
                committed_statements = index + 1;
            }
            offset += piece.len() + BREAKPOINT.len();
        }
        self.committed_part = committed_statements > 0;
        if !controls.is_empty() {
            // A migration may set its own lock_timeout for what runs outside
            // the transaction; the runner's applies again after it.
            let _ = self.client.batch_execute(&roles::sql::lock_timeout(self.config.lock_timeout, false));
        }
        Ok(())
    }

    /// Ends the run after a failure, saying exactly what stays and what not,
    /// and granting the runtime roles their access to what stays.
    fn fail(&mut self, failure: Failure, pending: usize) -> anyhow::Error {
        let rolled_back: Vec<String> = self.unrecorded.iter().map(|m| m.tag.clone()).collect();
        // Whatever the failing statement left open (the batch, or a BEGIN of
        // the migration's own) is rolled back; in autocommit this only warns.
        let _ = self.client.batch_execute("ROLLBACK");
        self.in_transaction = false;
        let mut said = Vec::new();
        if failure.code.is_none() {
            said.push(
                "the connection failed, so what the server kept is known only to it: `cargo xtask db-status` shows \
                 what is recorded"
                    .to_string(),
            );
        }
        said.extend(self.what_stays(&failure, &rolled_back, pending));
        said.push(self.fix(&failure, &rolled_back, pending));
        let granted = self.grants_after_failure();
        let granted_what_stays = granted.is_some();
        said.extend(granted);
        let failed = RunFailed {
            next: rolled_back.first().unwrap_or(&failure.tag).clone(),
            migration: failure.tag,
            sqlstate: failure.code,
            failed_at: failure.failed_at,
            total: failure.total,
            committed_statements: failure.committed_statements,
            autocommit: failure.autocommit,
            concurrent_index: failure.concurrent_index,
            recorded: self.recorded.clone(),
            rolled_back,
            partial: self.partial.clone(),
            granted_what_stays,
            said,
        };
        failure.error.context(failed)
    }

    /// Which migrations are applied and recorded, what of the failing one
    /// committed, and what was rolled back.
    fn what_stays(&self, failure: &Failure, rolled_back: &[String], pending: usize) -> Vec<String> {
        if failure.committed_statements == 0 && self.recorded.is_empty() && self.partial.is_empty() {
            return vec![format!(
                "the whole {} was rolled back: none of the {pending} pending migrations was applied, the bookkeeping \
                 is unchanged",
                if self.config.per_migration { "migration" } else { "batch" }
            )];
        }
        let mut said = Vec::new();
        if !self.recorded.is_empty() {
            said.push(format!("applied and recorded before it: {}", summarise(&self.recorded)));
        }
        let statements = |from: usize, to: usize| {
            if from == to {
                format!("statement {from}")
            } else {
                format!("statements {from}–{to}")
            }
        };
        if failure.committed_statements > 0 {
            let rolled = failure.failed_at - 1 - failure.committed_statements;
            said.push(format!(
                "of `{}`, {} of {} {} committed (after a COMMIT in the migration, or outside a transaction); \
                 statement {} failed{}{}",
                failure.tag,
                statements(1, failure.committed_statements),
                failure.total,
                if failure.committed_statements == 1 { "was" } else { "were" },
                failure.failed_at,
                if failure.autocommit { " (outside a transaction)" } else { "" },
                match rolled {
                    0 => String::new(),
                    1 => format!(" and statement {} was rolled back", failure.committed_statements + 1),
                    _ => format!(
                        " and {} were rolled back",
                        statements(failure.committed_statements + 1, failure.failed_at - 1)
                    ),
                }
            ));
        } else {
            said.push(format!(
                "`{}` failed at statement {} of {}; nothing of it was committed",
                failure.tag, failure.failed_at, failure.total
            ));
        }
        if !rolled_back.is_empty() {
            said.push(format!("rolled back with it: {}", summarise(rolled_back)));
        }
        said.extend(self.partial_note());
        said
    }

    /// What to do before running again.
    fn fix(&self, failure: &Failure, rolled_back: &[String], pending: usize) -> String {
        let tag = &failure.tag;
        // The first migration not recorded: where the next run starts.
        let next = rolled_back.first().unwrap_or(tag);
        if failure.committed_statements > 0 {
            return format!(
                "`{tag}` is not recorded, so the next run starts it again from its first statement: make the \
                 committed statements idempotent (IF NOT EXISTS){}, then run again",
                if failure.concurrent_index {
                    "; a failed CREATE INDEX CONCURRENTLY leaves an INVALID index: drop it (DROP INDEX \
                     CONCURRENTLY …) before running again"
                } else {
                    ""
                }
            );
        }
        let mut fix = format!(
            "fix `{tag}.sql` (or what it needs in the database) and run again: the next run starts at `{next}`"
        );
        match failure.code.as_deref() {
            Some("55P04") => fix.push_str(
                "; a new enum value may be used only after the transaction that added it commits: write the \
                 `ALTER TYPE … ADD VALUE` as a statement of its own in an earlier migration (the runner commits \
                 after such a migration; one inside a DO block is not seen), or write `COMMIT;` after it",
            ),
            Some("25001") => fix.push_str(
                "; this statement cannot run inside a transaction: write `COMMIT;` before it in the migration \
                 (drizzle-kit runs it only when an earlier migration of the same run left the transaction)",
            ),
            _ => {}
        }
        let earlier_rolled_back = rolled_back.iter().any(|t| t != tag);
        if !self.config.per_migration && pending > 1 && earlier_rolled_back {
            fix.push_str(
                "; with `--transaction-per-migration` every migration commits on its own, so those before a failing \
                 one stay applied",
            );
        }
        fix
    }
}

/// How a run that had begun stopped at a failing statement, and what
/// stays: tests match the fields; `Display` says it (what stays, the fix,
/// the grants), in front of the statement's own error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFailed {
    /// The migration that failed.
    pub migration: String,
    /// The failing statement's SQLSTATE; `None` when the connection failed.
    pub sqlstate: Option<String>,
    /// The failing statement (1-based), of how many in the migration.
    pub failed_at: usize,
    pub total: usize,
    /// Statements of the failing migration committed before it failed.
    pub committed_statements: usize,
    /// The failing statement ran outside a transaction.
    pub autocommit: bool,
    /// A `CREATE INDEX CONCURRENTLY` failed (it may leave an INVALID index).
    pub concurrent_index: bool,
    /// Migrations applied and recorded before it.
    pub recorded: Vec<String>,
    /// Migrations before it that were rolled back with it (not recorded).
    pub rolled_back: Vec<String>,
    /// Migrations rolled back whose statements before a `COMMIT` of their own stay.
    pub partial: Vec<String>,
    /// Where the next run starts: the first migration not recorded.
    pub next: String,
    /// The runtime roles were granted their access to what stays.
    pub granted_what_stays: bool,
    said: Vec<String>,
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.said.join("; "))
    }
}

/// `migration `0003_x` failed at statement 2 of 5 (line 14): … (SQLSTATE …)`.
fn statement_error(
    migration: &Migration,
    error: &postgres::Error,
    index: usize,
    total: usize,
    offset: usize,
    piece: &str,
) -> anyhow::Error {
    let Some(db) = error.as_db_error() else {
        return format_err!("migration `{}`, statement {} of {total}: {error}", migration.tag, index + 1);
    };
    // The server's position counts characters from 1 within the piece.
    let within = match db.position() {
        Some(postgres::error::ErrorPosition::Original(position)) => {
            piece.char_indices().nth((*position as usize).saturating_sub(1)).map(|(i, _)| i).unwrap_or(0)
        }
        _ => piece.len() - piece.trim_start().len(),
    };
    let line = migration.text[..offset + within].matches('\n').count() + 1;
    let one_line = piece.split_whitespace().collect::<Vec<_>>().join(" ");
    let excerpt: String = one_line.chars().take(160).collect();
    // The migrator may not create an untrusted extension (the preflight
    // names it first; this is for what it cannot see, e.g. inside DO blocks).
    let extension_hint = if *db.code() == postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
        && one_line.to_ascii_uppercase().contains("CREATE EXTENSION")
    {
        "\n  hint: only an admin may create this extension: add it to APP_DB_EXTENSIONS and run `cargo xtask \
         db-provision`, which creates it before the migrations run"
    } else {
        ""
    };
    format_err!(
        "migration `{}` failed at statement {} of {total} (line {line} of {}.sql): {} (SQLSTATE {}){}\n  statement: {}{}{extension_hint}",
        migration.tag,
        index + 1,
        migration.tag,
        db.message(),
        db.code().code(),
        db.detail().map(|d| format!("; {d}")).unwrap_or_default(),
        excerpt,
        if one_line.chars().count() > 160 { "…" } else { "" }
    )
}
