//! `ALTER DEFAULT PRIVILEGES`: the migrator's rows the model wants, and
//! the runtime roles' (or other roles') rows that give them more.

use super::*;
use crate::kinds::DefaultObjects;

impl Planner<'_> {
    /// One step per row, rendered from the access drift: the migrator's rows
    /// (made where missing) give what [`wants::migrator_default`] says; a
    /// runtime role's rows go ([`Drift::RuntimeDefaults`]); another role's
    /// grants to the runtime roles go. In order of role, schema and kind of
    /// object.
    pub(super) fn default_privileges(&mut self) {
        let mut rows: BTreeMap<(String, Option<String>, DefaultObjects), Vec<AclChange>> = BTreeMap::new();
        let migrator = self.migrator().to_string();
        let wanted: Vec<On> =
            self.access.changes.keys().filter(|on| matches!(on, On::DefaultRow { .. })).cloned().collect();
        for on in wanted {
            let On::DefaultRow { schema, objtype } = &on else { continue };
            let key = (migrator.clone(), schema.clone(), *objtype);
            rows.entry(key).or_default().extend(self.access(&on));
        }
        for item in std::mem::take(&mut self.access.defaults) {
            let (row, changes) = match item {
                Drift::RuntimeDefaults { row, changes } => (row, changes),
                Drift::OtherDefaults { item, to_runtime: true, row } => {
                    let revoke =
                        AclChange::Revoke { grantee: item.grantee, privs: item.privs, grantor: row.role.clone() };
                    (row, vec![revoke])
                }
                _ => continue,
            };
            rows.entry((row.role, row.schema, row.objtype)).or_default().extend(changes);
        }
        for ((role, schema, objtype), changes) in rows {
            let Some(objects) = objtype.keyword() else { continue };
            if !changes.is_empty() {
                self.default_step(&role, schema.as_deref(), objects, &changes);
            }
        }
    }

    fn default_step(&mut self, role: &str, schema: Option<&str>, objects: &'static str, changes: &[AclChange]) {
        if !self.snap.admin.superuser {
            self.plan.needs.insert(Need::ActAs(role.to_string()));
        }
        let statements = grants_first(changes)
            .into_iter()
            .map(|change| {
                let (role, schema) = (Some(role.to_string()), schema.map(quote_ident));
                Change::DefaultPrivileges { role, schema, objects, change }.into()
            })
            .collect();
        let place = schema.map(|s| format!(" in schema `{s}`")).unwrap_or_else(|| " everywhere".into());
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
