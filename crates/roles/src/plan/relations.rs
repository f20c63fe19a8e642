//! Relations of the managed schemas: owner changes with their grants
//! restored in the same transaction, and ACL fixes grouped over many
//! relations where the owner stays.

use super::*;
use crate::acl::DML;
use crate::snapshot::ColumnAcl;

/// Relations by table: each linked sequence with the table that owns it
/// (it changes owner with that table), and column ACLs by table.
struct Groups<'s> {
    tables: Vec<Vec<&'s Relation>>,
    columns: BTreeMap<i64, Vec<&'s ColumnAcl>>,
}

impl<'s> Groups<'s> {
    fn of(snap: &'s Snapshot) -> Groups<'s> {
        let relations = &snap.db.relations;
        let by_oid: BTreeMap<i64, &Relation> = relations.iter().map(|r| (r.oid, r)).collect();
        let follows = |rel: &Relation| rel.owned_by.filter(|t| by_oid.contains_key(t));
        let mut linked: BTreeMap<i64, Vec<&Relation>> = BTreeMap::new();
        for rel in relations {
            if let Some(table) = follows(rel) {
                linked.entry(table).or_default().push(rel);
            }
        }
        let tables = relations
            .iter()
            .filter(|rel| follows(rel).is_none())
            .map(|rel| std::iter::once(rel).chain(linked.get(&rel.oid).into_iter().flatten().copied()).collect())
            .collect();
        let mut columns: BTreeMap<i64, Vec<&ColumnAcl>> = BTreeMap::new();
        for column in &snap.db.columns {
            columns.entry(column.table_oid).or_default().push(column);
        }
        Groups { tables, columns }
    }
}

impl Planner<'_> {
    pub(super) fn relations(&mut self) {
        let groups = Groups::of(self.snap);
        // ACL changes on relations that keep their owner, grouped so that one
        // statement covers many relations.
        let mut grouped: BTreeMap<(&'static str, AclChange), Vec<String>> = BTreeMap::new();
        for group in &groups.tables {
            if group[0].owner != self.migrator() {
                self.move_relation(group, &groups.columns);
                continue;
            }
            for member in group {
                for change in self.access(&On::Relation(member.oid)) {
                    grouped.entry((keyword(member), change)).or_default().push(member.qualified());
                }
                let statements = self.column_statements(member, groups.columns.get(&member.oid));
                if !statements.is_empty() {
                    self.plan.push(
                        Phase::Grants,
                        format!("column privileges on `{}.{}` removed", member.schema, member.name),
                        statements,
                        0,
                    );
                }
            }
        }
        self.grouped_grants(grouped);
    }

    /// One step: the owner change of a relation (and its linked sequences)
    /// with the grants it needs afterwards, in one transaction.
    fn move_relation(&mut self, group: &[&Relation], columns: &BTreeMap<i64, Vec<&ColumnAcl>>) {
        let migrator = self.migrator().to_string();
        let rel = group[0];
        self.plan.needs.insert(Need::ChangeOwner { from: rel.owner.clone(), to: migrator.clone() });
        let qualified = rel.qualified();
        let mut statements =
            vec![Change::SetOwner { keyword: rel.alter_keyword(), object: qualified.clone(), owner: migrator.clone() }
                .into()];
        let mut summary =
            format!("owner of {} `{}.{}`: `{}` → `{migrator}`", rel.noun(), rel.schema, rel.name, rel.owner);
        if predict::becomes_invoker(self.model, self.snap, rel) {
            statements.push(Change::SecurityInvoker { view: qualified.clone() }.into());
            summary.push_str(" with security_invoker");
        }
        let mut widened = Vec::new();
        for member in group {
            let mut changes = self.access(&On::Relation(member.oid));
            self.keep_owners_access(member, &mut changes);
            for change in &changes {
                if let Some(line) = self.widening(member, change) {
                    widened.push(line);
                }
            }
            statements.extend(self.acl_statements(keyword(member), &[member.qualified()], &migrator, &changes));
            statements.extend(self.column_statements(member, columns.get(&member.oid)));
        }
        if !widened.is_empty() {
            summary.push_str(&format!(" (widens, accepted: {})", widened.join("; ")));
            self.widenings.extend(widened);
        }
        if statements.len() > 1 && !summary.contains("(widens") {
            summary.push_str(" (grants restored)");
        }
        let lock_cost = rel.lock_cost + group.len() as u32 - 1;
        self.plan.push(Phase::Ownership, summary, statements, lock_cost);
    }

    /// A runtime role that owned a relation the writers do not grant (a
    /// materialized view, a view that runs as its owner, a foreign table)
    /// keeps the DML it had as owner: the app's own reads go on working.
    fn keep_owners_access(&self, rel: &Relation, changes: &mut Vec<AclChange>) {
        let former = &rel.owner;
        let private = wants::is_private(self.model, rel, former);
        let predicted_invoker = rel.security_invoker || predict::becomes_invoker(self.model, self.snap, rel);
        if !self.model.is_runtime_role(former)
            || rel.is_sequence()
            || private
            || !self.model.is_app_schema(&rel.schema)
            || wants::writers_grant(rel.kind, predicted_invoker)
            || changes
                .iter()
                .any(|c| matches!(c, AclChange::Grant { grantee, .. } if *grantee == Grantee::role(former)))
        {
            return;
        }
        changes.push(AclChange::Grant { grantee: Grantee::role(former), privs: DML });
    }

    /// What a grant of a conversion gives a runtime role that it did not
    /// hold before (as owner, by its own grants or PUBLIC's): a line for the
    /// plan, or `None` when it only restores access.
    fn widening(&self, rel: &Relation, change: &AclChange) -> Option<String> {
        let AclChange::Grant { grantee: Grantee::Role(role), privs } = change else { return None };
        // A role this run or an earlier one created had nothing to widen
        // (an interrupted conversion resumes without a question).
        let made_here = self.snap.roles.get(role).is_none_or(|row| row.made_here);
        if !self.model.is_runtime_role(role) || rel.owner == *role || made_here {
            return None;
        }
        let held = rel
            .acl
            .iter()
            .filter(|item| item.grantee == Grantee::Public || item.grantee == Grantee::role(role))
            .fold(Privs::NONE, |all, item| all.union(item.privs));
        let new = privs.minus(held);
        (!new.is_empty()).then(|| format!("`{role}` gains {} on `{}.{}`", new.sql(), rel.schema, rel.name))
    }

    /// The widenings of a conversion: refused unless the operator accepted
    /// them (`--allow-widening`) or the policy file keeps them out.
    pub(super) fn refuse_widenings(&mut self) {
        if self.widenings.is_empty() || self.model.confirmed.widening {
            return;
        }
        self.plan.refusals.push(Refusal::Widening { gains: self.widenings.clone() });
    }

    /// One step per change and chunk of [`OBJECTS_PER_GRANT`] relations.
    fn grouped_grants(&mut self, grouped: BTreeMap<(&'static str, AclChange), Vec<String>>) {
        let migrator = self.migrator().to_string();
        for ((keyword, change), objects) in grouped {
            for chunk in objects.chunks(OBJECTS_PER_GRANT) {
                let statements = self.acl_statements(keyword, chunk, &migrator, std::slice::from_ref(&change));
                let noun = if keyword == "SEQUENCE" { "sequence" } else { "table" };
                let what = if chunk.len() == 1 {
                    format!("{noun} `{}`", chunk[0].replace('"', ""))
                } else {
                    format!("{} {noun}s", chunk.len())
                };
                let summary = format!("{}: {what}", describe(std::slice::from_ref(&change)));
                self.plan.push(Phase::Grants, summary, statements, 0);
            }
        }
    }

    /// Column grants to the runtime roles or PUBLIC are removed: table-level
    /// DML is all they get. Revokes run as their grantors (the migrator's,
    /// once the table has moved to it).
    fn column_statements(&mut self, rel: &Relation, columns: Option<&Vec<&ColumnAcl>>) -> Vec<Statement> {
        let owner = self.migrator().to_string();
        let mut statements = Vec::new();
        for column in columns.into_iter().flatten() {
            let on = On::Column { table: rel.oid, column: column.column.clone() };
            for change in self.access(&on) {
                // Columns want nothing (`wants::column`): only revokes arise.
                let AclChange::Revoke { privs, grantor, grantee } = change else { continue };
                let actor = self.actor(&owner, Some(&grantor));
                let change =
                    Change::RevokeColumn { table: rel.qualified(), column: column.column.clone(), privs, grantee };
                statements.push(Statement::new(change).run_as(actor));
            }
        }
        statements
    }
}
