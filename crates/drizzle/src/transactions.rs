//! Transaction control written into migrations. Large projects end
//! drizzle's batch transaction inside a migration (`COMMIT;` then
//! `CREATE INDEX CONCURRENTLY`, or an enum value used after being added),
//! sometimes opening one again (`BEGIN;`). drizzle-kit runs them; so does the
//! runner, with the semantics the README states. What would silently discard
//! work (`ROLLBACK`, savepoints) or cannot be replayed (`PREPARE
//! TRANSACTION`, `COMMIT AND CHAIN`) is refused before anything runs.
//!
//! The scanner skips comments, string literals, quoted identifiers,
//! dollar-quoted bodies and `BEGIN ATOMIC … END` function bodies, so a
//! `COMMIT` inside a procedure or a `DO` block does not count.

/// What a top-level transaction statement does to the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// `COMMIT`, `END`: commits and leaves the session in autocommit.
    Commit,
    /// `BEGIN`, `START TRANSACTION`: opens a transaction again.
    Begin,
    /// Refused before anything runs; the reason names the fix.
    Refused(String),
}

/// One top-level transaction statement of a migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxStatement {
    /// 1-based line of the file.
    pub line: usize,
    /// Byte offset in the file.
    pub offset: usize,
    /// `COMMIT`, `BEGIN`, `ROLLBACK TO`, … as written (upper case).
    pub keyword: String,
    pub control: Control,
}

/// How many leading words of a statement are kept.
const HEAD_WORDS: usize = 6;

/// A top-level statement's start and first words: bare words upper-cased,
/// quoted identifiers as written (their quotes kept).
struct Head {
    offset: usize,
    line: usize,
    words: Vec<String>,
}

/// The leading words of every top-level statement.
fn statement_heads(text: &str) -> Vec<Head> {
    let bytes = text.as_bytes();
    let mut heads: Vec<Head> = Vec::new();
    let (mut i, mut line) = (0, 1);
    let mut at_start = true;
    // Inside the head of the current statement: how many words were read.
    let mut words_in_statement = 0;
    // `BEGIN ATOMIC` bodies: depth of BEGIN/CASE … END nesting.
    let mut atomic_depth = 0usize;
    let mut previous_word = String::new();
    let count_lines = |from: usize, to: usize| bytes[from..to].iter().filter(|b| **b == b'\n').count();
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map(|n| i + n).unwrap_or(bytes.len());
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // Block comments nest in PostgreSQL.
                let (mut depth, mut j) = (1, i + 2);
                while j < bytes.len() && depth > 0 {
                    if bytes[j] == b'/' && bytes.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                line += count_lines(i, j);
                i = j;
            }
            b'\'' | b'"' => {
                // E'…' strings take backslash escapes.
                let escapes = c == b'\'' && i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                let mut j = i + 1;
                while j < bytes.len() {
                    if escapes && bytes[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if bytes[j] == c {
                        if bytes.get(j + 1) == Some(&c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                let end = (j + 1).min(bytes.len());
                if c == b'"' && atomic_depth == 0 && words_in_statement > 0 && words_in_statement < HEAD_WORDS {
                    if let Some(head) = heads.last_mut() {
                        head.words.push(text[i..end].to_string());
                    }
                    words_in_statement += 1;
                } else {
                    words_in_statement = HEAD_WORDS;
                }
                line += count_lines(i, end);
                i = end;
                at_start = false;
            }
            b'$' => {
                // $tag$ … $tag$, where tag is empty or an identifier ($1 is a parameter).
                let tag_end =
                    text[i + 1..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).map(|n| i + 1 + n);
                match tag_end {
                    Some(end) if bytes[end] == b'$' && !bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()) => {
                        let tag = &text[i..=end];
                        let close = text[end + 1..].find(tag).map(|n| end + 1 + n + tag.len()).unwrap_or(bytes.len());
                        line += count_lines(i, close);
                        i = close;
                    }
                    _ => i += 1,
                }
                at_start = false;
                words_in_statement = HEAD_WORDS;
            }
            b';' => {
                if atomic_depth == 0 {
                    at_start = true;
                    words_in_statement = 0;
                }
                i += 1;
            }
            b'\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let end = text[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
                    .map(|n| i + n)
                    .unwrap_or(bytes.len());
                let word = text[i..end].to_ascii_uppercase();
                if atomic_depth > 0 {
                    match word.as_str() {
                        "BEGIN" | "CASE" => atomic_depth += 1,
                        "END" => atomic_depth -= 1,
                        _ => {}
                    }
                } else if word == "ATOMIC" && previous_word == "BEGIN" && !at_start {
                    atomic_depth = 1;
                } else if at_start {
                    heads.push(Head { offset: i, line, words: vec![word.clone()] });
                    at_start = false;
                    words_in_statement = 1;
                } else if words_in_statement < HEAD_WORDS {
                    if let Some(head) = heads.last_mut() {
                        head.words.push(word.clone());
                    }
                    words_in_statement += 1;
                }
                previous_word = word;
                i = end;
            }
            _ => {
                if !c.is_ascii_whitespace() {
                    at_start = false;
                    words_in_statement = HEAD_WORDS;
                }
                i += 1;
            }
        }
    }
    heads
}

/// Every top-level transaction statement of `text`, in order.
pub fn statements(text: &str) -> Vec<TxStatement> {
    let mut found = Vec::new();
    for head in statement_heads(text) {
        let (offset, line) = (head.offset, head.line);
        let first = head.words[0].clone();
        let second = head.words.get(1).cloned().unwrap_or_default();
        let (keyword, control) = match (first.as_str(), second.as_str()) {
            ("COMMIT" | "END", "PREPARED") => (
                format!("{first} PREPARED"),
                Control::Refused("two-phase commit cannot be part of a migration; remove it".into()),
            ),
            ("COMMIT" | "END", "AND") => (
                format!("{first} AND CHAIN"),
                Control::Refused("write `COMMIT;` and, where the next statements need one, `BEGIN;` instead".into()),
            ),
            ("COMMIT" | "END", _) => (first.clone(), Control::Commit),
            ("BEGIN", _) => (first.clone(), Control::Begin),
            ("START", "TRANSACTION") => ("START TRANSACTION".into(), Control::Begin),
            ("ROLLBACK" | "ABORT", "TO") => (
                format!("{first} TO SAVEPOINT"),
                Control::Refused("savepoints inside a migration silently discard work; remove them".into()),
            ),
            ("ROLLBACK" | "ABORT", _) => (
                first.clone(),
                Control::Refused(
                    "it would silently discard everything the batch did before it, and the migrations after it \
                     would run without a transaction; remove it (a failing statement already rolls its \
                     transaction back)"
                        .into(),
                ),
            ),
            ("SAVEPOINT" | "RELEASE", _) => (
                first.clone(),
                Control::Refused("savepoints inside a migration silently discard work; remove them".into()),
            ),
            ("PREPARE", "TRANSACTION") => (
                "PREPARE TRANSACTION".into(),
                Control::Refused("two-phase commit cannot be part of a migration; remove it".into()),
            ),
            _ => continue,
        };
        found.push(TxStatement { line, offset, keyword, control });
    }
    found
}

/// The extensions a migration creates at top level (`CREATE EXTENSION [IF
/// NOT EXISTS] name`), as `(line, name)`, the name as PostgreSQL reads it.
pub fn created_extensions(text: &str) -> Vec<(usize, String)> {
    statement_heads(text)
        .into_iter()
        .filter(|h| h.words.len() >= 3 && h.words[0] == "CREATE" && h.words[1] == "EXTENSION")
        .filter_map(|h| {
            let rest: &[String] = if h.words[2] == "IF" { h.words.get(5..)? } else { &h.words[2..] };
            let name = rest.first()?;
            let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => name.to_ascii_lowercase(),
            };
            Some((h.line, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        statements(text)
            .iter()
            .map(|s| {
                let what = match &s.control {
                    Control::Commit => "commit",
                    Control::Begin => "begin",
                    Control::Refused(_) => "refused",
                };
                format!("{} {} {what}", s.line, s.keyword)
            })
            .collect()
    }

    #[test]
    fn finds_the_extensions_a_migration_creates() {
        assert_eq!(
            created_extensions(
                "CREATE EXTENSION IF NOT EXISTS \"vector\";\n-- CREATE EXTENSION nope;\ncreate extension pg_trgm with schema public;\nCREATE EXTENSION \"uuid-ossp\";"
            ),
            [(1, "vector".to_string()), (3, "pg_trgm".to_string()), (4, "uuid-ossp".to_string())]
        );
        assert!(created_extensions("SELECT 'CREATE EXTENSION x'; DO $$ BEGIN CREATE EXTENSION y; END $$;").is_empty());
    }

    #[test]
    fn finds_transaction_statements_outside_comments_strings_and_bodies() {
        assert_eq!(found("CREATE TABLE a (id int);\nCOMMIT;"), ["2 COMMIT commit"]);
        assert_eq!(found("SELECT 1;\n\n  rollback ;"), ["3 ROLLBACK refused"]);
        assert_eq!(found("select 1; begin; select 2;"), ["1 BEGIN begin"]);
        assert_eq!(found("SELECT 1;\nSTART TRANSACTION;"), ["2 START TRANSACTION begin"]);
        assert_eq!(found("SELECT 1; PREPARE TRANSACTION 'x';"), ["1 PREPARE TRANSACTION refused"]);
        assert_eq!(
            found("COMMIT;\nSET lock_timeout = 0;\nCREATE INDEX CONCURRENTLY i ON t (x);\nBEGIN;"),
            ["1 COMMIT commit", "4 BEGIN begin"]
        );
        assert_eq!(
            found("END; SAVEPOINT a; RELEASE a; ROLLBACK TO a;"),
            ["1 END commit", "1 SAVEPOINT refused", "1 RELEASE refused", "1 ROLLBACK TO SAVEPOINT refused"]
        );
        assert_eq!(
            found("COMMIT AND CHAIN; COMMIT PREPARED 'x'; commit work;"),
            ["1 COMMIT AND CHAIN refused", "1 COMMIT PREPARED refused", "1 COMMIT commit"]
        );
        assert!(found("-- COMMIT;\n/* COMMIT; /* nested */ COMMIT; */ SELECT 'COMMIT; x';").is_empty());
        assert!(found("DO $$ BEGIN PERFORM 1; COMMIT; END $$;").is_empty());
        assert!(
            found("CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END $body$ LANGUAGE plpgsql;").is_empty()
        );
        assert!(found("SELECT E'it\\'s; COMMIT'; SELECT \"COMMIT\" FROM t;").is_empty());
        // SQL-standard function bodies end with END, which is not a COMMIT.
        assert!(found(
            "CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 END; \
             SELECT 2; END;\nSELECT 3;"
        )
        .is_empty());
        assert_eq!(found("CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END; COMMIT;"), ["1 COMMIT commit"]);
    }
}
