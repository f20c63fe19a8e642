//! The roles phase: the three roles, their attributes ([`Attribute`]),
//! passwords, memberships and defaults, and the memberships a non-superuser
//! admin needs to act through them.

use super::*;

impl Planner<'_> {
    pub(super) fn roles(&mut self) {
        for spec in self.model.roles() {
            match self.snap.roles.get(&spec.name) {
                // The alternate login comes after its role, from db-rotate.
                None if spec.login != spec.name => self.plan.refusals.push(Refusal::MissingLogin {
                    role: spec.name.clone(),
                    login: spec.login.clone(),
                    var: spec.kind.dsn_var(),
                }),
                None => self.create_role(spec),
                Some(row) if !row.login_exists => self.plan.refusals.push(Refusal::MissingLogin {
                    role: spec.name.clone(),
                    login: spec.login.clone(),
                    var: spec.kind.dsn_var(),
                }),
                Some(row) => {
                    self.refuse_demotion(spec, row);
                    self.alter_role(spec, row);
                }
            }
        }
        self.settings();
        // None of the three roles is a member of any role: not of each
        // other, not of pg_* roles, not of anything that could lend it
        // privileges the model does not give.
        for item in self.found(|d| matches!(d, Drift::Membership(_))) {
            let Drift::Membership(membership) = item else { continue };
            let granted_by = (self.snap.server_version.has_membership_options() && !membership.grantor.is_empty())
                .then(|| membership.grantor.clone());
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::AlterRole(membership.role.clone()));
            }
            self.plan.push(
                Phase::Roles,
                format!("remove membership of `{}` in `{}`", membership.member, membership.role),
                vec![Change::RevokeMembership {
                    role: membership.role.clone(),
                    member: membership.member.clone(),
                    granted_by,
                }
                .into()],
                0,
            );
        }
    }

    /// An existing role that is not shaped like a model role (an attribute
    /// the model would take away, a membership in any role, `pg_monitor`
    /// included) is probably not one of ours yet (a typo in an env file, an
    /// admin's name, a monitoring login): reshaping it silently could lock
    /// an operator or a tool out. Only on `--take-over`.
    pub(super) fn refuse_demotion(&mut self, spec: &RoleSpec, row: &RoleRow) {
        let mut taken: Vec<String> = Attribute::ALL
            .into_iter()
            .filter(|a| row.has(*a) && !a.wanted(spec.kind))
            .map(|a| a.keyword().to_string())
            .collect();
        taken.extend(
            self.snap
                .memberships
                .iter()
                .filter(|m| m.member == row.name)
                .map(|m| format!("membership in `{}`", m.role)),
        );
        if taken.is_empty() || self.model.confirmed.take_over.contains(&row.name) {
            return;
        }
        self.plan.refusals.push(Refusal::Demotion { role: row.name.clone(), taken });
    }

    /// Role and database defaults that break or weaken the model for the
    /// runtime roles are removed (`wants::setting_problem`).
    pub(super) fn settings(&mut self) {
        for item in self.found(|d| matches!(d, Drift::Setting { .. })) {
            let Drift::Setting { setting, problem } = &item else { continue };
            if item.remedy(self.model) == Remedy::Warn {
                self.plan.warnings.push(Warning::Setting { subject: item.subject(), item: item.to_string() });
                continue;
            }
            let (phase, sql, place) = match (&setting.role, &setting.database) {
                (Some(role), database) => {
                    if !self.snap.admin.superuser {
                        self.plan.needs.insert(Need::AlterRole(role.clone()));
                    }
                    let place = database.as_ref().map(|d| format!(" in `{d}`")).unwrap_or_default();
                    (
                        Phase::Roles,
                        Statement::new(Change::ResetRoleSetting {
                            role: role.clone(),
                            database: database.clone(),
                            setting: setting.name.clone(),
                        }),
                        format!("role `{role}`{place}"),
                    )
                }
                (None, Some(database)) => {
                    let owner = self.snap.database.as_ref().map(|d| d.owner.clone()).unwrap_or_default();
                    let actor = self.actor(&owner, None);
                    (
                        Phase::Database,
                        Statement::new(Change::ResetDatabaseSetting {
                            database: database.clone(),
                            setting: setting.name.clone(),
                        })
                        .run_as(actor),
                        format!("database `{database}`"),
                    )
                }
                (None, None) => continue,
            };
            self.plan.push(phase, format!("default of {place} removed: {problem}"), vec![sql], 0);
        }
    }

    pub(super) fn create_role(&mut self, spec: &RoleSpec) {
        let attributes = attributes_sql(spec.kind);
        let verifier = new_verifier(&spec.password);
        self.plan.needs.insert(Need::CreateRole);
        if spec.bypassrls() {
            self.plan.needs.insert(Need::GiveBypassRls(spec.name.clone()));
        }
        self.plan.push(
            Phase::Roles,
            format!("create {} role `{}` ({attributes})", spec.kind, spec.name),
            vec![
                Change::CreateRole { role: spec.name.clone(), attributes: attributes.clone(), verifier }.into(),
                Change::MarkRole { role: spec.name.clone() }.into(),
            ],
            0,
        );
    }

    pub(super) fn alter_role(&mut self, spec: &RoleSpec, row: &RoleRow) {
        let changes: Vec<String> = self
            .found
            .iter()
            .filter_map(|item| match item {
                Drift::Attribute { role, attribute, held } if *role == spec.name => Some(attribute.spelled(!held)),
                _ => None,
            })
            .collect();
        if !changes.is_empty() {
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::AlterRole(spec.name.clone()));
            }
            if changes.iter().any(|c| c == "BYPASSRLS") || row.superuser {
                self.plan.needs.insert(Need::GiveBypassRls(spec.name.clone()));
            }
            let attributes = changes.join(" ");
            self.plan.push(
                Phase::Roles,
                format!("set attributes of `{}`: {attributes}", spec.name),
                vec![Change::SetAttributes { role: spec.name.clone(), attributes: attributes.clone() }.into()],
                0,
            );
        }
        let reason = match &row.password {
            StoredPassword::Scram(verifier) if verifier_matches(verifier, &spec.password) => None,
            StoredPassword::Scram(_) => Some("password changed"),
            StoredPassword::Md5 => Some("md5 hash replaced by a SCRAM verifier"),
            StoredPassword::Absent => Some("password set (there was none)"),
            StoredPassword::Other => Some("plaintext password replaced by a SCRAM verifier"),
            StoredPassword::Unknown => match row.login_check {
                Some(true) => None,
                Some(false) => Some("password changed"),
                None => Some("password set again (it cannot be verified with this admin)"),
            },
        };
        if let Some(reason) = reason {
            if !self.snap.admin.superuser {
                self.plan.needs.insert(Need::AlterRole(spec.login.clone()));
            }
            // The password is the login's: the role's own or its alternate login's.
            let verifier = new_verifier(&spec.password);
            self.plan.push(
                Phase::Roles,
                format!("`{}`: {reason}", spec.login),
                vec![Change::SetPassword { role: spec.login.clone(), verifier }.into()],
                0,
            );
        }
    }

    /// A non-superuser admin acts through the roles: it must be able to SET
    /// ROLE to the migrator (to own what it creates and to grant as the
    /// owner) and to inherit the privileges of every role it takes objects
    /// from. Where it holds ADMIN on such a role (it created it, on
    /// PostgreSQL 16+) it grants itself the membership; the preflight
    /// reports the rest.
    pub(super) fn admin_memberships(&mut self) {
        if self.snap.admin.superuser {
            return;
        }
        let mut wanted: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for need in &self.plan.needs {
            match need {
                Need::CreateDatabaseOwnedBy(role) | Need::ActAs(role) => {
                    wanted.entry(role.clone()).or_default().1 = true
                }
                Need::ChangeOwner { from, to } | Need::Reassign { from, to } => {
                    wanted.entry(from.clone()).or_default().0 = true;
                    wanted.entry(to.clone()).or_default().1 = true;
                }
                _ => {}
            }
        }
        // The database owner's objects (schema public on 15+) are taken
        // through the database owner, the migrator once the plan has run.
        if wanted.remove("pg_database_owner").is_some() {
            wanted.entry(self.migrator().to_string()).or_default().0 = true;
        }
        let major = self.snap.major();
        for (role, (inherit, set)) in wanted {
            if !self.model.roles().iter().any(|r| r.name == role) {
                continue;
            }
            let created_now = !self.snap.roles.contains_key(&role);
            let access = self.snap.admin.access.get(&role).copied().unwrap_or_default();
            let lacks = (inherit && !access.usage) || (set && !access.set);
            // Since 16 the creator of a role holds ADMIN on it; before, CREATEROLE suffices.
            let may_grant = if major >= 16 { access.admin || created_now } else { self.snap.admin.createrole };
            if !lacks || !may_grant {
                continue;
            }
            self.plan.admin_grants.push((role.clone(), true, true));
            self.plan.push(
                Phase::Roles,
                format!("`{}` may act as `{role}` (membership for the admin, not the app)", self.snap.admin.name),
                vec![Change::GrantMembership {
                    role: role.clone(),
                    member: self.snap.admin.name.clone(),
                    options: (major >= 16).then_some(crate::sql::MemberOptions { inherit: true, set: true }),
                }
                .into()],
                0,
            );
        }
    }
}
