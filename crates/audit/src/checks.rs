//! The catalog checks of `db-check`, named by value: each has an id (what
//! the report prints and `--junit` names), a title (what holds when it
//! passes) and the invariant of `docs/spec/database-rls.md` it proves.
//! The model checks come from `roles::drift::Check`, read the same way by
//! the plan; the rest are the audit's own.

use std::fmt;

use roles::drift::Check;

/// A check of the catalog audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckId {
    /// A check of the drift between the model and the catalogs.
    Model(Check),
    RlsPolicies,
    RlsTenancy,
    RlsPolicyContent,
    Bookkeeping,
    ViewsOverRls,
    Rules,
    SecurityDefiner,
    RlsChildren,
    SearchPath,
    Leakproof,
    ForeignLogins,
    Logins,
    /// On a standby with `--primary-env`: the audited catalogs are the primary's.
    PrimaryCatalogs,
}

/// The named invariants of `docs/spec/database-rls.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    RlsOnTenantTables,
    LeastPrivilegeAppRole,
    NoOwnerEscape,
    NoPowerElsewhere,
    PolicyContent,
    NoWeakeningDefaults,
    AuditedStateIsCurrent,
}

impl Invariant {
    pub const ALL: [Invariant; 7] = [
        Invariant::RlsOnTenantTables,
        Invariant::LeastPrivilegeAppRole,
        Invariant::NoOwnerEscape,
        Invariant::NoPowerElsewhere,
        Invariant::PolicyContent,
        Invariant::NoWeakeningDefaults,
        Invariant::AuditedStateIsCurrent,
    ];

    /// The name the spec gives it.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::RlsOnTenantTables => "RLS_ON_TENANT_TABLES",
            Invariant::LeastPrivilegeAppRole => "LEAST_PRIVILEGE_APP_ROLE",
            Invariant::NoOwnerEscape => "NO_OWNER_ESCAPE",
            Invariant::NoPowerElsewhere => "NO_POWER_ELSEWHERE",
            Invariant::PolicyContent => "POLICY_CONTENT",
            Invariant::NoWeakeningDefaults => "NO_WEAKENING_DEFAULTS",
            Invariant::AuditedStateIsCurrent => "AUDITED_STATE_IS_CURRENT",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl CheckId {
    /// The audit's own checks (the model's are `Check::ALL`).
    pub const OWN: [CheckId; 13] = [
        CheckId::RlsPolicies,
        CheckId::RlsTenancy,
        CheckId::RlsPolicyContent,
        CheckId::Bookkeeping,
        CheckId::ViewsOverRls,
        CheckId::Rules,
        CheckId::SecurityDefiner,
        CheckId::RlsChildren,
        CheckId::SearchPath,
        CheckId::Leakproof,
        CheckId::ForeignLogins,
        CheckId::Logins,
        CheckId::PrimaryCatalogs,
    ];

    /// The id the report prints and `--junit` names.
    pub fn id(self) -> &'static str {
        match self {
            CheckId::Model(check) => check.id(),
            CheckId::RlsPolicies => "rls-policies",
            CheckId::RlsTenancy => "rls-tenancy",
            CheckId::RlsPolicyContent => "rls-policy-content",
            CheckId::Bookkeeping => "bookkeeping",
            CheckId::ViewsOverRls => "views-over-rls",
            CheckId::Rules => "rules",
            CheckId::SecurityDefiner => "security-definer",
            CheckId::RlsChildren => "rls-children",
            CheckId::SearchPath => "search-path",
            CheckId::Leakproof => "leakproof",
            CheckId::ForeignLogins => "foreign-logins",
            CheckId::Logins => "logins",
            CheckId::PrimaryCatalogs => "primary-catalogs",
        }
    }

    /// What holds when the check passes.
    pub fn title(self) -> &'static str {
        match self {
            CheckId::Model(check) => check.title(),
            CheckId::RlsPolicies => "RLS enabled on every table with a policy",
            CheckId::RlsTenancy => "RLS on every table that reaches a tenant root through foreign keys",
            CheckId::RlsPolicyContent => "no RLS policy lets every row through or widens another for app_user",
            CheckId::Bookkeeping => "Drizzle bookkeeping matches the migrations folder",
            CheckId::ViewsOverRls => "no view or materialized view bypasses RLS through its owner",
            CheckId::Rules => "no rule runs as an owner that bypasses RLS",
            CheckId::SecurityDefiner => "no SECURITY DEFINER function a runtime role can set off (any schema)",
            CheckId::RlsChildren => "no partition or inheritance child of an RLS table without RLS",
            CheckId::SearchPath => "nothing shadows a built-in function for unqualified SQL",
            CheckId::Leakproof => "no LEAKPROOF function a runtime role may call that is not built in",
            CheckId::ForeignLogins => "no foreign table reads as another role for a runtime role",
            CheckId::Logins => "every login of the three roles owns and holds nothing and acts only as its role",
            CheckId::PrimaryCatalogs => {
                "the standby's catalogs as audited are the primary's (compared past the replay lag)"
            }
        }
    }

    /// The invariant of `docs/spec/database-rls.md` the check proves.
    pub fn invariant(self) -> Invariant {
        match self {
            CheckId::Model(Check::RoleSettings) => Invariant::NoWeakeningDefaults,
            CheckId::Model(Check::SchemaCreate | Check::ForeignData | Check::OtherDatabases) => {
                Invariant::NoPowerElsewhere
            }
            CheckId::Model(_) | CheckId::Bookkeeping | CheckId::Logins => Invariant::LeastPrivilegeAppRole,
            CheckId::RlsPolicies | CheckId::RlsTenancy => Invariant::RlsOnTenantTables,
            CheckId::RlsPolicyContent => Invariant::PolicyContent,
            CheckId::ViewsOverRls
            | CheckId::Rules
            | CheckId::SecurityDefiner
            | CheckId::RlsChildren
            | CheckId::ForeignLogins => Invariant::NoOwnerEscape,
            CheckId::SearchPath | CheckId::Leakproof => Invariant::NoPowerElsewhere,
            CheckId::PrimaryCatalogs => Invariant::AuditedStateIsCurrent,
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_cites_an_invariant_the_spec_names_and_every_invariant_is_checked() {
        let spec = include_str!("../../../docs/spec/database-rls.md");
        let all: Vec<CheckId> = Check::ALL.into_iter().map(CheckId::Model).chain(CheckId::OWN).collect();
        for check in &all {
            let name = check.invariant().name();
            assert!(spec.contains(&format!("- **{name}")), "{check} cites {name}, which the spec does not define");
        }
        for invariant in Invariant::ALL {
            assert!(all.iter().any(|c| c.invariant() == invariant), "no check proves {invariant}");
        }
        let mut ids: Vec<&str> = all.iter().map(|c| c.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "check ids are unique");
    }
}
