//! Access control lists: parsing `aclitem` text, what an owner change does to
//! a list, and the difference between a list and what the model wants.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use dbenv::quote_ident;

/// A set of privileges, one bit per `aclitem` letter.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Privs(u16);

/// The letters of `aclitem` text and their SQL names, in the order SQL
/// usually spells them (SELECT first).
const LETTERS: &[(char, &str)] = &[
    ('r', "SELECT"),
    ('a', "INSERT"),
    ('w', "UPDATE"),
    ('d', "DELETE"),
    ('D', "TRUNCATE"),
    ('x', "REFERENCES"),
    ('t', "TRIGGER"),
    ('m', "MAINTAIN"),
    ('X', "EXECUTE"),
    ('U', "USAGE"),
    ('C', "CREATE"),
    ('c', "CONNECT"),
    ('T', "TEMPORARY"),
    ('s', "SET"),
    ('A', "ALTER SYSTEM"),
];

impl Privs {
    pub const NONE: Privs = Privs(0);
    pub const ALL: Privs = Privs((1 << LETTERS.len()) - 1);

    /// Privileges from `aclitem` letters, e.g. `"arwd"`.
    pub const fn from_letters(letters: &str) -> Privs {
        let bytes = letters.as_bytes();
        let mut bits = 0u16;
        let mut i = 0;
        while i < bytes.len() {
            let mut j = 0;
            while j < LETTERS.len() {
                if LETTERS[j].0 as u8 == bytes[i] {
                    bits |= 1 << j;
                }
                j += 1;
            }
            i += 1;
        }
        Privs(bits)
    }

    fn from_letter(letter: char) -> Option<Privs> {
        LETTERS.iter().position(|(l, _)| *l == letter).map(|i| Privs(1 << i))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Privs) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Privs) -> Privs {
        Privs(self.0 | other.0)
    }

    pub fn intersect(self, other: Privs) -> Privs {
        Privs(self.0 & other.0)
    }

    pub fn minus(self, other: Privs) -> Privs {
        Privs(self.0 & !other.0)
    }

    /// `SELECT, INSERT` for SQL.
    pub fn sql(self) -> String {
        LETTERS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, (_, name))| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn letters(self) -> String {
        LETTERS.iter().enumerate().filter(|(i, _)| self.0 & (1 << i) != 0).map(|(_, (l, _))| *l).collect()
    }
}

impl fmt::Debug for Privs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Privs({})", self.letters())
    }
}

/// Table DML: what the runtime roles get on app tables.
pub const DML: Privs = Privs::from_letters("arwd");
/// What the runtime roles get on app sequences.
pub const SEQUENCE_USE: Privs = Privs::from_letters("rU");
pub const USAGE: Privs = Privs::from_letters("U");
pub const CONNECT: Privs = Privs::from_letters("c");
pub const CREATE: Privs = Privs::from_letters("C");
pub const EXECUTE: Privs = Privs::from_letters("X");
/// Reading and writing a large object.
pub const LARGE_OBJECT_USE: Privs = Privs::from_letters("rw");
/// Everything a database ACL can hold.
pub const DATABASE_ALL: Privs = Privs::from_letters("CTc");

/// Who an ACL entry is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    Public,
    Role(String),
}

impl Grantee {
    pub fn role(name: &str) -> Grantee {
        Grantee::Role(name.to_string())
    }

    /// `PUBLIC` or the quoted role name, for SQL.
    pub fn sql(&self) -> String {
        match self {
            Grantee::Public => "PUBLIC".to_string(),
            Grantee::Role(name) => quote_ident(name),
        }
    }
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grantee::Public => f.write_str("PUBLIC"),
            Grantee::Role(name) => f.write_str(name),
        }
    }
}

/// One `grantee=privs/grantor` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclItem {
    pub grantee: Grantee,
    pub grantor: String,
    pub privs: Privs,
    /// The subset held `WITH GRANT OPTION` (`*` after the letter).
    pub grant_option: Privs,
}

impl AclItem {
    /// Parses `aclitem` output: `"name"=arwd*/grantor`, an empty grantee
    /// meaning `PUBLIC`, names quoted when they need it.
    pub fn parse(text: &str) -> Result<AclItem> {
        let (grantee, rest) = parse_name(text)?;
        let Some(rest) = rest.strip_prefix('=') else { bail!("aclitem `{text}` has no `=`") };
        let (letters, grantor) = match rest.split_once('/') {
            Some((letters, grantor)) => (letters, grantor),
            None => bail!("aclitem `{text}` has no grantor"),
        };
        let mut privs = Privs::NONE;
        let mut grant_option = Privs::NONE;
        let mut previous = Privs::NONE;
        for letter in letters.chars() {
            if letter == '*' {
                grant_option = grant_option.union(previous);
                continue;
            }
            let Some(p) = Privs::from_letter(letter) else {
                bail!("aclitem `{text}` has unknown privilege `{letter}`")
            };
            privs = privs.union(p);
            previous = p;
        }
        let (grantor, tail) = parse_name(grantor)?;
        if !tail.is_empty() {
            bail!("aclitem `{text}` has trailing text");
        }
        Ok(AclItem {
            grantee: if grantee.is_empty() { Grantee::Public } else { Grantee::Role(grantee) },
            grantor,
            privs,
            grant_option,
        })
    }
}

/// Reads a role name as `aclitem` prints it, returning it and the rest.
fn parse_name(text: &str) -> Result<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if matches!(chars.peek(), Some((_, '"'))) {
                    chars.next();
                    name.push('"');
                } else {
                    return Ok((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        bail!("unterminated quoted name in aclitem `{text}`");
    }
    let end = text.find(['=', '/']).unwrap_or(text.len());
    Ok((text[..end].to_string(), &text[end..]))
}

/// Parses a whole ACL (`aclitem[]` cast to `text[]`).
pub fn parse_acl(items: &[String]) -> Result<Vec<AclItem>> {
    items.iter().map(|item| AclItem::parse(item)).collect()
}

/// What `ALTER … OWNER TO new` does to an ACL (PostgreSQL's `aclnewowner`):
/// every entry for or by the old owner becomes the new owner's, merged.
/// This is why the old owner loses all access to an object it gives away.
pub fn change_owner(acl: &[AclItem], old: &str, new: &str) -> Vec<AclItem> {
    let rename = |name: &str| if name == old { new.to_string() } else { name.to_string() };
    let mut merged: Vec<AclItem> = Vec::new();
    for item in acl {
        let grantee = match &item.grantee {
            Grantee::Role(name) => Grantee::Role(rename(name)),
            Grantee::Public => Grantee::Public,
        };
        let grantor = rename(&item.grantor);
        match merged.iter_mut().find(|m| m.grantee == grantee && m.grantor == grantor) {
            Some(existing) => {
                existing.privs = existing.privs.union(item.privs);
                existing.grant_option = existing.grant_option.union(item.grant_option);
            }
            None => merged.push(AclItem { grantee, grantor, ..item.clone() }),
        }
    }
    merged
}

/// What the model wants one grantee to hold on one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly these privileges, none with grant option.
    Exactly(Privs),
    /// At least these (the owner's own entry).
    AtLeast(Privs),
    /// None of these; anything else is left alone.
    Without(Privs),
    /// Some of these or none, never with grant option: what the writers
    /// leave to the migrations (DML on a materialized view, say), never
    /// more.
    AtMost(Privs),
}

/// A change to one grantee's privileges on one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclChange {
    Grant {
        grantee: Grantee,
        privs: Privs,
    },
    /// Revoke `privs` granted by `grantor` (a REVOKE only removes the
    /// grants of the role that runs it, or of the owner when a superuser
    /// runs it).
    Revoke {
        grantee: Grantee,
        privs: Privs,
        grantor: String,
    },
    /// Keep the privileges but drop the right to pass them on.
    RevokeGrantOption {
        grantee: Grantee,
        privs: Privs,
        grantor: String,
    },
}

impl AclChange {
    pub fn grantee(&self) -> &Grantee {
        match self {
            AclChange::Grant { grantee, .. }
            | AclChange::Revoke { grantee, .. }
            | AclChange::RevokeGrantOption { grantee, .. } => grantee,
        }
    }
}

/// How one grantee's privileges on one object differ from what the model
/// wants: what it holds and the changes that fix it. The plan runs the
/// changes, the audit states the [`problem`](AclDrift::problem); both come
/// from this one reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclDrift {
    pub grantee: Grantee,
    pub want: Want,
    /// Everything the grantee holds, from any grantor.
    pub held: Privs,
    /// What it holds WITH GRANT OPTION.
    pub options: Privs,
    /// Never empty.
    pub changes: Vec<AclChange>,
}

impl AclDrift {
    /// One sentence: `app_user holds TRUNCATE (expected …)`.
    pub fn problem(&self) -> String {
        let show = |p: Privs| if p.is_empty() { "nothing".to_string() } else { p.sql() };
        let grantee = &self.grantee;
        match self.want {
            Want::Exactly(expected) if self.held != expected => {
                format!("{grantee} holds {} (expected {})", show(self.held), show(expected))
            }
            Want::Exactly(_) => {
                format!("{grantee} may grant {} to others (WITH GRANT OPTION)", self.options.sql())
            }
            Want::AtLeast(expected) => format!("{grantee} lacks {}", expected.minus(self.held).sql()),
            Want::Without(forbidden) => format!("{grantee} holds {}", self.held.intersect(forbidden).sql()),
            Want::AtMost(allowed) if !self.held.minus(allowed).is_empty() => {
                format!("{grantee} holds {} (at most {} expected)", self.held.minus(allowed).sql(), allowed.sql())
            }
            Want::AtMost(_) => format!("{grantee} may grant {} to others (WITH GRANT OPTION)", self.options.sql()),
        }
    }
}

/// How `acl` differs from what `want` says for `grantee`, if it does.
pub fn drift(acl: &[AclItem], grantee: &Grantee, want: Want) -> Option<AclDrift> {
    let items: Vec<&AclItem> = acl.iter().filter(|item| &item.grantee == grantee).collect();
    let held = items.iter().fold(Privs::NONE, |all, item| all.union(item.privs));
    let options = items.iter().fold(Privs::NONE, |all, item| all.union(item.grant_option));
    let mut changes = Vec::new();
    let (required, allowed, options_allowed) = match want {
        Want::Exactly(privs) => (privs, privs, false),
        Want::AtLeast(privs) => (privs, Privs::ALL, true),
        Want::Without(privs) => (Privs::NONE, Privs::ALL.minus(privs), true),
        Want::AtMost(privs) => (Privs::NONE, privs, false),
    };
    let missing = required.minus(held);
    if !missing.is_empty() {
        changes.push(AclChange::Grant { grantee: grantee.clone(), privs: missing });
    }
    // Group by grantor: one REVOKE per grantor.
    let mut by_grantor: BTreeMap<&str, (Privs, Privs)> = BTreeMap::new();
    for item in &items {
        let entry = by_grantor.entry(item.grantor.as_str()).or_default();
        entry.0 = entry.0.union(item.privs.minus(allowed));
        if !options_allowed {
            entry.1 = entry.1.union(item.grant_option.intersect(allowed));
        }
    }
    for (grantor, (extra, options)) in by_grantor {
        if !extra.is_empty() {
            changes.push(AclChange::Revoke { grantee: grantee.clone(), privs: extra, grantor: grantor.to_string() });
        }
        if !options.is_empty() {
            changes.push(AclChange::RevokeGrantOption {
                grantee: grantee.clone(),
                privs: options,
                grantor: grantor.to_string(),
            });
        }
    }
    (!changes.is_empty()).then(|| AclDrift { grantee: grantee.clone(), want, held, options, changes })
}

/// [`drift`] for every grantee of `wants`, in their order.
pub fn drifts(acl: &[AclItem], wants: &[(Grantee, Want)]) -> Vec<AclDrift> {
    wants.iter().filter_map(|(grantee, want)| drift(acl, grantee, *want)).collect()
}

/// The changes that make `acl` give every grantee of `wants` what it wants.
pub fn changes(acl: &[AclItem], wants: &[(Grantee, Want)]) -> Vec<AclChange> {
    drifts(acl, wants).into_iter().flat_map(|d| d.changes).collect()
}

/// The changes that make `acl` give `grantee` what `want` says.
pub fn diff(acl: &[AclItem], grantee: &Grantee, want: Want) -> Vec<AclChange> {
    drift(acl, grantee, want).map(|d| d.changes).unwrap_or_default()
}

/// Applies changes to an ACL as the server would (for dry runs and for
/// predicting the state after a step); `owner` is the grantor of grants.
pub fn apply_changes(acl: &[AclItem], changes: &[AclChange], owner: &str) -> Vec<AclItem> {
    let mut result = acl.to_vec();
    for change in changes {
        match change {
            AclChange::Grant { grantee, privs } => {
                match result.iter_mut().find(|i| &i.grantee == grantee && i.grantor == owner) {
                    Some(item) => item.privs = item.privs.union(*privs),
                    None => result.push(AclItem {
                        grantee: grantee.clone(),
                        grantor: owner.to_string(),
                        privs: *privs,
                        grant_option: Privs::NONE,
                    }),
                }
            }
            AclChange::Revoke { grantee, privs, grantor } => {
                for item in result.iter_mut().filter(|i| &i.grantee == grantee && &i.grantor == grantor) {
                    item.privs = item.privs.minus(*privs);
                    item.grant_option = item.grant_option.minus(*privs);
                }
            }
            AclChange::RevokeGrantOption { grantee, privs, grantor } => {
                for item in result.iter_mut().filter(|i| &i.grantee == grantee && &i.grantor == grantor) {
                    item.grant_option = item.grant_option.minus(*privs);
                }
            }
        }
    }
    result.retain(|item| !item.privs.is_empty());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(items: &[&str]) -> Vec<AclItem> {
        parse_acl(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parses_aclitem_text() {
        let item = AclItem::parse("app_user=arwd/app_migrator").unwrap();
        assert_eq!(item.grantee, Grantee::role("app_user"));
        assert_eq!(item.grantor, "app_migrator");
        assert_eq!(item.privs, DML);
        let item = AclItem::parse("=Tc/postgres").unwrap();
        assert_eq!(item.grantee, Grantee::Public);
        assert_eq!(item.privs, Privs::from_letters("Tc"));
        let item = AclItem::parse("\"we\"\"ird=name\"=r*w/\"other/role\"").unwrap();
        assert_eq!(item.grantee, Grantee::role("we\"ird=name"));
        assert_eq!(item.grantor, "other/role");
        assert_eq!(item.grant_option, Privs::from_letters("r"));
        assert_eq!(
            AclItem::parse("x=arwdDxtm/y").unwrap().privs.sql(),
            "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER, MAINTAIN"
        );
        assert!(AclItem::parse("x=q/y").is_err());
        assert!(AclItem::parse("x=r").is_err());
    }

    #[test]
    fn an_owner_change_moves_the_old_owners_privileges() {
        // The legacy shape: app_user owns the table and granted app_service DML.
        let before = acl(&["app_user=arwdDxt/app_user", "app_service=arwd/app_user"]);
        let after = change_owner(&before, "app_user", "app_migrator");
        assert_eq!(after, acl(&["app_migrator=arwdDxt/app_migrator", "app_service=arwd/app_migrator"]));
        // app_user has nothing left: it must be granted DML in the same transaction.
        assert_eq!(
            diff(&after, &Grantee::role("app_user"), Want::Exactly(DML)),
            vec![AclChange::Grant { grantee: Grantee::role("app_user"), privs: DML }]
        );
        assert!(diff(&after, &Grantee::role("app_service"), Want::Exactly(DML)).is_empty());
    }

    #[test]
    fn merges_when_the_new_owner_already_had_grants() {
        let before = acl(&["app_user=arwd/app_user", "app_migrator=r/app_user", "app_migrator=arwd/app_migrator"]);
        let after = change_owner(&before, "app_user", "app_migrator");
        assert_eq!(after, acl(&["app_migrator=arwd/app_migrator"]));
    }

    #[test]
    fn exactly_revokes_extras_per_grantor_and_grant_options() {
        let current = acl(&["app_user=arwdD/owner", "app_user=x*/someone", "app_user=r*/owner"]);
        let changes = diff(&current, &Grantee::role("app_user"), Want::Exactly(DML));
        assert_eq!(
            changes,
            vec![
                AclChange::Revoke {
                    grantee: Grantee::role("app_user"),
                    privs: Privs::from_letters("D"),
                    grantor: "owner".into()
                },
                AclChange::RevokeGrantOption {
                    grantee: Grantee::role("app_user"),
                    privs: Privs::from_letters("r"),
                    grantor: "owner".into()
                },
                AclChange::Revoke {
                    grantee: Grantee::role("app_user"),
                    privs: Privs::from_letters("x"),
                    grantor: "someone".into()
                },
            ]
        );
        let fixed = apply_changes(&current, &changes, "owner");
        assert!(diff(&fixed, &Grantee::role("app_user"), Want::Exactly(DML)).is_empty(), "{fixed:?}");
    }

    #[test]
    fn without_leaves_other_privileges_alone() {
        // PostgreSQL 13/14's default ACL of schema public.
        let current = acl(&["postgres=UC/postgres", "=UC/postgres"]);
        let changes = diff(&current, &Grantee::Public, Want::Without(CREATE));
        assert_eq!(
            changes,
            vec![AclChange::Revoke { grantee: Grantee::Public, privs: CREATE, grantor: "postgres".into() }]
        );
        assert!(
            diff(&apply_changes(&current, &changes, "postgres"), &Grantee::Public, Want::Without(CREATE)).is_empty()
        );
        assert!(diff(&current, &Grantee::role("postgres"), Want::AtLeast(Privs::from_letters("UC"))).is_empty());
    }
}
