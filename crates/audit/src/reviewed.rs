//! The policy file as every check reads it. The catalog checks mark the
//! entries they use in a set of their own; the live probes read the file
//! through [`Reviewed`], which marks what they use, so an entry is "not
//! needed" only when no check used it. A table whose policies the file
//! declares reviewed (`[[policy]]`) is exempt in the live probes exactly
//! where the catalog's policy check exempts it, command by command (an
//! entry written for an always-true `WITH CHECK` of `INSERT` exempts the
//! insert probes of that table, not its reads or updates): what the
//! policies let through there is said as exempt, with the reason.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use crate::exemptions::{Exemption, Exemptions, Kind};

/// The policy file, with the entries the live probes used.
pub struct Reviewed<'a> {
    exemptions: &'a Exemptions,
    /// Per table, the commands whose policy problems `[[policy]]` exempts
    /// in the catalog check (`policies::reviewed_commands`).
    commands: BTreeMap<String, BTreeSet<char>>,
    used: RefCell<BTreeSet<(Kind, String)>>,
}

impl Deref for Reviewed<'_> {
    type Target = Exemptions;

    fn deref(&self) -> &Exemptions {
        self.exemptions
    }
}

impl<'a> Reviewed<'a> {
    pub fn new(exemptions: &'a Exemptions, commands: BTreeMap<String, BTreeSet<char>>) -> Reviewed<'a> {
        Reviewed { exemptions, commands, used: RefCell::new(BTreeSet::new()) }
    }

    fn mark(&self, kind: Kind, table: &str) -> Option<&'a Exemption> {
        let entry = self.exemptions.find(kind, table)?;
        self.used.borrow_mut().insert((kind, entry.name.clone()));
        Some(entry)
    }

    /// `[[public]]` of `table`: a probe reads the table's rows through it.
    pub fn public(&self, table: &str) -> Option<&'a Exemption> {
        self.mark(Kind::Public, table)
    }

    /// `[[policy]]` of `table`, when the catalog check exempted a problem
    /// of its policies for `command` (`r`, `a`, `w`, `d`).
    pub fn reviewed(&self, table: &str, command: char) -> Option<&'a Exemption> {
        if !self.commands.get(table).is_some_and(|c| c.contains(&command)) {
            return None;
        }
        self.mark(Kind::Policy, table)
    }

    /// Tables a read saw rows of, split into the violations and the tables
    /// whose reads are reviewed (`table (exempt: reason)`).
    pub fn split(&self, tables: Vec<String>) -> (Vec<String>, Vec<String>) {
        let mut violations = Vec::new();
        let mut exempt = Vec::new();
        for table in tables {
            match self.reviewed(&table, 'r') {
                Some(entry) => exempt.push(format!("{table} (exempt: {})", entry.reason)),
                None => violations.push(table),
            }
        }
        (violations, exempt)
    }

    /// The entries the live probes used.
    pub fn into_used(self) -> BTreeSet<(Kind, String)> {
        self.used.into_inner()
    }
}

/// `; let through on <tables>, whose policies the policy file declares
/// reviewed`, or nothing.
pub fn exempt_note(exempt: &[String], what: &str) -> String {
    if exempt.is_empty() {
        String::new()
    } else {
        format!("; {what} {} ([[policy]]: reviewed in the policy file)", exempt.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entries_a_probe_reads_are_marked_used() {
        let file = Exemptions::parse(
            "[[policy]]\nname = \"public.feedback\"\nreason = \"anyone may leave feedback\"\n\
             [[public]]\nname = \"public.plans\"\nreason = \"the price list\"\n\
             [[public]]\nname = \"public.unused\"\nreason = \"nothing reads it\"\n",
        )
        .unwrap();
        let commands = BTreeMap::from([("public.feedback".to_string(), BTreeSet::from(['a']))]);
        let reviewed = Reviewed::new(&file, commands);
        // Reviewed for INSERT only: its reads are not exempt.
        let (violations, exempt) = reviewed.split(vec!["public.feedback".into(), "public.notes".into()]);
        assert_eq!(violations, ["public.feedback", "public.notes"]);
        assert!(exempt.is_empty());
        assert!(reviewed.reviewed("public.feedback", 'w').is_none());
        assert!(reviewed.public("public.notes").is_none());
        assert!(!reviewed.into_used().contains(&(Kind::Policy, "public.feedback".into())));
        let commands = BTreeMap::from([("public.feedback".to_string(), BTreeSet::from(['a', 'r']))]);
        let reviewed = Reviewed::new(&file, commands);
        let (violations, exempt) = reviewed.split(vec!["public.feedback".into(), "public.notes".into()]);
        assert_eq!(violations, ["public.notes"]);
        assert_eq!(exempt, ["public.feedback (exempt: anyone may leave feedback)"]);
        assert!(reviewed.public("public.plans").is_some());
        assert!(reviewed.public("public.notes").is_none());
        let used = reviewed.into_used();
        assert!(used.contains(&(Kind::Policy, "public.feedback".into())));
        assert!(used.contains(&(Kind::Public, "public.plans".into())));
        assert!(!used.contains(&(Kind::Public, "public.unused".into())));
    }
}
