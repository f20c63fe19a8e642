//! What is applied, pending, changed, out of order or unknown: the journal
//! against the bookkeeping rows, by drizzle's own rule (a migration counts as
//! applied when its `when` is not greater than the newest `created_at`).

use crate::bookkeeping::{Row, TableState};
use crate::folder::{Folder, Migration};
use crate::refusal::Refusal;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// A row with this `when` and this hash.
    Applied,
    /// Newer than every row: the next run applies it.
    Pending,
    /// A row with this `when`, but the file's hash differs.
    Changed { stored_hash: String, line_endings_only: bool },
    /// No row, yet not newer than the newest row: drizzle-kit skips it silently.
    OutOfOrder,
}

#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub migration: &'a Migration,
    pub state: State,
    pub row_id: Option<i32>,
}

#[derive(Clone, Debug)]
pub struct Status<'a> {
    pub entries: Vec<Entry<'a>>,
    /// Rows whose `created_at` matches no journal entry.
    pub unknown_rows: Vec<Row>,
    /// Rows with a NULL `created_at` (drizzle would re-run everything).
    pub null_rows: Vec<Row>,
    pub duplicates: Vec<Refusal>,
    /// `.sql` files the journal does not list, each with the fix: never
    /// applied by either tool, so `db-status` names them (exit 2).
    pub unlisted: Vec<String>,
    /// The newest `created_at`, the line between applied and pending.
    pub last_created_at: Option<i64>,
    pub table: TableState,
}

/// Compares the folder with the bookkeeping.
pub fn status<'a>(folder: &'a Folder, table: &TableState) -> Status<'a> {
    let rows: &[Row] = table.rows();
    let last_created_at = rows.iter().filter_map(|r| r.created_at).max();
    let entries = folder
        .migrations
        .iter()
        .map(|migration| {
            let matching: Vec<&Row> = rows.iter().filter(|r| r.created_at == Some(migration.when)).collect();
            let (state, row_id) = match matching.iter().find(|r| r.hash == migration.hash) {
                Some(row) => (State::Applied, Some(row.id)),
                None => match matching.first() {
                    Some(row) => (
                        State::Changed {
                            stored_hash: row.hash.clone(),
                            line_endings_only: migration.differs_only_in_line_endings(&row.hash),
                        },
                        Some(row.id),
                    ),
                    None if last_created_at.is_some_and(|last| migration.when <= last) => (State::OutOfOrder, None),
                    None => (State::Pending, None),
                },
            };
            Entry { migration, state, row_id }
        })
        .collect();
    let unknown_rows = rows
        .iter()
        .filter(|r| r.created_at.is_some_and(|at| !folder.migrations.iter().any(|m| m.when == at)))
        .cloned()
        .collect();
    let null_rows = rows.iter().filter(|r| r.created_at.is_none()).cloned().collect();
    Status {
        entries,
        unknown_rows,
        null_rows,
        duplicates: folder.duplicates.clone(),
        unlisted: folder.unlisted_notes(),
        last_created_at,
        table: table.clone(),
    }
}

impl State {
    /// A word for reports and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Changed { line_endings_only: true, .. } => "changed (line endings only)",
            State::Changed { .. } => "changed",
            State::OutOfOrder => "out of order",
        }
    }
}

impl Status<'_> {
    /// The status as JSON, for `db-status --json`.
    pub fn to_json(&self, table: &str) -> serde_json::Value {
        use serde_json::json;
        let rows = |rows: &[Row]| -> Vec<serde_json::Value> {
            rows.iter().map(|r| json!({"id": r.id, "hash": r.hash, "created_at": r.created_at})).collect()
        };
        json!({
            "table": table,
            "migrations": self.entries.iter().map(|e| json!({
                "tag": e.migration.tag,
                "when": e.migration.when,
                "state": match e.state {
                    State::Applied => "applied",
                    State::Pending => "pending",
                    State::Changed { .. } => "changed",
                    State::OutOfOrder => "out_of_order",
                },
                "line_endings_only": matches!(e.state, State::Changed { line_endings_only: true, .. }),
                "hash": e.migration.hash,
                "row_id": e.row_id,
                "ends_transaction_at_line": e.migration.ends_transaction().map(|(line, _)| line),
            })).collect::<Vec<_>>(),
            "unknown_rows": rows(&self.unknown_rows),
            "null_created_at_rows": rows(&self.null_rows),
            "duplicates": self.duplicates.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "unlisted_files": self.unlisted,
            "summary": {
                "applied": self.count(|s| *s == State::Applied),
                "pending": self.count(|s| *s == State::Pending),
                "changed": self.count(|s| matches!(s, State::Changed { .. })),
                "out_of_order": self.count(|s| *s == State::OutOfOrder),
                "unknown_rows": self.unknown_rows.len(),
                "null_created_at_rows": self.null_rows.len(),
            },
            "ok": !self.has_findings(),
        })
    }

    pub fn pending(&self) -> Vec<&Migration> {
        self.entries.iter().filter(|e| e.state == State::Pending).map(|e| e.migration).collect()
    }

    pub fn count(&self, wanted: fn(&State) -> bool) -> usize {
        self.entries.iter().filter(|e| wanted(&e.state)).count()
    }

    /// Findings that make `db-status` exit 2: every problem it lists,
    /// files the journal does not list included.
    pub fn has_findings(&self) -> bool {
        !self.refusals(false).is_empty() || !self.unlisted.is_empty()
    }

    /// Where the database and the folder disagree (an edited or skipped
    /// migration, rows from elsewhere, duplicates): what `db-check` fails on.
    /// Pending migrations, and problems of files not applied yet, are not.
    pub fn disagreements(&self) -> Vec<Refusal> {
        let mut disagreeing = self.clone();
        disagreeing.entries.retain(|e| e.state != State::Pending);
        disagreeing.refusals(false)
    }

    /// Everything drizzle-kit would get silently wrong, each with the fix. A
    /// run refuses to start while any remains (`allow_changed` lets edited
    /// applied migrations through).
    pub fn refusals(&self, allow_changed: bool) -> Vec<Refusal> {
        let mut problems: Vec<Refusal> = self.duplicates.clone();
        let newest = self
            .entries
            .iter()
            .filter(|e| Some(e.migration.when) == self.last_created_at)
            .map(|e| format!("`{}`", e.migration.tag))
            .next()
            .unwrap_or_else(|| "a row".to_string());
        for entry in &self.entries {
            let m = entry.migration;
            let tag = m.tag.clone();
            match &entry.state {
                State::OutOfOrder => problems.push(Refusal::OutOfOrder {
                    tag,
                    when: m.when,
                    newest: newest.clone(),
                    last_created_at: self.last_created_at.unwrap_or_default(),
                }),
                State::Pending if m.lossy => problems.push(Refusal::NotUtf8 { tag }),
                State::Pending if refused(m).is_some() => {
                    let (line, keyword, reason) = refused(m).unwrap_or_default();
                    problems.push(Refusal::Statement { tag, line, keyword, reason })
                }
                State::Pending if m.text.starts_with('\u{FEFF}') => problems.push(Refusal::ByteOrderMark { tag }),
                State::Changed { stored_hash, line_endings_only } if !allow_changed => {
                    problems.push(Refusal::Changed {
                        tag,
                        line_endings_only: *line_endings_only,
                        stored_hash: stored_hash.clone(),
                        file_hash: m.hash.clone(),
                    })
                }
                _ => {}
            }
        }
        for row in &self.null_rows {
            problems.push(Refusal::NullCreatedAt { id: row.id });
        }
        for row in &self.unknown_rows {
            problems.push(Refusal::UnknownRow {
                id: row.id,
                created_at: row.created_at.unwrap_or_default(),
                hash: row.hash.clone(),
            });
        }
        problems
    }
}

/// The first transaction statement of `migration` the runner refuses.
fn refused(migration: &Migration) -> Option<(usize, String, String)> {
    crate::transactions::statements(&migration.text).into_iter().find_map(|s| match s.control {
        crate::transactions::Control::Refused(reason) => Some((s.line, s.keyword, reason)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::{decode, hash};

    fn migration(tag: &str, when: i64, text: &str) -> Migration {
        let (text, lossy) = decode(text.as_bytes());
        Migration { idx: 0, tag: tag.into(), when, breakpoints: true, hash: hash(&text), text, lossy }
    }

    fn folder(migrations: Vec<Migration>) -> Folder {
        Folder { dir: "m".into(), migrations, duplicates: Vec::new(), unlisted: Vec::new() }
    }

    fn row(id: i32, hash: &str, created_at: Option<i64>) -> Row {
        Row { id, hash: hash.into(), created_at }
    }

    #[test]
    fn classifies_by_drizzles_rule() {
        let a = migration("0000_a", 100, "SELECT 1;");
        let b = migration("0001_b", 200, "SELECT 2;");
        let late = migration("0002_late", 150, "SELECT 3;");
        let c = migration("0003_c", 300, "SELECT 4;\n");
        let folder = folder(vec![a.clone(), b.clone(), late, c.clone()]);
        let table = TableState::Present {
            rows: vec![
                row(1, &a.hash, Some(100)),
                row(2, &hash("SELECT 2;\r\n"), Some(200)),
                row(3, "ffff", Some(999)),
            ],
            has_name_column: false,
        };
        let status = status(&folder, &table);
        let states: Vec<&State> = status.entries.iter().map(|e| &e.state).collect();
        assert_eq!(states[0], &State::Applied);
        assert!(matches!(states[1], State::Changed { line_endings_only: false, .. }));
        assert_eq!(states[2], &State::OutOfOrder);
        // 300 < 999: the unknown row makes drizzle skip it too.
        assert_eq!(states[3], &State::OutOfOrder);
        assert_eq!(status.unknown_rows.len(), 1);
        assert!(status.has_findings());
        let refusals = status.refusals(false);
        let has = |pick: &dyn Fn(&Refusal) -> bool| refusals.iter().any(pick);
        assert!(
            has(&|r| matches!(r, Refusal::OutOfOrder { tag, when: 150, .. } if tag == "0002_late")),
            "{refusals:?}"
        );
        assert!(
            has(&|r| matches!(r, Refusal::Changed { tag, line_endings_only: false, .. } if tag == "0001_b")),
            "{refusals:?}"
        );
        assert!(has(&|r| matches!(r, Refusal::UnknownRow { id: 3, created_at: 999, .. })), "{refusals:?}");
        assert!(!status.refusals(true).iter().any(|r| matches!(r, Refusal::Changed { .. })));
    }

    #[test]
    fn crlf_only_edits_and_null_rows_are_named() {
        let a = migration("0000_a", 100, "SELECT 1;\r\n");
        let folder = folder(vec![a]);
        let table = TableState::Present {
            rows: vec![row(1, &hash("SELECT 1;\n"), Some(100)), row(2, "abc", None)],
            has_name_column: false,
        };
        let status = status(&folder, &table);
        assert!(matches!(status.entries[0].state, State::Changed { line_endings_only: true, .. }));
        let refusals = status.refusals(false);
        assert!(refusals.iter().any(|r| matches!(r, Refusal::Changed { line_endings_only: true, .. })), "{refusals:?}");
        assert!(refusals.contains(&Refusal::NullCreatedAt { id: 2 }), "{refusals:?}");
    }

    #[test]
    fn a_missing_table_means_everything_is_pending() {
        let folder = folder(vec![migration("0000_a", 100, "x"), migration("0001_b", 200, "y")]);
        let status = status(&folder, &TableState::Missing);
        assert_eq!(status.pending().len(), 2);
        assert!(!status.has_findings());
    }
}
