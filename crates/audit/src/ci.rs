//! Renderings of a [`Report`] that CI systems read: JUnit XML (GitLab,
//! Jenkins, CircleCI, Buildkite display it) and TAP version 13 (`prove`,
//! `pg_prove`-style harnesses). One test case per catalog check, one per
//! probe and role, and one for the row-level security behaviour.

use std::fmt;

use crate::report::{CheckSummary, Probe, Report, Verdict};

/// One test case, whatever the rendering.
struct Case {
    suite: &'static str,
    /// `catalog`, or `probes.<role>`.
    class: String,
    name: String,
    outcome: Outcome,
}

enum Outcome {
    Pass(String),
    Fail { summary: String, detail: String },
    Skip(String),
}

fn check_case(check: &CheckSummary) -> Case {
    let name = format!("{}: {}", check.id, check.title);
    let notes: Vec<String> = check
        .findings
        .iter()
        .filter(|f| f.verdict != Verdict::Fail)
        .map(|f| format!("{} {}: {}", f.verdict.word(), f.subject, f.message))
        .collect();
    let outcome = match check.verdict() {
        Verdict::Fail => {
            let failures: Vec<String> = check
                .findings
                .iter()
                .filter(|f| f.verdict == Verdict::Fail)
                .map(|f| format!("{}: {}", f.subject, f.message))
                .collect();
            Outcome::Fail {
                summary: format!("{} finding(s): {}", failures.len(), failures[0]),
                detail: failures.join("\n"),
            }
        }
        Verdict::Unproven => Outcome::Skip(format!("unproven: {}", notes.join("; "))),
        Verdict::NotApplicable => Outcome::Skip(format!("not applicable: {}", notes.join("; "))),
        _ => Outcome::Pass(format!(
            "{} checked{}",
            check.checked,
            if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
        )),
    };
    Case { suite: "catalog", class: "db-check.catalog".to_string(), name, outcome }
}

fn probe_case(probe: &Probe) -> Case {
    let observed = format!("expected {}, observed {}", probe.expected, probe.observed);
    let outcome = match probe.verdict {
        Verdict::Fail | Verdict::Inconclusive => {
            Outcome::Fail { summary: format!("{}: {observed}", probe.verdict.word()), detail: probe.sql.clone() }
        }
        Verdict::NotApplicable | Verdict::Unproven => Outcome::Skip(format!("{}: {observed}", probe.verdict.word())),
        _ => Outcome::Pass(observed),
    };
    Case {
        suite: "probes",
        class: format!("db-check.probes.{}", probe.role),
        name: format!("{} as {}: {}", probe.id, probe.role, probe.capability),
        outcome,
    }
}

fn cases(report: &Report) -> Vec<Case> {
    let mut all: Vec<Case> = report.checks.iter().map(check_case).collect();
    all.extend(report.probes.iter().map(probe_case));
    let message = report.rls.message.clone();
    all.push(Case {
        suite: "probes",
        class: "db-check.probes.rls".to_string(),
        name: "rls-behaviour: row-level security as the runtime role".to_string(),
        outcome: match report.rls.verdict {
            Verdict::Fail => Outcome::Fail { summary: message.clone(), detail: message },
            Verdict::Unproven | Verdict::NotApplicable => Outcome::Skip(message),
            _ => Outcome::Pass(message),
        },
    });
    all
}

/// Text for XML 1.0: escaped, and without the control characters it
/// cannot carry at all.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The `testcase` elements of `cases`, indented under a `testsuite`.
fn write_cases<'a>(out: &mut dyn fmt::Write, cases: impl Iterator<Item = &'a Case>) -> fmt::Result {
    for case in cases {
        write!(out, "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"", xml(&case.class), xml(&case.name))?;
        match &case.outcome {
            Outcome::Pass(note) => {
                writeln!(out, ">\n      <system-out>{}</system-out>\n    </testcase>", xml(note))?;
            }
            Outcome::Fail { summary, detail } => {
                writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                    xml(summary),
                    case.suite,
                    xml(detail)
                )?;
            }
            Outcome::Skip(reason) => {
                writeln!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(reason))?;
            }
        }
    }
    Ok(())
}

impl Report {
    /// JUnit XML ([`Junit`]).
    pub fn to_junit(&self) -> String {
        Junit(self).to_string()
    }

    /// TAP version 13 ([`Tap`]).
    pub fn to_tap(&self) -> String {
        Tap(self).to_string()
    }

    /// JUnit XML: a `testsuites` of two suites (`catalog`, `probes`).
    fn write_junit(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cases = cases(self);
        let count = |suite: Option<&str>, pick: fn(&Outcome) -> bool| {
            cases.iter().filter(|c| suite.is_none_or(|s| c.suite == s) && pick(&c.outcome)).count()
        };
        let failed = |o: &Outcome| matches!(o, Outcome::Fail { .. });
        let skipped = |o: &Outcome| matches!(o, Outcome::Skip(_));
        let seconds = self.elapsed.as_secs_f64();
        out.write_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
        writeln!(
            out,
            "<testsuites name=\"db-check {}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{seconds:.3}\">",
            xml(&self.database),
            cases.len(),
            count(None, failed),
            count(None, skipped)
        )?;
        for suite in ["catalog", "probes"] {
            writeln!(
                out,
                "  <testsuite name=\"db-check.{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
                cases.iter().filter(|c| c.suite == suite).count(),
                count(Some(suite), failed),
                count(Some(suite), skipped)
            )?;
            write_cases(out, cases.iter().filter(|c| c.suite == suite))?;
            writeln!(out, "  </testsuite>")?;
        }
        out.write_str("</testsuites>\n")
    }

    /// One JUnit `testsuite` named `name` with every case of the report: a
    /// fleet's report has one per target.
    pub fn junit_testsuite(&self, name: &str) -> String {
        let cases = cases(self);
        let count = |pick: fn(&Outcome) -> bool| cases.iter().filter(|c| pick(&c.outcome)).count();
        let mut out = format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">\n",
            xml(name),
            cases.len(),
            count(|o| matches!(o, Outcome::Fail { .. })),
            count(|o| matches!(o, Outcome::Skip(_))),
            self.elapsed.as_secs_f64()
        );
        let _ = write_cases(&mut out, cases.iter());
        out.push_str("  </testsuite>\n");
        out
    }

    /// TAP version 13: `ok`/`not ok` per case, `# SKIP` for what could not
    /// be proven, a YAML block with the finding under each failure.
    fn write_tap(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cases = cases(self);
        write!(out, "TAP version 13\n1..{}\n", cases.len())?;
        // A description must not start a directive or a new line.
        let line = |text: &str| text.replace('#', "\\#").replace(['\n', '\r'], " ");
        for (index, case) in cases.iter().enumerate() {
            let number = index + 1;
            let name = format!("{} {}", case.suite, line(&case.name));
            match &case.outcome {
                Outcome::Pass(_) => {
                    writeln!(out, "ok {number} - {name}")?;
                }
                Outcome::Skip(reason) => {
                    writeln!(out, "ok {number} - {name} # SKIP {}", line(reason))?;
                }
                Outcome::Fail { summary, detail } => {
                    writeln!(out, "not ok {number} - {name}")?;
                    writeln!(out, "  ---\n  message: {}", yaml(summary))?;
                    writeln!(out, "  detail: |-")?;
                    for detail_line in detail.lines() {
                        writeln!(out, "    {detail_line}")?;
                    }
                    writeln!(out, "  ...")?;
                }
            }
        }
        Ok(())
    }
}

/// JUnit XML: a `testsuites` of two suites (`catalog`, `probes`).
pub struct Junit<'a>(pub &'a Report);

impl fmt::Display for Junit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_junit(f)
    }
}

/// TAP version 13, one line per case.
pub struct Tap<'a>(pub &'a Report);

impl fmt::Display for Tap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_tap(f)
    }
}

/// A YAML double-quoted scalar.
fn yaml(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checks::CheckId;
    use crate::report::RlsBehaviour;

    /// A report with one failing check (hostile characters in its finding),
    /// one passing, one unproven, and two probes per role, one failing.
    fn report() -> Report {
        let mut ownership = CheckSummary::new(CheckId::Model(roles::drift::Check::Owners));
        ownership.checked = 12;
        ownership.fail("table public.\"a<b>&c\"", "owned by `app_user` \u{1} \"quoted\" 'x' ]]> <!-- -->");
        let mut views = CheckSummary::new(CheckId::ViewsOverRls);
        views.checked = 3;
        let mut tenancy = CheckSummary::new(CheckId::RlsTenancy);
        tenancy.note(Verdict::Unproven, "roots", "no root");
        let probe = |role: &str, id: &'static str, verdict: Verdict| Probe {
            role: role.into(),
            id,
            capability: "CREATE TABLE in public".into(),
            sql: "CREATE TABLE public._probe (id int) -- <&>".into(),
            expected: "denied (42501)".into(),
            observed: if verdict == Verdict::Fail { "allowed".into() } else { "denied (42501)".into() },
            verdict,
        };
        Report {
            database: "app & co".into(),
            server_version: "15.18".into(),
            checks: vec![ownership, views, tenancy],
            probes: vec![
                probe("app_user", "create-table", Verdict::Fail),
                probe("app_service", "create-table", Verdict::Pass),
                probe("app_user", "drop-table", Verdict::Pass),
                probe("app_service", "drop-table", Verdict::NotApplicable),
            ],
            residuals: Vec::new(),
            rls: RlsBehaviour { verdict: Verdict::Pass, message: "each tenant sees its rows only".into() },
            exemptions: Vec::new(),
            policy_file: "none".into(),
            roles: vec!["app_user".into(), "app_service".into()],
            catalog_queries: 18,
            queries: 40,
            elapsed: Duration::from_millis(250),
            notes: Vec::new(),
            logins: Vec::new(),
        }
    }

    #[test]
    fn junit_is_well_formed_xml_with_one_case_per_check_probe_and_role() {
        let text = report().to_junit();
        let document = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("8"), "3 checks + 4 probes + RLS");
        assert_eq!(root.attribute("failures"), Some("2"));
        assert_eq!(root.attribute("skipped"), Some("2"));
        assert_eq!(root.attribute("name"), Some("db-check app & co"));
        let cases: Vec<_> = root.descendants().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases.len(), 8);
        let failure = cases
            .iter()
            .find(|c| c.attribute("name") == Some("owners: everything owned by the migrator"))
            .and_then(|c| c.children().find(|n| n.has_tag_name("failure")))
            .unwrap();
        let detail = failure.text().unwrap();
        assert!(
            detail.contains("table public.\"a<b>&c\": owned by `app_user` \u{FFFD} \"quoted\" 'x' ]]> <!-- -->"),
            "{detail}"
        );
        let probe = cases
            .iter()
            .find(|c| c.attribute("name") == Some("create-table as app_user: CREATE TABLE in public"))
            .unwrap();
        assert_eq!(probe.attribute("classname"), Some("db-check.probes.app_user"));
        let message = probe.children().find(|n| n.has_tag_name("failure")).unwrap().attribute("message").unwrap();
        assert_eq!(message, "FAIL: expected denied (42501), observed allowed");
    }

    #[test]
    fn tap_counts_every_case_and_explains_failures() {
        let text = report().to_tap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..2], ["TAP version 13", "1..8"]);
        let results: Vec<&&str> = lines.iter().filter(|l| l.starts_with("ok ") || l.starts_with("not ok ")).collect();
        assert_eq!(results.len(), 8, "{text}");
        assert_eq!(results.iter().filter(|l| l.starts_with("not ok")).count(), 2, "{text}");
        assert_eq!(results.iter().filter(|l| l.contains(" # SKIP ")).count(), 2, "{text}");
        assert!(text.contains("not ok 4 - probes create-table as app_user: CREATE TABLE in public\n  ---\n  message: \"FAIL: expected denied (42501), observed allowed\""), "{text}");
        // Numbers run 1..=8 in order.
        for (index, line) in results.iter().enumerate() {
            let number = line.trim_start_matches("not ").trim_start_matches("ok ").split(' ').next().unwrap();
            assert_eq!(number, (index + 1).to_string(), "{text}");
        }
    }
}
