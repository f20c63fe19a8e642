//! The app's RLS policy file, committed next to its migrations
//! (`platform/db/rls-policy.toml`; the older `rls-exemptions.toml`, which
//! holds only exemptions, is still read): what the app expects of RLS (the
//! tenant root tables, the tenant setting, or that it uses no RLS at all),
//! and what it leaves outside the rules on purpose, each with a reason:
//! tables without RLS, views, `SECURITY DEFINER` functions and rules reviewed
//! as safe, tables whose policies are reviewed, tables readable without a
//! tenant by design. `db-check` reads it, and so does `db-provision`, which
//! refuses to convert what `db-check` would then fail.

use std::path::{Path, PathBuf};

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
    /// A relation the listed runtime roles must not get at all: neither
    /// writer grants it, and the audit expects nothing there.
    Private,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Table, Kind::View, Kind::Function, Kind::Rule, Kind::Policy, Kind::Public, Kind::Private];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::View => "view",
            Kind::Function => "function",
            Kind::Rule => "rule",
            Kind::Policy => "policy",
            Kind::Public => "public",
            Kind::Private => "private",
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
    /// `[[private]]` only: the runtime roles that get nothing on it.
    pub roles: Vec<String>,
}

/// What the app declares about RLS (`[rls]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RlsDeclaration {
    /// `enabled = false`: the app uses no RLS; the RLS checks do not apply.
    pub enabled: bool,
    /// `tenant_roots = ["public.users"]`: the tables every tenant's rows
    /// hang from (through foreign keys). Empty: not declared.
    pub tenant_roots: Vec<String>,
    /// `tenant_setting = "app.current_user_id"`: the setting the policies
    /// read the tenant from.
    pub tenant_setting: Option<String>,
    /// Whether the file has an `[rls]` section at all.
    pub declared: bool,
    /// `reason = "…"`: why the app uses no RLS (required with `enabled = false`).
    pub reason: Option<String>,
}

impl Default for RlsDeclaration {
    fn default() -> RlsDeclaration {
        RlsDeclaration { enabled: true, tenant_roots: Vec::new(), tenant_setting: None, declared: false, reason: None }
    }
}

/// A migration statement the team reviewed (`[[migration]]`): the
/// migration guard lets it through. It names the migration's tag and the
/// statement, by the fingerprint of its text (whitespace aside) and/or by
/// its first line in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReview {
    pub tag: String,
    pub fingerprint: Option<String>,
    pub line: Option<usize>,
    pub reason: String,
}

/// The policy file: the RLS declaration and the exemptions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions {
    pub entries: Vec<Exemption>,
    /// Migration statements reviewed by hand (`[[migration]]`).
    pub reviews: Vec<MigrationReview>,
    pub rls: RlsDeclaration,
    /// The file it was read from.
    pub source: Option<PathBuf>,
}

/// The policy file's name, beside the migrations.
pub const POLICY_FILE: &str = "platform/db/rls-policy.toml";
/// Its former name, read when the new one is absent.
pub const LEGACY_EXEMPTIONS_FILE: &str = "platform/db/rls-exemptions.toml";

impl Exemptions {
    /// Reads the file the user named: it must exist.
    pub fn load(path: &Path) -> Result<Exemptions> {
        if !path.is_file() {
            bail!("the policy file `{}` does not exist; check the path (or leave the flag out)", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("read `{}`", path.display()))?;
        let mut parsed = Exemptions::parse(&text).with_context(|| format!("`{}`", path.display()))?;
        parsed.source = Some(path.to_path_buf());
        Ok(parsed)
    }

    /// The project's policy file under `root`: `rls-policy.toml`, else the
    /// older `rls-exemptions.toml`, else none (nothing declared).
    pub fn load_default(root: &Path) -> Result<Exemptions> {
        for name in [POLICY_FILE, LEGACY_EXEMPTIONS_FILE] {
            let path = root.join(name);
            if path.is_file() {
                return Exemptions::load(&path);
            }
        }
        Ok(Exemptions::default())
    }

    /// Where the file came from, for reports.
    pub fn source_text(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => "no policy file".to_string(),
        }
    }

    /// Parses `[[table]]`, `[[view]]`, `[[function]]`, `[[rule]]`,
    /// `[[policy]]` and `[[public]]` entries with `name` and `reason` (and
    /// `rows` for `[[public]]`); anything else is an error, so a typo never
    /// exempts silently.
    pub fn parse(text: &str) -> Result<Exemptions> {
        let table: toml::Table = text.parse().map_err(|e| format_err!("not valid TOML: {e}"))?;
        let mut all = Vec::new();
        let mut rls = RlsDeclaration::default();
        let mut reviews = Vec::new();
        for (key, value) in &table {
            if key == "rls" {
                rls = parse_rls(value)?;
                continue;
            }
            if key == "migration" {
                reviews = parse_reviews(value)?;
                continue;
            }
            let Some(kind) = Kind::ALL.into_iter().find(|k| k.key() == key) else {
                bail!(
                    "unknown section `{key}`: use [rls], [[migration]], {}",
                    Kind::ALL.iter().map(|k| format!("[[{}]]", k.key())).collect::<Vec<_>>().join(", ")
                );
            };
            let entries = value.as_array().ok_or_else(|| format_err!("`{key}` must be written [[{key}]]"))?;
            for entry in entries {
                let entry = entry.as_table().ok_or_else(|| format_err!("each [[{key}]] needs `name` and `reason`"))?;
                let allowed: &[&str] = match kind {
                    Kind::Public => &["name", "reason", "rows"],
                    Kind::Private => &["name", "reason", "roles"],
                    _ => &["name", "reason"],
                };
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
                            })
                            .and_then(|rows| {
                                one_predicate(rows).map_err(|why| format_err!("[[{key}]] `{name}`: `rows` {why}"))
                            })?
                            .to_string(),
                    ),
                };
                let roles = if kind == Kind::Private { private_roles(&name, entry)? } else { Vec::new() };
                all.push(Exemption { kind, name, reason: field("reason")?, rows, roles });
            }
        }
        all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(Exemptions { entries: all, reviews, rls, source: None })
    }

    /// Whether `[[private]]` keeps `role` away from the relation `name`
    /// (`schema.name`).
    pub fn private_for(&self, name: &str, role: &str) -> bool {
        self.entries.iter().any(|e| e.kind == Kind::Private && e.name == name && e.roles.iter().any(|r| r == role))
    }

    /// `[[private]]` may only name the runtime roles: a typo would otherwise
    /// leave the relation granted without a word.
    pub fn check_private_roles(&self, runtime_roles: &[String]) -> Result<()> {
        for entry in self.entries.iter().filter(|e| e.kind == Kind::Private) {
            if let Some(unknown) = entry.roles.iter().find(|r| !runtime_roles.contains(r)) {
                bail!(
                    "{}: [[private]] `{}` names `{unknown}`, which is not a runtime role of this environment ({}); \
                     fix the name",
                    self.source_text(),
                    entry.name,
                    runtime_roles.join(", ")
                );
            }
        }
        Ok(())
    }

    pub fn find(&self, kind: Kind, name: &str) -> Option<&Exemption> {
        match kind {
            Kind::Function => {
                let wanted = function_key(name);
                self.entries.iter().find(|e| e.kind == kind && function_key(&e.name) == wanted)
            }
            _ => self.entries.iter().find(|e| e.kind == kind && e.name == name),
        }
    }
}

/// A function's name as `schema.name(type, type)`, however it was spelled:
/// spaces after commas or none, and an argument type in `public` with or
/// without its schema (the tool's sessions print it qualified; policy files
/// written before named it bare). Types in other schemas stay qualified, and
/// so does a `public` type named like a built-in one (`public.uuid`, a
/// domain, is not `uuid`).
pub fn function_key(name: &str) -> String {
    let Some((head, rest)) = name.split_once('(') else { return name.to_string() };
    let args = rest.strip_suffix(')').unwrap_or(rest);
    let args: Vec<&str> = args
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| match a.strip_prefix("public.").or_else(|| a.strip_prefix("\"public\".")) {
            Some(bare) if !BUILT_IN_TYPES.contains(&bare.trim_end_matches("[]")) => bare,
            _ => a,
        })
        .collect();
    format!("{}({})", head.trim(), args.join(", "))
}

/// Type names as `format_type` prints the built-in ones an app's functions
/// take; a `public` type of one of these names keeps its schema.
const BUILT_IN_TYPES: &[&str] = &[
    "bigint",
    "bit",
    "bit varying",
    "boolean",
    "box",
    "bytea",
    "character",
    "character varying",
    "cidr",
    "circle",
    "date",
    "daterange",
    "double precision",
    "inet",
    "int4range",
    "int8range",
    "integer",
    "interval",
    "json",
    "jsonb",
    "jsonpath",
    "line",
    "lseg",
    "macaddr",
    "macaddr8",
    "money",
    "name",
    "numeric",
    "numrange",
    "oid",
    "path",
    "point",
    "polygon",
    "real",
    "record",
    "regclass",
    "regproc",
    "regprocedure",
    "regtype",
    "smallint",
    "text",
    "time with time zone",
    "time without time zone",
    "timestamp with time zone",
    "timestamp without time zone",
    "tsquery",
    "tsrange",
    "tstzrange",
    "tsvector",
    "uuid",
    "void",
    "xml",
    "anyelement",
    "anyarray",
    "anynonarray",
    "anyenum",
    "anyrange",
    "trigger",
    "event_trigger",
    "internal",
    "char",
];

/// A `rows` predicate is spliced into the proof's SQL: it must be one
/// expression, with its parentheses balanced and no statement end or comment
/// outside quotes (so it cannot close the proof's own parentheses).
fn one_predicate(rows: &str) -> Result<&str, String> {
    let (mut depth, mut quote, mut chars) = (0i32, None::<char>, rows.chars().peekable());
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                if chars.peek() == Some(&q) {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a parenthesis it did not open".into());
                }
            }
            (None, ';') => return Err("must be one expression, without `;`".into()),
            (None, '-') if chars.peek() == Some(&'-') => return Err("must not hold a comment".into()),
            (None, '/') if chars.peek() == Some(&'*') => return Err("must not hold a comment".into()),
            (None, '$') => return Err("must not hold dollar quotes".into()),
            _ => {}
        }
    }
    match (quote, depth) {
        (Some(_), _) => Err("has an unclosed quote".into()),
        (None, 0) => Ok(rows),
        _ => Err("has an unclosed parenthesis".into()),
    }
}

/// `[[private]]`'s `roles`: a non-empty list of role names.
fn private_roles(name: &str, entry: &toml::Table) -> Result<Vec<String>> {
    let Some(value) = entry.get("roles") else {
        bail!(
            "[[private]] `{name}` has no `roles`: name the runtime roles that must get nothing on it, e.g. \
             roles = [\"app_user\"]"
        );
    };
    let list = value.as_array().map(Vec::as_slice).unwrap_or_default();
    let names: Vec<String> =
        list.iter().filter_map(|v| v.as_str()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
    if names.is_empty() || names.len() != list.len() {
        bail!("[[private]] `{name}`: `roles` must be a list of role names, e.g. roles = [\"app_user\"]");
    }
    Ok(names)
}

/// The `[[migration]]` entries: each names a tag, a fingerprint or a line,
/// and a reason.
fn parse_reviews(value: &toml::Value) -> Result<Vec<MigrationReview>> {
    let entries = value.as_array().ok_or_else(|| format_err!("`migration` must be written [[migration]]"))?;
    let mut reviews = Vec::new();
    for entry in entries {
        let entry = entry
            .as_table()
            .ok_or_else(|| format_err!("each [[migration]] needs `tag`, `fingerprint` or `line`, and `reason`"))?;
        if let Some(unknown) = entry.keys().find(|k| !["tag", "fingerprint", "line", "reason"].contains(&k.as_str())) {
            bail!("[[migration]] has an unknown key `{unknown}`; only `tag`, `fingerprint`, `line` and `reason` are allowed");
        }
        let text = |field: &str| {
            entry.get(field).and_then(|v| v.as_str()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
        };
        let tag = text("tag").ok_or_else(|| {
            format_err!("a [[migration]] entry has no `tag` (the migration's file name without .sql)")
        })?;
        let reason = text("reason")
            .ok_or_else(|| format_err!("[[migration]] `{tag}` has no `reason`: say why the statement is safe"))?;
        let fingerprint = text("fingerprint");
        let line =
            match entry.get("line") {
                None => None,
                Some(value) => {
                    Some(value.as_integer().and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0).ok_or_else(
                        || format_err!("[[migration]] `{tag}`: `line` must be a line number (1 or more)"),
                    )?)
                }
            };
        if fingerprint.is_none() && line.is_none() {
            bail!("[[migration]] `{tag}` names no statement: add the `fingerprint` the guard printed (or the statement's `line`)");
        }
        reviews.push(MigrationReview { tag, fingerprint, line, reason });
    }
    Ok(reviews)
}

/// `[rls]`: `enabled`, `tenant_roots`, `tenant_setting`; nothing else.
fn parse_rls(value: &toml::Value) -> Result<RlsDeclaration> {
    let table = value.as_table().ok_or_else(|| format_err!("`rls` must be a table: write [rls]"))?;
    let mut rls = RlsDeclaration { declared: true, ..Default::default() };
    for (key, value) in table {
        match key.as_str() {
            "enabled" => {
                rls.enabled = value.as_bool().ok_or_else(|| format_err!("[rls] `enabled` must be true or false"))?
            }
            "tenant_roots" => {
                let roots = value.as_array().ok_or_else(|| format_err!("[rls] `tenant_roots` must be a list"))?;
                for root in roots {
                    let root = root.as_str().filter(|r| r.contains('.')).ok_or_else(|| {
                        format_err!("[rls] `tenant_roots` holds `schema.table` names, e.g. \"public.users\"")
                    })?;
                    rls.tenant_roots.push(root.to_string());
                }
            }
            "tenant_setting" => {
                let setting =
                    value.as_str().filter(|s| s.contains('.') && !s.contains(char::is_whitespace)).ok_or_else(
                        || format_err!("[rls] `tenant_setting` must name a setting such as \"app.current_user_id\""),
                    )?;
                rls.tenant_setting = Some(setting.to_string());
            }
            "reason" => {
                let reason = value.as_str().filter(|r| !r.trim().is_empty());
                rls.reason = Some(reason.ok_or_else(|| format_err!("[rls] `reason` must be a sentence"))?.to_string());
            }
            other => {
                bail!("[rls] has an unknown key `{other}`; use `enabled`, `tenant_roots`, `tenant_setting` or `reason`")
            }
        }
    }
    if !rls.enabled && !rls.tenant_roots.is_empty() {
        bail!("[rls] says `enabled = false` but lists `tenant_roots`; keep one");
    }
    // Switching the RLS proof off is a decision somebody reviews.
    if !rls.enabled && rls.reason.is_none() {
        bail!(
            "[rls] says `enabled = false` without a `reason`; add reason = \"why the app isolates no tenant with RLS\""
        );
    }
    Ok(rls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_is_found_however_its_arguments_are_spelled() {
        let exemptions =
            Exemptions::parse("[[function]]\nname = \"public.f(mood, uuid)\"\nreason = \"reviewed\"\n").unwrap();
        for spelling in ["public.f(mood, uuid)", "public.f(public.mood,uuid)", "public.f(\"public\".mood, uuid)"] {
            assert!(exemptions.find(Kind::Function, spelling).is_some(), "{spelling}");
        }
        // A type of the same name in another schema is another function, and
        // so is a public domain named like a built-in type.
        assert!(exemptions.find(Kind::Function, "public.f(evil.mood, uuid)").is_none());
        assert!(exemptions.find(Kind::Function, "public.f(mood, public.uuid)").is_none());
        assert!(exemptions.find(Kind::Function, "other.f(mood, uuid)").is_none());
    }

    #[test]
    fn parses_entries_with_reasons() {
        let exemptions = Exemptions::parse(
            "[[table]]\nname = \"public.telemetry\"\nreason = \"no tenant column\"\n\n\
             [[function]]\nname = \"public.lookup(uuid)\"\nreason = \"reviewed\"\n",
        )
        .unwrap();
        assert_eq!(exemptions.entries.len(), 2);
        assert!(!exemptions.rls.declared && exemptions.rls.enabled);
        assert_eq!(exemptions.find(Kind::Table, "public.telemetry").unwrap().reason, "no tenant column");
        assert!(exemptions.find(Kind::View, "public.telemetry").is_none());
        let declared = Exemptions::parse(
            "[rls]\ntenant_roots = [\"app.user\"]\ntenant_setting = \"app.tenant\"\n\n\
             [[public]]\nname = \"app.post\"\nrows = \"visibility = 'public'\"\nreason = \"public posts\"\n",
        )
        .unwrap();
        assert_eq!(declared.rls.tenant_roots, ["app.user"]);
        assert_eq!(declared.rls.tenant_setting.as_deref(), Some("app.tenant"));
        assert_eq!(declared.find(Kind::Public, "app.post").unwrap().rows.as_deref(), Some("visibility = 'public'"));
        assert!(
            !Exemptions::parse("[rls]\nenabled = false\nreason = \"one tenant per database\"\n").unwrap().rls.enabled
        );
        let error = format!("{:#}", Exemptions::parse("[rls]\nenabled = false\n").unwrap_err());
        assert!(error.contains("without a `reason`"), "{error}");
    }

    #[test]
    fn a_private_relation_names_the_roles_it_is_kept_from() {
        let exemptions = Exemptions::parse(
            "[[private]]\nname = \"public.audit_log\"\nroles = [\"app_user\"]\nreason = \"operators only\"\n",
        )
        .unwrap();
        assert!(exemptions.private_for("public.audit_log", "app_user"));
        assert!(!exemptions.private_for("public.audit_log", "app_service"));
        assert!(!exemptions.private_for("public.other", "app_user"));
        let runtime = ["app_user".to_string(), "app_service".to_string()];
        exemptions.check_private_roles(&runtime).unwrap();
        let typo = Exemptions::parse(
            "[[private]]\nname = \"public.audit_log\"\nroles = [\"app_usr\"]\nreason = \"operators only\"\n",
        )
        .unwrap();
        let error = format!("{:#}", typo.check_private_roles(&runtime).unwrap_err());
        assert!(error.contains("names `app_usr`, which is not a runtime role"), "{error}");
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
            ("[rls]\nenabled = \"no\"\n", "`enabled` must be true or false"),
            ("[rls]\ntenant_roots = [\"users\"]\n", "`schema.table` names"),
            ("[rls]\nroots = []\n", "unknown key `roots`"),
            ("[rls]\nenabled = false\nreason = \"x\"\ntenant_roots = [\"public.users\"]\n", "keep one"),
            ("[[private]]\nname = \"public.t\"\nreason = \"x\"\n", "has no `roles`"),
            (
                "[[public]]\nname = \"public.t\"\nreason = \"x\"\nrows = \"k = 'p'), false) AND false AND coalesce((true\"\n",
                "closes a parenthesis",
            ),
            ("[[public]]\nname = \"public.t\"\nreason = \"x\"\nrows = \"true; DROP TABLE t\"\n", "without `;`"),
            ("[[public]]\nname = \"public.t\"\nreason = \"x\"\nrows = \"true -- x\"\n", "comment"),
            ("[[private]]\nname = \"public.t\"\nreason = \"x\"\nroles = \"app_user\"\n", "must be a list"),
            ("[[private]]\nname = \"public.t\"\nreason = \"x\"\nroles = []\n", "must be a list"),
            ("[[private]]\nname = \"public.t\"\nreason = \"x\"\nroles = [1]\n", "must be a list"),
            ("[[table]]\nname = \"public.t\"\nreason = \"x\"\nroles = [\"app_user\"]\n", "unknown key `roles`"),
        ] {
            let error = format!("{:#}", Exemptions::parse(text).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
