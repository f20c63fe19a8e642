//! Relations of the managed schemas: owner changes with their grants
//! restored in the same transaction, and ACL fixes grouped over many
//! relations where the owner stays.

use super::*;
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
            vec![Sql::new(format!("ALTER {} {qualified} OWNER TO {}", rel.alter_keyword(), quote_ident(&migrator)))];
        let mut summary =
            format!("owner of {} `{}.{}`: `{}` → `{migrator}`", rel.noun(), rel.schema, rel.name, rel.owner);
        // A view runs with its owner's rights. Owned by the BYPASSRLS
        // migrator it would show every tenant's rows; security_invoker
        // (PostgreSQL 15+) keeps RLS applying to whoever queries it.
        // What cannot be fixed so is refused in `owners_rights`.
        if rel.kind == 'v'
            && !rel.security_invoker
            && self.snap.server_version >= 150000
            && reach::source(self.model, &self.snap.db, rel.oid, false).is_some()
        {
            statements.push(Sql::new(format!("ALTER VIEW {qualified} SET (security_invoker = true)")));
            summary.push_str(" with security_invoker");
        }
        for member in group {
            let changes = self.access(&On::Relation(member.oid));
            statements.extend(self.acl_statements(keyword(member), &member.qualified(), &migrator, &changes));
            statements.extend(self.column_statements(member, columns.get(&member.oid)));
        }
        if statements.len() > 1 {
            summary.push_str(" (grants restored)");
        }
        let lock_cost = rel.lock_cost + group.len() as u32 - 1;
        self.plan.push(Phase::Ownership, summary, statements, lock_cost);
    }

    /// One step per change and chunk of [`OBJECTS_PER_GRANT`] relations.
    fn grouped_grants(&mut self, grouped: BTreeMap<(&'static str, AclChange), Vec<String>>) {
        let migrator = self.migrator().to_string();
        for ((keyword, change), objects) in grouped {
            for chunk in objects.chunks(OBJECTS_PER_GRANT) {
                let statements =
                    self.acl_statements(keyword, &chunk.join(", "), &migrator, std::slice::from_ref(&change));
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
    fn column_statements(&mut self, rel: &Relation, columns: Option<&Vec<&ColumnAcl>>) -> Vec<Sql> {
        let owner = self.migrator().to_string();
        let mut statements = Vec::new();
        for column in columns.into_iter().flatten() {
            let on = On::Column { table: rel.oid, column: column.column.clone() };
            for change in self.access(&on) {
                // Columns want nothing (`wants::column`): only revokes arise.
                let AclChange::Revoke { privs, grantor, grantee } = &change else { continue };
                let column_privs: Vec<String> = privs
                    .letters()
                    .chars()
                    .map(|l| format!("{} ({})", Privs::from_letters(&l.to_string()).sql(), quote_ident(&column.column)))
                    .collect();
                let actor = self.actor(&owner, Some(grantor));
                statements.push(
                    Sql::new(format!(
                        "REVOKE {} ON TABLE {} FROM {} CASCADE",
                        column_privs.join(", "),
                        rel.qualified(),
                        grantee.sql()
                    ))
                    .run_as(actor),
                );
            }
        }
        statements
    }
}
