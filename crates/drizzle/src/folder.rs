//! A drizzle-kit 0.31 migrations folder: `meta/_journal.json` and one
//! `<tag>.sql` per entry, decoded, split and hashed exactly as drizzle-orm's
//! `readMigrationFiles` does.

use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};
use sha2::{Digest, Sha256};

use crate::refusal::Refusal;

/// The text drizzle splits a migration on.
pub const BREAKPOINT: &str = crate::guard::BREAKPOINT;

/// One journal entry with its SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub idx: i64,
    pub tag: String,
    /// Epoch milliseconds at generation: the `created_at` of its bookkeeping row.
    pub when: i64,
    pub breakpoints: bool,
    /// The file decoded as drizzle decodes it (`Buffer.toString()`: UTF-8,
    /// invalid bytes replaced, a BOM kept).
    pub text: String,
    /// Lowercase hex SHA-256 of `text`'s UTF-8 bytes: the bookkeeping `hash`.
    pub hash: String,
    /// The file held bytes that are not UTF-8 (replaced by U+FFFD).
    pub lossy: bool,
}

impl Migration {
    /// The pieces drizzle sends, one simple-protocol query each.
    pub fn pieces(&self) -> Vec<&str> {
        split(&self.text)
    }

    /// The first `COMMIT` (or `END`) written in the migration: it ends the
    /// batch transaction, and what follows runs in autocommit.
    pub fn ends_transaction(&self) -> Option<(usize, String)> {
        crate::transactions::statements(&self.text)
            .into_iter()
            .find(|s| s.control == crate::transactions::Control::Commit)
            .map(|s| (s.line, s.keyword))
    }

    /// The line of its first top-level `ALTER TYPE … ADD VALUE`: should a
    /// later migration of the same transaction use the new value, the
    /// runner applies the transaction again, committing after this one.
    pub fn adds_enum_value(&self) -> Option<usize> {
        crate::transactions::adds_enum_value(&self.text)
    }

    /// A note for listings: where it leaves the batch transaction.
    pub fn transaction_note(&self) -> String {
        match (self.ends_transaction(), self.adds_enum_value()) {
            (Some((line, keyword)), _) => {
                format!(" ({keyword} at line {line}: what follows runs outside a transaction, as under drizzle-kit)")
            }
            (None, Some(line)) => format!(
                " (adds an enum value at line {line}: should a later migration of the batch use it, the batch \
                 commits after this one)"
            ),
            (None, None) => String::new(),
        }
    }

    /// Whether `stored` (a bookkeeping hash) is this file with other line
    /// endings: an edit that changed nothing but CRLF/LF.
    pub fn differs_only_in_line_endings(&self, stored: &str) -> bool {
        let lf = self.text.replace("\r\n", "\n");
        let crlf = lf.replace('\n', "\r\n");
        stored != self.hash && (hash(&lf) == stored || hash(&crlf) == stored)
    }
}

/// A migrations folder read from disk.
#[derive(Clone, Debug)]
pub struct Folder {
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
    /// Journal entries sharing a tag or a `when`: drizzle would apply one
    /// and skip the other.
    pub duplicates: Vec<Refusal>,
    /// `.sql` files in the folder that the journal does not list: neither
    /// drizzle-kit nor this runner ever applies them.
    pub unlisted: Vec<String>,
}

impl Folder {
    /// A line per file the journal does not list, naming the fix.
    pub fn unlisted_notes(&self) -> Vec<String> {
        self.unlisted
            .iter()
            .map(|file| {
                format!(
                    "`{file}` is in {} but not in meta/_journal.json, so it never runs: add it with `drizzle-kit \
                     generate --custom` (and move its SQL there), or delete it",
                    self.dir.display()
                )
            })
            .collect()
    }
}

/// Decodes like Node's `Buffer.toString()`: invalid sequences become U+FFFD
/// (the same maximal-subpart rule as `String::from_utf8_lossy`), a BOM stays.
pub fn decode(bytes: &[u8]) -> (String, bool) {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(text) => (text.to_string(), false),
        std::borrow::Cow::Owned(text) => (text, true),
    }
}

pub fn hash(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn split(text: &str) -> Vec<&str> {
    text.split(BREAKPOINT).collect()
}

/// Reads `dir`. A missing folder, journal or file is an error naming it;
/// drizzle-kit 1.0's folder-per-migration layout is recognised and refused.
pub fn read(dir: &Path) -> Result<Folder> {
    if !dir.is_dir() {
        bail!("migrations folder `{}` does not exist; pass the right one with --migrations-dir", dir.display());
    }
    let journal_path = dir.join("meta").join("_journal.json");
    if !journal_path.exists() {
        if let Some(example) = drizzle_v1_migration(dir) {
            bail!(
                "`{}` has drizzle-kit 1.0's layout (one folder per migration, e.g. `{}`), not a meta/_journal.json. \
                 This tool applies drizzle-kit 0.31's journal layout only; keep drizzle-kit at 0.31.x to generate \
                 migrations, or migrate with drizzle-kit 1.0 itself",
                dir.display(),
                example.display()
            );
        }
        bail!(
            "`{}` has no meta/_journal.json; is it a drizzle-kit migrations folder (`out` in drizzle.config.ts)?",
            dir.display()
        );
    }
    let journal_text =
        std::fs::read_to_string(&journal_path).with_context(|| format!("read `{}`", journal_path.display()))?;
    let journal: serde_json::Value = serde_json::from_str(&journal_text).map_err(|e| {
        format_err!("`{}` is not valid JSON: {e}; regenerate it with drizzle-kit", journal_path.display())
    })?;
    let entries = journal
        .get("entries")
        .and_then(|e| e.as_array())
        .ok_or_else(|| format_err!("`{}` has no `entries` array", journal_path.display()))?;

    let mut migrations = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        let field = |name: &str| {
            entry.get(name).ok_or_else(|| format_err!("`{}`: entry {position} has no `{name}`", journal_path.display()))
        };
        let tag = field("tag")?
            .as_str()
            .filter(|t| !t.is_empty() && !t.contains('/') && !t.contains('\\') && *t != "." && *t != "..")
            .ok_or_else(|| {
                format_err!("`{}`: entry {position} has a `tag` that is not a file name", journal_path.display())
            })?
            .to_string();
        let when = field("when")?.as_i64().ok_or_else(|| {
            format_err!("`{}`: entry `{tag}` has a `when` that is not a whole number", journal_path.display())
        })?;
        let idx = entry.get("idx").and_then(|v| v.as_i64()).unwrap_or(position as i64);
        let breakpoints = entry.get("breakpoints").and_then(|v| v.as_bool()).unwrap_or(true);
        let path = dir.join(format!("{tag}.sql"));
        let bytes = std::fs::read(&path).map_err(|e| {
            format_err!(
                "`{}` is listed in the journal but cannot be read ({e}); restore it or remove its entry",
                path.display()
            )
        })?;
        let (text, lossy) = decode(&bytes);
        let hash = hash(&text);
        migrations.push(Migration { idx, tag, when, breakpoints, text, hash, lossy });
    }

    let mut duplicates = Vec::new();
    for (i, a) in migrations.iter().enumerate() {
        for b in &migrations[i + 1..] {
            if a.tag == b.tag {
                duplicates.push(Refusal::DuplicateTag { tag: a.tag.clone() });
            }
            if a.when == b.when {
                duplicates.push(Refusal::SameWhen { first: a.tag.clone(), second: b.tag.clone(), when: a.when });
            }
        }
    }
    let unlisted = unlisted_files(dir, &migrations)?;
    Ok(Folder { dir: dir.to_path_buf(), migrations, duplicates, unlisted })
}

/// The `.sql` files directly in `dir` that no journal entry names, sorted.
fn unlisted_files(dir: &Path, migrations: &[Migration]) -> Result<Vec<String>> {
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("list `{}`", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(tag) = name.strip_suffix(".sql") else { continue };
        if !migrations.iter().any(|m| m.tag == tag) {
            unlisted.push(name);
        }
    }
    unlisted.sort();
    Ok(unlisted)
}

/// A `<dir>/<name>/migration.sql` file, the mark of drizzle-kit 1.0.
fn drizzle_v1_migration(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path().join("migration.sql")).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_keeps_a_bom_and_replaces_invalid_bytes() {
        assert_eq!(decode(b"\xEF\xBB\xBFSELECT 1"), ("\u{FEFF}SELECT 1".to_string(), false));
        let (text, lossy) = decode(b"SELECT '\xff\xfe' -- \xe2\x82");
        assert!(lossy);
        assert_eq!(text, "SELECT '\u{FFFD}\u{FFFD}' -- \u{FFFD}");
    }

    #[test]
    fn hashing_is_sha256_hex_of_the_decoded_text() {
        assert_eq!(hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_ne!(hash("SELECT 1;\n"), hash("SELECT 1;\r\n"), "no line-ending normalisation");
    }

    #[test]
    fn splitting_keeps_empty_pieces_and_several_statements_per_piece() {
        let text = "CREATE TABLE a (id int);--> statement-breakpoint\n--> statement-breakpoint\nSELECT 1; SELECT 2;";
        assert_eq!(split(text), ["CREATE TABLE a (id int);", "\n", "\nSELECT 1; SELECT 2;"]);
        assert_eq!(split("no breakpoints"), ["no breakpoints"]);
        // The marker must be exact: a near miss is SQL (a comment), not a split.
        assert_eq!(split("SELECT 1;\n-->statement-breakpoint\nSELECT 2;").len(), 1);
    }

    #[test]
    fn line_ending_only_edits_are_recognised() {
        let migration = |text: &str| {
            let (text, lossy) = decode(text.as_bytes());
            Migration { idx: 0, tag: "t".into(), when: 1, breakpoints: true, hash: hash(&text), text, lossy }
        };
        let crlf = migration("SELECT 1;\r\nSELECT 2;\r\n");
        assert!(crlf.differs_only_in_line_endings(&hash("SELECT 1;\nSELECT 2;\n")));
        let lf = migration("SELECT 1;\nSELECT 2;\n");
        assert!(lf.differs_only_in_line_endings(&hash("SELECT 1;\r\nSELECT 2;\r\n")));
        assert!(!lf.differs_only_in_line_endings(&hash("SELECT 3;\n")));
        assert!(!lf.differs_only_in_line_endings(&lf.hash));
    }
}
