//! Catalog codes as values that print as words: a relation's kind
//! (`pg_class.relkind`) and the objects of a default-privileges row
//! (`pg_default_acl.defaclobjtype`). The codes stay inside the snapshot's
//! reads and the SQL; everything a person reads says the word.

use std::fmt;

/// `pg_class.relkind` of a relation the model looks at. Ordered by code,
/// as the catalogs order them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    ForeignTable,
    Sequence,
    /// A kind the model does not read (an index, a composite type, …).
    Other(char),
}

impl RelKind {
    /// The kind of a `relkind` code.
    pub fn from_code(code: char) -> RelKind {
        match code {
            'r' => RelKind::Table,
            'p' => RelKind::PartitionedTable,
            'v' => RelKind::View,
            'm' => RelKind::MaterializedView,
            'f' => RelKind::ForeignTable,
            'S' => RelKind::Sequence,
            other => RelKind::Other(other),
        }
    }

    /// Its `relkind` code.
    pub fn code(self) -> char {
        match self {
            RelKind::Table => 'r',
            RelKind::PartitionedTable => 'p',
            RelKind::View => 'v',
            RelKind::MaterializedView => 'm',
            RelKind::ForeignTable => 'f',
            RelKind::Sequence => 'S',
            RelKind::Other(code) => code,
        }
    }

    /// A table or a partitioned table: what RLS and policies apply to.
    pub fn is_table(self) -> bool {
        matches!(self, RelKind::Table | RelKind::PartitionedTable)
    }

    /// The keyword `ALTER … OWNER` needs.
    pub fn alter_keyword(self) -> &'static str {
        match self {
            RelKind::View => "VIEW",
            RelKind::MaterializedView => "MATERIALIZED VIEW",
            RelKind::ForeignTable => "FOREIGN TABLE",
            RelKind::Sequence => "SEQUENCE",
            _ => "TABLE",
        }
    }

    /// A word for reports.
    pub fn noun(self) -> &'static str {
        match self {
            RelKind::Table | RelKind::Other(_) => "table",
            RelKind::PartitionedTable => "partitioned table",
            RelKind::View => "view",
            RelKind::MaterializedView => "materialized view",
            RelKind::ForeignTable => "foreign table",
            RelKind::Sequence => "sequence",
        }
    }
}

impl Ord for RelKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.code().cmp(&other.code())
    }
}

impl PartialOrd for RelKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.noun())
    }
}

/// The objects a default-privileges row applies to. Ordered by code, as
/// the catalogs order them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefaultObjects {
    Tables,
    Sequences,
    Functions,
    Types,
    Schemas,
    LargeObjects,
    /// A code this version does not know.
    Other(char),
}

impl DefaultObjects {
    /// The objects of a `defaclobjtype` code.
    pub fn from_code(code: char) -> DefaultObjects {
        match code {
            'r' => DefaultObjects::Tables,
            'S' => DefaultObjects::Sequences,
            'f' => DefaultObjects::Functions,
            'T' => DefaultObjects::Types,
            'n' => DefaultObjects::Schemas,
            'L' => DefaultObjects::LargeObjects,
            other => DefaultObjects::Other(other),
        }
    }

    /// Its `defaclobjtype` code.
    pub fn code(self) -> char {
        match self {
            DefaultObjects::Tables => 'r',
            DefaultObjects::Sequences => 'S',
            DefaultObjects::Functions => 'f',
            DefaultObjects::Types => 'T',
            DefaultObjects::Schemas => 'n',
            DefaultObjects::LargeObjects => 'L',
            DefaultObjects::Other(code) => code,
        }
    }

    /// What follows `ON` in `ALTER DEFAULT PRIVILEGES … GRANT … ON`.
    pub fn keyword(self) -> Option<&'static str> {
        Some(match self {
            DefaultObjects::Tables => "TABLES",
            DefaultObjects::Sequences => "SEQUENCES",
            DefaultObjects::Functions => "FUNCTIONS",
            DefaultObjects::Types => "TYPES",
            DefaultObjects::Schemas => "SCHEMAS",
            DefaultObjects::LargeObjects => "LARGE OBJECTS",
            DefaultObjects::Other(_) => return None,
        })
    }

    /// The objects, in words.
    pub fn plural(self) -> &'static str {
        match self {
            DefaultObjects::Tables => "tables",
            DefaultObjects::Sequences => "sequences",
            DefaultObjects::Functions => "functions",
            DefaultObjects::Types => "types",
            DefaultObjects::Schemas => "schemas",
            DefaultObjects::LargeObjects => "large objects",
            DefaultObjects::Other(_) => "objects",
        }
    }

    /// One of them, in words.
    pub fn noun(self) -> &'static str {
        match self {
            DefaultObjects::Tables => "table",
            DefaultObjects::Sequences => "sequence",
            DefaultObjects::Functions => "function",
            DefaultObjects::Types => "type",
            DefaultObjects::Schemas => "schema",
            DefaultObjects::LargeObjects | DefaultObjects::Other(_) => "object",
        }
    }
}

impl Ord for DefaultObjects {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.code().cmp(&other.code())
    }
}

impl PartialOrd for DefaultObjects {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for DefaultObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.plural())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_print_as_words() {
        for code in ['r', 'p', 'v', 'm', 'f', 'S', 'i'] {
            assert_eq!(RelKind::from_code(code).code(), code);
        }
        for code in ['r', 'S', 'f', 'T', 'n', 'L', 'x'] {
            assert_eq!(DefaultObjects::from_code(code).code(), code);
        }
        assert_eq!(format!("{:<12}|", RelKind::from_code('m')), "materialized view|");
        assert_eq!(DefaultObjects::from_code('S').to_string(), "sequences");
        assert_eq!(DefaultObjects::from_code('x').keyword(), None);
        assert!(DefaultObjects::Sequences < DefaultObjects::Tables, "by code, as before: 'S' < 'r'");
        assert!(RelKind::Sequence < RelKind::Table);
    }
}
