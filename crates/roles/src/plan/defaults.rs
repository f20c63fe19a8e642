//! `ALTER DEFAULT PRIVILEGES`: the migrator's rows the model wants, and
//! the runtime roles' (or other roles') rows that give them more.

use super::*;

impl Planner<'_> {
    pub(super) fn default_privileges(&mut self) {
        for row in self.default_rows() {
            let Some(objects) = default_acl_keyword(row.objtype) else { continue };
            let changes = self.default_changes(&row);
            if !changes.is_empty() {
                self.default_step(&row, objects, &changes);
            }
        }
    }

    /// The rows that exist, and the migrator's per-schema rows the model
    /// wants (empty where missing), in a stable order.
    fn default_rows(&self) -> Vec<DefaultAcl> {
        let migrator = self.migrator();
        let mut wanted = wants::default_rows(self.model);
        wanted.retain(|(schema, _)| !schema.as_deref().is_some_and(|s| self.left_to_migrations(s)));
        let mut rows = self.snap.db.default_acls.clone();
        for (schema, objtype) in wanted {
            if !rows.iter().any(|r| r.role == migrator && r.schema == schema && r.objtype == objtype) {
                rows.push(DefaultAcl {
                    role: migrator.to_string(),
                    schema,
                    objtype,
                    acl: Vec::new(),
                    builtin: Vec::new(),
                });
            }
        }
        rows.sort_by(|a, b| (&a.role, &a.schema, a.objtype).cmp(&(&b.role, &b.schema, b.objtype)));
        rows
    }

    /// The migrator's rows give what [`wants::migrator_default`] says; a
    /// runtime role's rows go ([`drift::runtime_default_changes`]); another
    /// role's grants to the runtime roles go.
    fn default_changes(&self, row: &DefaultAcl) -> Vec<AclChange> {
        if row.role == self.migrator() {
            return acl::changes(&row.acl, &wants::migrator_default(self.model, row.schema.as_deref(), row.objtype));
        }
        if self.model.is_runtime_role(&row.role) {
            return drift::runtime_default_changes(row);
        }
        drift::other_defaults(self.model, row)
            .into_iter()
            .filter_map(|item| match item {
                Drift::OtherDefaults { item, to_runtime: true, .. } => {
                    Some(AclChange::Revoke { grantee: item.grantee, privs: item.privs, grantor: row.role.clone() })
                }
                _ => None,
            })
            .collect()
    }

    fn default_step(&mut self, row: &DefaultAcl, objects: &str, changes: &[AclChange]) {
        let (role, schema) = (&row.role, &row.schema);
        if !self.snap.admin.superuser {
            self.plan.needs.insert(Need::ActAs(role.clone()));
        }
        let scope = schema.as_ref().map(|s| format!(" IN SCHEMA {}", quote_ident(s))).unwrap_or_default();
        let prefix = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}{scope}", quote_ident(role));
        let statements = grants_first(changes)
            .iter()
            .map(|change| Sql::new(format!("{prefix} {}", change_sql(change, objects))))
            .collect();
        let place = schema.as_deref().map(|s| format!(" in schema `{s}`")).unwrap_or_else(|| " everywhere".into());
        self.plan.push(
            Phase::DefaultPrivileges,
            format!(
                "default privileges for {} created by `{role}`{place}: {}",
                objects.to_lowercase(),
                describe(changes)
            ),
            statements,
            0,
        );
    }
}
