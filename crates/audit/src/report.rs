//! The result of `db-check` and its three renderings: a text matrix a person
//! reads at a glance (failures first), JSON, and Markdown.

use std::fmt;
use std::time::Duration;

use serde_json::json;

use crate::checks::CheckId;
use crate::exemptions::Exemption;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// A violation the exemptions file accepts.
    Exempt,
    /// Not enough data to prove it (RLS with empty tables).
    Unproven,
    /// Nothing to probe it on (no table, no sequence…).
    NotApplicable,
    /// A capability no privilege can take from a login role (listed apart).
    Residual,
    /// The probe could not tell (a lock timeout, an unexpected error).
    Inconclusive,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Exempt => "exempt",
            Verdict::Unproven => "unproven",
            Verdict::NotApplicable => "n/a",
            Verdict::Residual => "residual",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Verdict::Pass => "✓",
            Verdict::Fail => "✗",
            Verdict::Exempt => "~",
            Verdict::Unproven | Verdict::Inconclusive => "?",
            Verdict::NotApplicable => "–",
            Verdict::Residual => "·",
        }
    }
}

/// One thing found by a catalog check (passes are counted, not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub subject: String,
    pub verdict: Verdict,
    pub message: String,
    /// A grant the model gives a runtime role is missing, and nothing more.
    pub missing_grant: bool,
}

/// One catalog check over every object it applies to.
#[derive(Clone, Debug)]
pub struct CheckSummary {
    pub id: CheckId,
    pub title: &'static str,
    /// How many objects it looked at.
    pub checked: usize,
    /// Failures, exemptions and notes (never plain passes).
    pub findings: Vec<Finding>,
}

impl CheckSummary {
    pub fn new(id: CheckId) -> CheckSummary {
        CheckSummary { id, title: id.title(), checked: 0, findings: Vec::new() }
    }

    pub fn fail(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.note(Verdict::Fail, subject, message);
    }

    /// A failure that is only a missing grant (`Drift::is_missing_grant`).
    pub fn fail_missing_grant(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        let (subject, message) = (subject.into(), message.into());
        self.findings.push(Finding { subject, verdict: Verdict::Fail, message, missing_grant: true });
    }

    pub fn note(&mut self, verdict: Verdict, subject: impl Into<String>, message: impl Into<String>) {
        let (subject, message) = (subject.into(), message.into());
        self.findings.push(Finding { subject, verdict, message, missing_grant: false });
    }

    pub fn verdict(&self) -> Verdict {
        if self.findings.iter().any(|f| f.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if self.findings.iter().any(|f| f.verdict == Verdict::Unproven) {
            Verdict::Unproven
        } else if !self.findings.is_empty() && self.findings.iter().all(|f| f.verdict == Verdict::NotApplicable) {
            Verdict::NotApplicable
        } else {
            Verdict::Pass
        }
    }
}

/// One live probe as one role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub role: String,
    pub id: &'static str,
    pub capability: String,
    pub sql: String,
    /// `denied (42501)`, `warning, ACL unchanged`, `allowed`.
    pub expected: String,
    pub observed: String,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RlsBehaviour {
    pub verdict: Verdict,
    pub message: String,
}

/// Where a role's rotation stands, as the catalog shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// No alternate login: the role logs in as itself.
    Never,
    /// One login can log in: the one named.
    Settled(String),
    /// Both can log in: a rotation between its start and its `--finish`.
    Overlap,
    /// Neither can log in: the app cannot connect as the role.
    NoLogin,
}

impl Rotation {
    pub fn word(&self) -> &'static str {
        match self {
            Rotation::Never => "not rotated",
            Rotation::Settled(_) => "settled",
            Rotation::Overlap => "overlap",
            Rotation::NoLogin => "no login",
        }
    }
}

/// One login of a role, and whether this check logged in as it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginUse {
    pub name: String,
    pub can_log_in: bool,
    /// The env's DSN logs in as it: the live probes (the runtime roles) or
    /// the catalog reads (the migrator) ran in its sessions.
    pub used: bool,
}

/// A role's logins as the report lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleLoginState {
    pub role: String,
    pub rotation: Rotation,
    pub logins: Vec<LoginUse>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub database: String,
    pub server_version: String,
    pub checks: Vec<CheckSummary>,
    pub probes: Vec<Probe>,
    pub residuals: Vec<Probe>,
    pub rls: RlsBehaviour,
    /// Every exemption of the file, and whether it was needed.
    pub exemptions: Vec<(Exemption, bool)>,
    /// The policy file read (or that none was).
    pub policy_file: String,
    pub roles: Vec<String>,
    /// Queries the catalog audit sent: the same for 10 tables and 10,000.
    pub catalog_queries: u32,
    /// Every query, probes included.
    pub queries: u32,
    pub elapsed: Duration,
    pub notes: Vec<String>,
    /// The three roles' logins and where each one's rotation stands.
    pub logins: Vec<RoleLoginState>,
}

impl Report {
    /// The model holds: no catalog failure, every probe as expected, and
    /// RLS not seen to leak.
    pub fn holds(&self) -> bool {
        self.checks.iter().all(|c| c.verdict() != Verdict::Fail)
            && self.probes.iter().all(|p| !matches!(p.verdict, Verdict::Fail | Verdict::Inconclusive))
            && self.rls.verdict != Verdict::Fail
    }

    /// What could not be proven (tenancy without a root, RLS without rows):
    /// not a failure, but never a silent pass.
    pub fn unproven(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.checks.iter().filter(|c| c.verdict() == Verdict::Unproven).map(|c| c.id.to_string()).collect();
        if self.rls.verdict == Verdict::Unproven {
            all.push("row-level security with rows".to_string());
        }
        for probe in self.probes.iter().filter(|p| p.verdict == Verdict::Unproven) {
            let id = format!("{} ({})", probe.id, probe.role);
            if !all.contains(&id) {
                all.push(id);
            }
        }
        all
    }

    /// When every failure follows from grants the model gives the runtime
    /// roles and they lack (nothing held beyond the model, no probe that
    /// got what it must not): the missing grants per catalog check, as
    /// `(check, subjects)`. One cause, one fix: `db-migrate` or `db-provision`.
    pub fn missing_grants_only(&self) -> Option<Vec<(&'static str, Vec<String>)>> {
        let failing: Vec<(&CheckSummary, &Finding)> = self
            .checks
            .iter()
            .flat_map(|c| c.findings.iter().filter(|f| f.verdict == Verdict::Fail).map(move |f| (c, f)))
            .collect();
        if failing.is_empty() || !failing.iter().all(|(_, f)| f.missing_grant) {
            return None;
        }
        // A probe that was refused what the model gives it, or could not
        // run: a consequence. One that got what it must not: a cause.
        let explained = |p: &Probe| match p.verdict {
            Verdict::Fail => {
                (p.expected == "allowed" && p.observed.contains("42501"))
                    || (p.expected == "all held" && p.observed.starts_with("LACKS"))
            }
            Verdict::Inconclusive => p.observed.starts_with("not tried"),
            _ => true,
        };
        let rls_explained = self.rls.verdict != Verdict::Fail || self.rls.message.contains("permission denied");
        if !self.probes.iter().all(explained) || !rls_explained {
            return None;
        }
        let mut groups: Vec<(&'static str, Vec<String>)> = Vec::new();
        for (check, finding) in failing {
            match groups.iter_mut().find(|(id, _)| *id == check.id.id()) {
                Some((_, subjects)) if !subjects.contains(&finding.subject) => subjects.push(finding.subject.clone()),
                Some(_) => {}
                None => groups.push((check.id.id(), vec![finding.subject.clone()])),
            }
        }
        Some(groups)
    }

    /// The one fix for missing grants, as the report says it.
    pub const GRANT_FIX: &'static str = "run `cargo xtask db-migrate` (every run grants the runtime roles what they \
        lack in the app schemas) or `cargo xtask db-provision`";

    /// Every failure, catalog first, as `(where, subject, message)`.
    pub fn failures(&self) -> Vec<(String, String, String)> {
        let mut all: Vec<(String, String, String)> = self
            .checks
            .iter()
            .flat_map(|c| {
                c.findings
                    .iter()
                    .filter(|f| f.verdict == Verdict::Fail)
                    .map(move |f| (format!("catalog {}", c.id), f.subject.clone(), f.message.clone()))
            })
            .collect();
        all.extend(self.probes.iter().filter(|p| matches!(p.verdict, Verdict::Fail | Verdict::Inconclusive)).map(
            |p| {
                (
                    format!("probe as {}", p.role),
                    p.capability.clone(),
                    format!("expected {}, observed {} — {}", p.expected, p.observed, p.sql),
                )
            },
        ));
        if self.rls.verdict == Verdict::Fail {
            all.push(("probe rls".into(), "row-level security".into(), self.rls.message.clone()));
        }
        all
    }

    /// The text matrix (`Display` of the report).
    pub fn to_text(&self) -> String {
        self.to_string()
    }

    /// The Markdown summary ([`Markdown`]).
    pub fn to_markdown(&self) -> String {
        Markdown(self).to_string()
    }

    fn write_text(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failures = self.failures();
        writeln!(out, "db-check: `{}` on PostgreSQL {}", self.database, self.server_version)?;
        let grants = self.missing_grants_only();
        match &grants {
            Some(groups) => {
                writeln!(
                    out,
                    "\nFAILURES ({}), one cause: grants the model gives the runtime roles are missing\n  fix: {}",
                    failures.len(),
                    Report::GRANT_FIX
                )?;
                for (check, subjects) in groups {
                    writeln!(out, "  ✗ {check}: {}", subjects.join(", "))?;
                }
                let probes = failures.iter().filter(|(place, _, _)| place.starts_with("probe")).count();
                if probes > 0 {
                    writeln!(
                        out,
                        "  ✗ {probes} live probes fail or cannot run for the same reason (--json lists each)"
                    )?;
                }
            }
            None if !failures.is_empty() => {
                writeln!(out, "\nFAILURES ({})", failures.len())?;
                for (place, subject, message) in &failures {
                    writeln!(out, "  ✗ {place:<26} {subject}: {message}")?;
                }
            }
            None => {}
        }
        self.probes_text(out)?;
        self.catalog_text(out)?;
        writeln!(
            out,
            "\n{} ({} ms; {} queries, {} of them for the catalog audit)",
            if self.holds() && !self.unproven().is_empty() {
                format!("the model holds, but unproven: {}", self.unproven().join(", "))
            } else if self.holds() {
                "the model holds".to_string()
            } else if grants.is_some() {
                format!(
                    "the model does NOT hold: {} failures, all from missing grants (the fix is above)",
                    failures.len()
                )
            } else {
                format!("the model does NOT hold: {} failures", failures.len())
            },
            self.elapsed.as_millis(),
            self.queries,
            self.catalog_queries
        )?;
        Ok(())
    }

    /// The probes as a table: a row per capability, a column per role,
    /// failures first.
    fn probes_text(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "\nLIVE PROBES (each in a transaction that is rolled back)")?;
        let width = self.probes.iter().map(|p| p.capability.chars().count()).max().unwrap_or(10).max(10);
        write!(out, "  {:<width$}  {:<22}", "capability", "expected")?;
        for role in &self.roles {
            write!(out, "  {role:<18}")?;
        }
        writeln!(out)?;
        let mut ids: Vec<&'static str> = Vec::new();
        for probe in &self.probes {
            if !ids.contains(&probe.id) {
                ids.push(probe.id);
            }
        }
        // Failures first, then the rest in probe order.
        ids.sort_by_key(|id| !self.probes.iter().any(|p| p.id == *id && p.verdict == Verdict::Fail));
        for id in ids {
            let row: Vec<&Probe> = self.probes.iter().filter(|p| p.id == id).collect();
            write!(out, "  {:<width$}  {:<22}", row[0].capability, row[0].expected)?;
            for role in &self.roles {
                let cell = match row.iter().find(|p| &p.role == role) {
                    Some(p) => format!("{} {}", p.verdict.mark(), p.observed),
                    None => "–".to_string(),
                };
                write!(out, "  {cell:<18}")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "  {} row-level security: {}", self.rls.verdict.mark(), self.rls.message)?;
        Ok(())
    }

    /// The catalog checks, the exemptions, the residual capabilities, the notes.
    fn catalog_text(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "\nCATALOG")?;
        for check in &self.checks {
            let verdict = check.verdict();
            writeln!(out, "  {} {:<20} {} ({} checked)", verdict.mark(), check.id, check.title, check.checked)?;
            for finding in check.findings.iter().filter(|f| f.verdict != Verdict::Fail) {
                writeln!(out, "      {} {}: {}", finding.verdict.mark(), finding.subject, finding.message)?;
            }
        }
        writeln!(out, "\nEXEMPTIONS ({})", self.policy_file)?;
        if self.exemptions.is_empty() {
            writeln!(out, "  none")?;
        }
        for (exemption, used) in &self.exemptions {
            let unused = if *used { "" } else { " (not needed by anything today)" };
            writeln!(out, "  ~ {} {}: {}{unused}", exemption.kind.key(), exemption.name, exemption.reason)?;
        }
        writeln!(out, "\nRESIDUAL CAPABILITIES (no privilege can take these from a login role)")?;
        for residual in &self.residuals {
            writeln!(out, "  · {:<10} {}: {}", residual.role, residual.capability, residual.observed)?;
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let probe = |p: &Probe| {
            json!({"role": p.role, "id": p.id, "capability": p.capability, "sql": p.sql,
                   "expected": p.expected, "observed": p.observed, "verdict": p.verdict.word()})
        };
        json!({
            "database": self.database,
            "server_version": self.server_version,
            "holds": self.holds(),
            "failures": self.failures().iter().map(|(place, subject, message)| json!({"where": place, "subject": subject, "message": message})).collect::<Vec<_>>(),
            "cause": self.missing_grants_only().map(|groups| json!({
                "missing_grants": groups.iter().map(|(check, subjects)| json!({"check": check, "subjects": subjects})).collect::<Vec<_>>(),
                "fix": Report::GRANT_FIX,
            })),
            "catalog": self.checks.iter().map(|c| json!({
                "id": c.id.id(), "invariant": c.id.invariant().name(), "title": c.title, "checked": c.checked, "verdict": c.verdict().word(),
                "findings": c.findings.iter().map(|f| json!({"subject": f.subject, "verdict": f.verdict.word(), "message": f.message})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "probes": self.probes.iter().map(probe).collect::<Vec<_>>(),
            "rls_behaviour": {"verdict": self.rls.verdict.word(), "message": self.rls.message},
            "residual_capabilities": self.residuals.iter().map(probe).collect::<Vec<_>>(),
            "policy_file": self.policy_file,
            "unproven": self.unproven(),
            "exemptions": self.exemptions.iter().map(|(e, used)| json!({"kind": e.kind.key(), "name": e.name, "reason": e.reason, "needed": used})).collect::<Vec<_>>(),
            "queries": self.queries,
            "catalog_queries": self.catalog_queries,
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "notes": self.notes,
            "logins": self.logins.iter().map(|state| json!({
                "role": state.role,
                "rotation": state.rotation.word(),
                "logins": state.logins.iter().map(|l| json!({"name": l.name, "can_log_in": l.can_log_in, "used": l.used})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    fn write_markdown(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failures = self.failures();
        writeln!(
            out,
            "## db-check: `{}` {}\n",
            self.database,
            if self.holds() { "✅ the model holds".to_string() } else { format!("❌ {} failures", failures.len()) }
        )?;
        if !failures.is_empty() {
            writeln!(out, "| where | subject | problem |\n| --- | --- | --- |")?;
            for (place, subject, message) in &failures {
                writeln!(out, "| {place} | `{}` | {} |", subject.replace('|', "\\|"), message.replace('|', "\\|"))?;
            }
            writeln!(out)?;
        }
        write!(out, "| capability | expected |")?;
        for role in &self.roles {
            write!(out, " {role} |")?;
        }
        writeln!(out)?;
        writeln!(out, "| --- | --- |{}", " --- |".repeat(self.roles.len()))?;
        let mut ids: Vec<&'static str> = Vec::new();
        for probe in &self.probes {
            if !ids.contains(&probe.id) {
                ids.push(probe.id);
            }
        }
        for id in ids {
            let row: Vec<&Probe> = self.probes.iter().filter(|p| p.id == id).collect();
            write!(out, "| {} | {} |", row[0].capability, row[0].expected)?;
            for role in &self.roles {
                match row.iter().find(|p| &p.role == role) {
                    Some(p) => {
                        write!(out, " {} {} |", p.verdict.mark(), p.observed)?;
                    }
                    None => out.write_str(" – |")?,
                }
            }
            writeln!(out)?;
        }
        writeln!(out, "\n**Row-level security:** {} {}\n", self.rls.verdict.mark(), self.rls.message)?;
        writeln!(out, "| catalog check | objects | verdict |\n| --- | --- | --- |")?;
        for check in &self.checks {
            writeln!(
                out,
                "| {} | {} | {} {} |",
                check.title,
                check.checked,
                check.verdict().mark(),
                check.verdict().word()
            )?;
        }
        if !self.exemptions.is_empty() {
            writeln!(out, "\n**Exemptions:**\n")?;
            for (exemption, _) in &self.exemptions {
                writeln!(out, "- {} `{}`: {}", exemption.kind.key(), exemption.name, exemption.reason)?;
            }
        }
        writeln!(out, "\n**Residual capabilities** (cannot be taken from a login role):\n")?;
        for residual in &self.residuals {
            writeln!(out, "- {}: {} ({})", residual.role, residual.capability, residual.observed)?;
        }
        Ok(())
    }
}

/// The text matrix a person reads at a glance, failures first.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_text(f)
    }
}

/// The report as Markdown (for `$GITHUB_STEP_SUMMARY`).
pub struct Markdown<'a>(pub &'a Report);

impl fmt::Display for Markdown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_markdown(f)
    }
}
