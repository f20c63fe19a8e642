//! What stops a migration run before its first statement, as values:
//! each is something drizzle-kit would get silently wrong (a journal that
//! lists a migration twice, a file edited after it ran, an entry it would
//! skip, bookkeeping rows it would misread). Tests match the variant;
//! `Display` says it to a person, with the fix.

use std::fmt;

use roles::model::Attribute;

/// What stops a run before its first statement: each is something
/// drizzle-kit would get silently wrong. `Display` says it with the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The journal lists a tag twice.
    DuplicateTag { tag: String },
    /// Two journal entries share a `when`: drizzle records migrations by it.
    SameWhen { first: String, second: String, when: i64 },
    /// Not applied, but older than the newest applied migration: drizzle-kit skips it.
    OutOfOrder { tag: String, when: i64, newest: String, last_created_at: i64 },
    /// The file is not valid UTF-8.
    NotUtf8 { tag: String },
    /// A transaction statement the runner refuses, at a line.
    Statement { tag: String, line: usize, keyword: String, reason: String },
    /// The file starts with a byte order mark.
    ByteOrderMark { tag: String },
    /// An applied migration's file changed after it ran.
    Changed { tag: String, line_endings_only: bool, stored_hash: String, file_hash: String },
    /// A bookkeeping row without `created_at`: drizzle-kit re-runs everything.
    NullCreatedAt { id: i32 },
    /// A bookkeeping row no journal entry records.
    UnknownRow { id: i32, created_at: i64, hash: String },
    /// A pending migration creates an extension that is not trusted: only
    /// an admin may create it.
    UntrustedExtension { tag: String, line: usize, name: String },
    /// A pending migration creates an extension this server does not have.
    MissingExtension { tag: String, line: usize, name: String },
    /// A pending migration's statement would undo the model (the guard).
    Guarded(crate::guard::Finding),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::DuplicateTag { tag } => write!(f, "the journal lists tag `{tag}` twice; remove one entry"),
            Refusal::SameWhen { first, second, when } => write!(
                f,
                "`{first}` and `{second}` have the same `when` ({when}); drizzle records migrations by `when`, so one \
                 would be skipped: give the later one a greater `when` in meta/_journal.json"
            ),
            Refusal::OutOfOrder { tag, when, newest, last_created_at } => write!(
                f,
                "`{tag}` (when {when}) is not applied but is older than the newest applied migration ({newest}, \
                 created_at {last_created_at}): drizzle-kit would skip it silently. Give it a `when` newer than \
                 {last_created_at} in meta/_journal.json and move it to the end of the journal (or regenerate it)"
            ),
            Refusal::NotUtf8 { tag } => write!(
                f,
                "`{tag}.sql` is not valid UTF-8: drizzle-kit would replace the bad bytes with U+FFFD and apply \
                 altered SQL; save the file as UTF-8"
            ),
            Refusal::Statement { tag, line, keyword, reason } => {
                write!(f, "`{tag}.sql` line {line}: `{keyword}` is refused: {reason}")
            }
            Refusal::ByteOrderMark { tag } => write!(
                f,
                "`{tag}.sql` starts with a UTF-8 byte order mark, which PostgreSQL rejects as a syntax error \
                 (drizzle-kit fails on it too, without a message): save the file as UTF-8 without a BOM"
            ),
            Refusal::Changed { tag, line_endings_only, stored_hash, file_hash } => write!(
                f,
                "applied migration `{tag}` was {} after it ran (hash in the database {}…, file {}…): restore the \
                 file as it was (git checkout), or pass --allow-changed to accept it",
                if *line_endings_only { "changed in its line endings only (CRLF/LF)" } else { "edited" },
                &stored_hash[..stored_hash.len().min(12)],
                &file_hash[..file_hash.len().min(12)]
            ),
            Refusal::NullCreatedAt { id } => write!(
                f,
                "bookkeeping row id {id} has a NULL created_at: drizzle-kit would re-run every migration. Set it to \
                 the `when` of the migration it records (UPDATE … SET created_at = <when> WHERE id = {id})"
            ),
            Refusal::UnknownRow { id, created_at, hash } => write!(
                f,
                "bookkeeping row id {id} (created_at {created_at}, hash {}…) matches no journal entry: this \
                 database was migrated from another folder. Point --migrations-dir at that folder, or delete the \
                 row if it is stale",
                &hash[..hash.len().min(12)]
            ),
            Refusal::UntrustedExtension { tag, line, name } => write!(
                f,
                "`{tag}.sql` line {line} creates extension `{name}`, which is not trusted: only an admin may create \
                 it. Add it to APP_DB_EXTENSIONS (comma-separated) and run `cargo xtask db-provision`, which creates \
                 it as the admin before the migrations run; the migration's `CREATE EXTENSION IF NOT EXISTS` is then \
                 a no-op"
            ),
            Refusal::MissingExtension { tag, line, name } => write!(
                f,
                "`{tag}.sql` line {line} creates extension `{name}`, which this server does not have: install its \
                 package on the server (pgvector: postgresql-<major>-pgvector), then add it to APP_DB_EXTENSIONS"
            ),
            Refusal::Guarded(finding) => write!(f, "{finding}"),
        }
    }
}

/// The error a run stops with when the folder or the bookkeeping is
/// refused: nothing was applied. Callers match [`Refused::refusals`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub refusals: Vec<Refusal>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        roles::plan::findings::write_problems(f, "nothing was applied", "first", &self.refusals)
    }
}

impl std::error::Error for Refused {}

/// Why the session of `DATABASE_MIGRATOR_URL` is not the migrator's: the
/// runner checks it positively before anything runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotTheMigrator {
    /// It logs in as a runtime role the environment names (`var`).
    RuntimeRole { user: String, var: &'static str },
    /// It logs in as a superuser.
    Superuser { user: String },
    /// It lacks what the migrator has.
    Lacks { user: String, lacks: Vec<Lack> },
}

/// What a session lacks to be the migrator's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lack {
    DatabaseOwner { database: String },
    SchemaOwner { schemas: Vec<String> },
    Attribute(Attribute),
    BookkeepingOwner { schema: String },
    BookkeepingCreate { schema: String },
}

impl fmt::Display for Lack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lack::DatabaseOwner { database } => write!(f, "does not own database `{database}`"),
            Lack::SchemaOwner { schemas } => write!(
                f,
                "does not own schema {}",
                schemas.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            ),
            Lack::Attribute(attribute) => write!(f, "lacks {}", attribute.keyword()),
            Lack::BookkeepingOwner { schema } => write!(f, "does not own the bookkeeping schema `{schema}`"),
            Lack::BookkeepingCreate { schema } => write!(f, "may not create the bookkeeping schema `{schema}`"),
        }
    }
}

impl fmt::Display for NotTheMigrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotTheMigrator::RuntimeRole { user, var } => write!(
                f,
                "DATABASE_MIGRATOR_URL logs in as `{user}`, the same role as {var}: migrations run as the migrator \
                 (APP_DB_MIGRATOR_USER), never as a runtime role. Fix DATABASE_MIGRATOR_URL"
            ),
            NotTheMigrator::Superuser { user } => write!(
                f,
                "DATABASE_MIGRATOR_URL logs in as `{user}`, a superuser: migrations run as the migrator role \
                 (app_migrator). Run `cargo xtask db-provision` and use the migrator's DSN"
            ),
            NotTheMigrator::Lacks { user, lacks } => write!(
                f,
                "`{user}` (DATABASE_MIGRATOR_URL) is not the migrator: it {}. Run `cargo xtask db-provision` to set \
                 the migrator up, and point DATABASE_MIGRATOR_URL at it",
                lacks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl std::error::Error for NotTheMigrator {}
