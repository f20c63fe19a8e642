//! The committed exemptions file (`platform/db/rls-exemptions.toml`): tables
//! the app leaves without RLS on purpose, views over RLS tables and
//! `SECURITY DEFINER` functions reviewed as safe, each with a reason.

use std::path::Path;

use anyhow::{bail, format_err, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Table,
    View,
    Function,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::View => "view",
            Kind::Function => "function",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exemption {
    pub kind: Kind,
    /// `schema.name`; functions as `schema.name(argument types)`.
    pub name: String,
    pub reason: String,
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

    /// Parses `[[table]]`, `[[view]]` and `[[function]]` entries with `name`
    /// and `reason`; anything else is an error, so a typo never exempts silently.
    pub fn parse(text: &str) -> Result<Exemptions> {
        let table: toml::Table = text.parse().map_err(|e| format_err!("not valid TOML: {e}"))?;
        let mut all = Vec::new();
        for (key, value) in &table {
            let kind = match key.as_str() {
                "table" => Kind::Table,
                "view" => Kind::View,
                "function" => Kind::Function,
                other => bail!("unknown section `{other}`: use [[table]], [[view]] or [[function]]"),
            };
            let entries = value.as_array().ok_or_else(|| format_err!("`{key}` must be written [[{key}]]"))?;
            for entry in entries {
                let entry = entry.as_table().ok_or_else(|| format_err!("each [[{key}]] needs `name` and `reason`"))?;
                if let Some(unknown) = entry.keys().find(|k| *k != "name" && *k != "reason") {
                    bail!("[[{key}]] has an unknown key `{unknown}`; only `name` and `reason` are allowed");
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
                all.push(Exemption { kind, name, reason: field("reason")? });
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
