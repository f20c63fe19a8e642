//! The committed exemptions file (`platform/db/rls-exemptions.toml`): tables
//! the app leaves without RLS on purpose, views over RLS tables,
//! `SECURITY DEFINER` functions and rules reviewed as safe, tables whose
//! policies are reviewed, and tables readable without a tenant by design,
//! each with a reason. `db-check` reads it, and so does `db-provision`, which
//! refuses to convert what `db-check` would then fail.

use std::path::Path;

use anyhow::{bail, format_err, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A table without RLS on purpose (also a partition or child).
    Table,
    /// A view or materialized view reviewed as safe.
    View,
    /// A `SECURITY DEFINER` function or procedure reviewed as safe.
    Function,
    /// A rule (`schema.table.rule`) reviewed as safe.
    Rule,
    /// A table whose policies are reviewed as they are (several permissive
    /// policies for one command, a `true` predicate).
    Policy,
    /// A table whose rows (all, or those matching `rows`) every tenant may
    /// read by design.
    Public,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Table, Kind::View, Kind::Function, Kind::Rule, Kind::Policy, Kind::Public];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::View => "view",
            Kind::Function => "function",
            Kind::Rule => "rule",
            Kind::Policy => "policy",
            Kind::Public => "public",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exemption {
    pub kind: Kind,
    /// `schema.name`; functions as `schema.name(argument types)`.
    pub name: String,
    pub reason: String,
    /// `[[public]]` only: the rows every tenant may read, as an SQL
    /// predicate over the table (all rows when absent).
    pub rows: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions(pub Vec<Exemption>);

impl Exemptions {
    /// Reads the file; a missing file means no exemptions.
    pub fn load(path: &Path) -> Result<Exemptions> {
        if !path.exists() {
            return Ok(Exemptions::default());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("read `{}`", path.display()))?;
        Exemptions::parse(&text).with_context(|| format!("`{}`", path.display()))
    }

    /// Parses `[[table]]`, `[[view]]`, `[[function]]`, `[[rule]]`,
    /// `[[policy]]` and `[[public]]` entries with `name` and `reason` (and
    /// `rows` for `[[public]]`); anything else is an error, so a typo never
    /// exempts silently.
    pub fn parse(text: &str) -> Result<Exemptions> {
        let table: toml::Table = text.parse().map_err(|e| format_err!("not valid TOML: {e}"))?;
        let mut all = Vec::new();
        for (key, value) in &table {
            let Some(kind) = Kind::ALL.into_iter().find(|k| k.key() == key) else {
                bail!(
                    "unknown section `{key}`: use {}",
                    Kind::ALL.iter().map(|k| format!("[[{}]]", k.key())).collect::<Vec<_>>().join(", ")
                );
            };
            let entries = value.as_array().ok_or_else(|| format_err!("`{key}` must be written [[{key}]]"))?;
            for entry in entries {
                let entry = entry.as_table().ok_or_else(|| format_err!("each [[{key}]] needs `name` and `reason`"))?;
                let allowed: &[&str] =
                    if kind == Kind::Public { &["name", "reason", "rows"] } else { &["name", "reason"] };
                if let Some(unknown) = entry.keys().find(|k| !allowed.contains(&k.as_str())) {
                    bail!(
                        "[[{key}]] has an unknown key `{unknown}`; only {} are allowed",
                        allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    );
                }
                let field = |field: &str| -> Result<String> {
                    entry
                        .get(field)
                        .and_then(|v| v.as_str())
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                        .ok_or_else(|| format_err!("a [[{key}]] entry has no `{field}`; every exemption needs both"))
                };
                let name = field("name")?;
                if !name.contains('.') {
                    bail!("[[{key}]] `{name}` is not schema-qualified; write `public.{name}`");
                }
                let rows = match entry.get("rows") {
                    None => None,
                    Some(value) => Some(
                        value
                            .as_str()
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .ok_or_else(|| {
                                format_err!("[[{key}]] `{name}`: `rows` must be an SQL predicate in a string")
                            })?
                            .to_string(),
                    ),
                };
                all.push(Exemption { kind, name, reason: field("reason")?, rows });
            }
        }
        all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(Exemptions(all))
    }

    pub fn find(&self, kind: Kind, name: &str) -> Option<&Exemption> {
        self.0.iter().find(|e| e.kind == kind && e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_with_reasons() {
        let exemptions = Exemptions::parse(
            "[[table]]\nname = \"public.telemetry\"\nreason = \"no tenant column\"\n\n\
             [[function]]\nname = \"public.lookup(uuid)\"\nreason = \"reviewed\"\n",
        )
        .unwrap();
        assert_eq!(exemptions.0.len(), 2);
        assert_eq!(exemptions.find(Kind::Table, "public.telemetry").unwrap().reason, "no tenant column");
        assert!(exemptions.find(Kind::View, "public.telemetry").is_none());
    }

    #[test]
    fn refuses_what_could_exempt_by_mistake() {
        for (text, expected) in [
            ("[[table]]\nname = \"public.t\"\n", "no `reason`"),
            ("[[table]]\nname = \"public.t\"\nreason = \"  \"\n", "no `reason`"),
            ("[[tables]]\nname = \"public.t\"\nreason = \"x\"\n", "unknown section `tables`"),
            ("[[table]]\nname = \"public.t\"\nreason = \"x\"\nrows = \"true\"\n", "unknown key `rows`"),
            ("[[public]]\nname = \"public.t\"\nreason = \"x\"\nrows = 1\n", "`rows` must be an SQL predicate"),
            ("[[table]]\nname = \"public.t\"\nreason = \"x\"\nexpires = 1\n", "unknown key `expires`"),
            ("[[table]]\nname = \"t\"\nreason = \"x\"\n", "not schema-qualified"),
            ("table = 1", "must be written [[table]]"),
            ("[[table]", "not valid TOML"),
        ] {
            let error = format!("{:#}", Exemptions::parse(text).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
