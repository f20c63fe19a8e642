//! Transaction control written into migrations. Large projects end
//! drizzle's batch transaction inside a migration (`COMMIT;` then
//! `CREATE INDEX CONCURRENTLY`, or an enum value used after being added),
//! sometimes opening one again (`BEGIN;`). drizzle-kit runs them; so does the
//! runner, with the semantics docs/migrations.md states. What would silently discard
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
    let mut scan = Scanner {
        text,
        bytes: text.as_bytes(),
        i: 0,
        line: 1,
        at_start: true,
        words_in_statement: 0,
        atomic_depth: 0,
        previous_word: String::new(),
        heads: Vec::new(),
    };
    while scan.i < scan.bytes.len() {
        let c = scan.bytes[scan.i];
        match c {
            b'-' if scan.next_is(b'-') => scan.line_comment(),
            b'/' if scan.next_is(b'*') => scan.block_comment(),
            b'\'' | b'"' => scan.quoted(c),
            b'$' => scan.dollar(),
            b';' => {
                if scan.atomic_depth == 0 {
                    scan.at_start = true;
                    scan.words_in_statement = 0;
                }
                scan.i += 1;
            }
            b'\n' => {
                scan.line += 1;
                scan.i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => scan.word(),
            // A qualified name (`"public"."status"`) stays in the head.
            b'.' if scan.words_in_statement > 0 => scan.i += 1,
            _ => {
                if !c.is_ascii_whitespace() {
                    scan.at_start = false;
                    scan.words_in_statement = HEAD_WORDS;
                    // `begin, atomic` is no `BEGIN ATOMIC`.
                    scan.previous_word.clear();
                }
                scan.i += 1;
            }
        }
    }
    scan.heads
}

/// A lexer over SQL text that keeps only what [`statement_heads`] needs.
struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    i: usize,
    line: usize,
    at_start: bool,
    /// Inside the head of the current statement: how many words were read.
    words_in_statement: usize,
    /// `BEGIN ATOMIC` bodies: depth of BEGIN/CASE … END nesting.
    atomic_depth: usize,
    previous_word: String,
    heads: Vec<Head>,
}

impl Scanner<'_> {
    fn next_is(&self, byte: u8) -> bool {
        self.bytes.get(self.i + 1) == Some(&byte)
    }

    fn count_lines(&self, to: usize) -> usize {
        self.bytes[self.i..to].iter().filter(|b| **b == b'\n').count()
    }

    /// Moves to `to`, counting the lines passed.
    fn skip_to(&mut self, to: usize) {
        self.line += self.count_lines(to);
        self.i = to;
    }

    fn line_comment(&mut self) {
        self.i = self.text[self.i..].find('\n').map(|n| self.i + n).unwrap_or(self.bytes.len());
    }

    /// Block comments nest in PostgreSQL.
    fn block_comment(&mut self) {
        let (mut depth, mut j) = (1, self.i + 2);
        while j < self.bytes.len() && depth > 0 {
            if self.bytes[j] == b'/' && self.bytes.get(j + 1) == Some(&b'*') {
                depth += 1;
                j += 2;
            } else if self.bytes[j] == b'*' && self.bytes.get(j + 1) == Some(&b'/') {
                depth -= 1;
                j += 2;
            } else {
                j += 1;
            }
        }
        self.skip_to(j);
    }

    /// A string or a quoted identifier; E'…' strings take backslash escapes.
    /// The `E` must be a token of its own: in `name'a\'` (a typed literal of
    /// type `name`) the backslash is an ordinary character and the quote
    /// after it ends the string.
    fn quoted(&mut self, quote: u8) {
        let (bytes, i) = (self.bytes, self.i);
        let identifier_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        let escapes = quote == b'\''
            && i > 0
            && matches!(bytes[i - 1], b'E' | b'e')
            && (i == 1 || !identifier_byte(bytes[i - 2]));
        let mut j = i + 1;
        while j < bytes.len() {
            if escapes && bytes[j] == b'\\' {
                j += 2;
                continue;
            }
            if bytes[j] == quote {
                if bytes.get(j + 1) == Some(&quote) {
                    j += 2;
                    continue;
                }
                break;
            }
            j += 1;
        }
        let end = (j + 1).min(bytes.len());
        let in_head = self.words_in_statement > 0 && self.words_in_statement < HEAD_WORDS;
        if quote == b'"' && self.atomic_depth == 0 && in_head {
            if let Some(head) = self.heads.last_mut() {
                head.words.push(self.text[i..end].to_string());
            }
            self.words_in_statement += 1;
        } else {
            self.words_in_statement = HEAD_WORDS;
        }
        self.skip_to(end);
        self.at_start = false;
    }

    /// `$tag$ … $tag$`, where tag is empty or an identifier (`$1` is a parameter).
    fn dollar(&mut self) {
        let (text, bytes, i) = (self.text, self.bytes, self.i);
        let tag_end = text[i + 1..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).map(|n| i + 1 + n);
        match tag_end {
            Some(end) if bytes[end] == b'$' && !bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()) => {
                let tag = &text[i..=end];
                let close = text[end + 1..].find(tag).map(|n| end + 1 + n + tag.len()).unwrap_or(bytes.len());
                self.skip_to(close);
            }
            _ => self.i += 1,
        }
        self.at_start = false;
        self.words_in_statement = HEAD_WORDS;
    }

    fn word(&mut self) {
        let i = self.i;
        let end = self.text[i..]
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
            .map(|n| i + n)
            .unwrap_or(self.bytes.len());
        let word = self.text[i..end].to_ascii_uppercase();
        if self.atomic_depth > 0 {
            match word.as_str() {
                "BEGIN" | "CASE" => self.atomic_depth += 1,
                "END" => self.atomic_depth -= 1,
                _ => {}
            }
        } else if word == "ATOMIC" && self.previous_word == "BEGIN" && !self.at_start {
            self.atomic_depth = 1;
        } else if self.at_start {
            self.heads.push(Head { offset: i, line: self.line, words: vec![word.clone()] });
            self.at_start = false;
            self.words_in_statement = 1;
        } else if self.words_in_statement < HEAD_WORDS {
            if let Some(head) = self.heads.last_mut() {
                head.words.push(word.clone());
            }
            self.words_in_statement += 1;
        }
        self.previous_word = word;
        self.i = end;
    }
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

/// How many top-level statements `text` holds.
pub fn statement_count(text: &str) -> usize {
    statement_heads(text).len()
}

/// The first top-level `ALTER TYPE … ADD VALUE` of a migration, as its
/// line: a new enum value that later statements may use only once the
/// transaction that added it has committed (SQLSTATE 55P04 before).
pub fn adds_enum_value(text: &str) -> Option<usize> {
    statement_heads(text)
        .into_iter()
        .find(|h| {
            h.words.len() >= 4
                && h.words[0] == "ALTER"
                && h.words[1] == "TYPE"
                && h.words[2..].windows(2).any(|pair| pair[0] == "ADD" && pair[1] == "VALUE")
        })
        .map(|h| h.line)
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
    fn finds_the_enum_values_a_migration_adds() {
        assert_eq!(
            adds_enum_value("CREATE TABLE t (id int);\nALTER TYPE \"public\".\"status\" ADD VALUE 'failed';"),
            Some(2)
        );
        assert_eq!(adds_enum_value("alter type mood add value if not exists 'meh' before 'sad';"), Some(1));
        assert_eq!(adds_enum_value("ALTER TYPE app . \"my type\" ADD VALUE 'x';"), Some(1));
        // Renames, comments, strings and bodies add nothing.
        assert_eq!(adds_enum_value("ALTER TYPE s RENAME VALUE 'a' TO 'b';"), None);
        assert_eq!(adds_enum_value("ALTER TYPE s ADD ATTRIBUTE v int;"), None);
        assert_eq!(adds_enum_value("-- ALTER TYPE s ADD VALUE 'x';\nSELECT 'ALTER TYPE s ADD VALUE';"), None);
        assert_eq!(adds_enum_value("DO $$ BEGIN ALTER TYPE s ADD VALUE 'x'; END $$;"), None);
        assert_eq!(adds_enum_value("ALTER TABLE t ADD VALUE int;"), None);
    }

    #[test]
    fn only_an_e_of_its_own_starts_an_escape_string() {
        // A typed literal of type `name`: the backslash does not escape.
        assert_eq!(found("SELECT name'a\\';\nCOMMIT;"), ["2 COMMIT commit"]);
        assert_eq!(found("SELECT type'a\\';\nCOMMIT;"), ["2 COMMIT commit"]);
        // E'…' and e'…' do escape: the COMMIT is inside the string.
        assert!(found("SELECT E'a\\';\nCOMMIT;'").is_empty());
        assert!(found("SELECT (e'a\\';\nCOMMIT;')").is_empty());
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
        // Columns named begin and atomic start no body.
        let columns = "CREATE TABLE x (\"begin\" int, \"atomic\" int);\nSELECT begin, atomic FROM x;\nSAVEPOINT s;";
        assert_eq!(found(columns), ["3 SAVEPOINT refused"]);
    }
}
