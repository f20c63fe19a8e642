//! Drizzle's own roles, with the pinned drizzle-kit as the oracle: the
//! project's `schema/roles.ts` declares the three roles `.existing()`, so
//! `generate` writes no role statement for them; a policy `to: appUser`
//! generates a plain `CREATE POLICY … TO "app_user"` that the migrator
//! applies and that is the same policy as the hand-written one; without
//! `.existing()` drizzle-kit writes `CREATE ROLE`, which the migration guard
//! refuses before anything runs, naming the fix; and `pull` with the
//! project's config leaves the roles alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{drizzle_kit, output_text, repo_root, Fixture, TestFolder};

/// A scratch directory inside `platform/db`, where drizzle-kit resolves
/// `drizzle-orm` and takes `out` as a relative path.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix(".drizzle-roles-").tempdir_in(repo_root().join("platform/db")).unwrap()
}

/// `drizzle-kit generate` with `config` (relative to `platform/db`), the
/// role variables unset.
fn generate(kit: &Path, config: &Path) -> Output {
    Command::new("node")
        .arg(kit)
        .arg("generate")
        .arg("--config")
        .arg(config)
        .current_dir(repo_root().join("platform/db"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

fn relative(dir: &Path) -> PathBuf {
    dir.strip_prefix(repo_root().join("platform/db")).unwrap().to_path_buf()
}

/// The SQL files of a generated folder, in order.
fn sql_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

#[test]
fn the_projects_roles_module_adds_no_role_statement() {
    let Some(kit) = drizzle_kit() else { return };
    let dir = scratch();
    let out = dir.path().join("migrations");
    copy_dir(&repo_root().join("platform/db/migrations"), &out);
    // The project's own drizzle.config.ts, writing into the copy.
    let before = sql_files(&out).len();
    let output = Command::new("node")
        .arg(&kit)
        .arg("generate")
        .current_dir(repo_root().join("platform/db"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DRIZZLE_MIGRATIONS_DIR", format!("./{}", relative(&out).display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(output_text(&output).contains("No schema changes"), "{}", output_text(&output));
    assert_eq!(sql_files(&out).len(), before, "nothing generated: {}", output_text(&output));
}

/// A fixture schema: one tenant table whose policy is `to: appUser`, and
/// the project's roles module (or a copy without `.existing()`).
fn fixture(dir: &Path, existing: bool) -> PathBuf {
    let roles = if existing {
        "import { appMigrator, appService, appUser } from \"../schema/roles\";".to_string()
    } else {
        std::fs::write(
            dir.join("roles.ts"),
            std::fs::read_to_string(repo_root().join("platform/db/schema/roles.ts"))
                .unwrap()
                .replace(").existing();", ");"),
        )
        .unwrap();
        "import { appMigrator, appService, appUser } from \"./roles\";".to_string()
    };
    let schema = format!(
        "import {{ sql }} from \"drizzle-orm\";\n\
         import {{ pgPolicy, pgTable, text, uuid }} from \"drizzle-orm/pg-core\";\n\
         {roles}\n\
         export {{ appMigrator, appService, appUser }};\n\
         const tenant = sql`nullif(current_setting('app.current_user_id', true), '')::uuid`;\n\
         export const notes = pgTable(\"notes\", {{\n\
           id: uuid(\"id\").primaryKey().defaultRandom(),\n\
           ownerUserId: uuid(\"owner_user_id\").notNull(),\n\
           body: text(\"body\").notNull(),\n\
         }}, (t) => [\n\
           pgPolicy(\"tenant_isolation\", {{ for: \"all\", to: appUser, using: sql`${{t.ownerUserId}} = ${{tenant}}`, \
             withCheck: sql`${{t.ownerUserId}} = ${{tenant}}` }}),\n\
         ]).enableRLS();\n"
    );
    std::fs::write(dir.join("schema.ts"), schema).unwrap();
    let config = dir.join("drizzle.config.ts");
    std::fs::write(
        &config,
        format!(
            "import {{ defineConfig }} from \"drizzle-kit\";\nexport default defineConfig({{ dialect: \"postgresql\", \
             schema: \"./{}/schema.ts\", out: \"./{}/migrations\" }});\n",
            relative(dir).display(),
            relative(dir).display()
        ),
    )
    .unwrap();
    config
}

/// The policies of `public.notes` as the catalog has them.
fn policies(fx: &Fixture, db: &str) -> Vec<(String, String, bool, Vec<String>, String, String)> {
    fx.admin(db)
        .query(
            "SELECT policyname::text, cmd, permissive = 'PERMISSIVE', roles::text[], qual, with_check \
             FROM pg_policies WHERE schemaname = 'public' AND tablename = 'notes' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

#[test]
fn a_policy_to_the_runtime_role_is_the_hand_written_one_and_the_migrator_applies_it() {
    let Some(kit) = drizzle_kit() else { return };
    let dir = scratch();
    let config = fixture(dir.path(), true);
    let output = generate(&kit, &relative(&config));
    assert!(output.status.success(), "{}", output_text(&output));
    let generated = sql_files(&dir.path().join("migrations")).join("\n");
    assert!(!generated.contains("ROLE"), "no role statement: {generated}");
    assert!(
        generated.contains("CREATE POLICY \"tenant_isolation\" ON \"notes\" AS PERMISSIVE FOR ALL TO \"app_user\""),
        "{generated}"
    );

    // The generated folder, applied by the runner as the migrator, and the
    // same table with the hand-written policy: the catalog has one policy.
    let fx = Fixture::provisioned("generated");
    fx.provision("hand_written");
    let folder = drizzle::folder::read(&dir.path().join("migrations")).unwrap();
    drizzle::migrate_builtin(&fx.config("generated"), &folder, false, &mut drizzle::Silent).unwrap();
    let mut by_hand = TestFolder::new();
    by_hand.add(
        "0000_notes",
        1,
        b"CREATE TABLE \"notes\" (\"id\" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL, \
          \"owner_user_id\" uuid NOT NULL, \"body\" text NOT NULL);\n--> statement-breakpoint\n\
          ALTER TABLE \"notes\" ENABLE ROW LEVEL SECURITY;\n--> statement-breakpoint\n\
          CREATE POLICY \"tenant_isolation\" ON \"notes\" TO \"app_user\"\n\
            USING (\"owner_user_id\" = nullif(current_setting('app.current_user_id', true), '')::uuid)\n\
            WITH CHECK (\"owner_user_id\" = nullif(current_setting('app.current_user_id', true), '')::uuid);\n",
    );
    by_hand.write_journal();
    drizzle::migrate_builtin(&fx.config("hand_written"), &by_hand.read(), false, &mut drizzle::Silent).unwrap();
    let generated_policies = policies(&fx, "generated");
    assert_eq!(generated_policies.len(), 1);
    assert_eq!(generated_policies[0].3, ["app_user"]);
    assert_eq!(generated_policies, policies(&fx, "hand_written"));
}

#[test]
fn without_existing_drizzle_kit_writes_create_role_and_the_guard_refuses_it() {
    let Some(kit) = drizzle_kit() else { return };
    let dir = scratch();
    let config = fixture(dir.path(), false);
    let output = generate(&kit, &relative(&config));
    assert!(output.status.success(), "{}", output_text(&output));
    let generated = sql_files(&dir.path().join("migrations")).join("\n");
    for role in ["app_migrator", "app_service", "app_user"] {
        assert!(generated.contains(&format!("CREATE ROLE \"{role}\"")), "{generated}");
    }
    // The guard refuses each before anything runs, naming the fix.
    let fx = Fixture::provisioned("app");
    let folder = drizzle::folder::read(&dir.path().join("migrations")).unwrap();
    let refusals = crate::common::refused(&fx.config("app"), &folder);
    let roles: Vec<String> = refusals
        .iter()
        .map(|r| match r {
            drizzle::Refusal::Guarded(finding) => {
                assert!(r.to_string().contains("pgRole(…).existing()"), "{r}");
                assert_eq!(finding.problem, drizzle::guard::Problem::RoleStatement { statement: "CREATE ROLE" });
                finding.statement.clone()
            }
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(roles, ["CREATE ROLE \"app_migrator\"", "CREATE ROLE \"app_service\"", "CREATE ROLE \"app_user\""]);
    assert!(fx.rows("app").is_empty(), "nothing was recorded");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `drizzle-kit pull` with the project's config (or `roles: true` written
/// over it) into a scratch folder: the schema it writes.
fn pull(kit: &Path, fx: &Fixture, db: &str, all_roles: bool) -> String {
    let dir = scratch();
    let config = if all_roles {
        let text = std::fs::read_to_string(repo_root().join("platform/db/drizzle.config.ts")).unwrap();
        let start = text.find("  entities: {").unwrap();
        let end = start + text[start..].find("\n  },\n").unwrap() + "\n  },\n".len();
        let path = dir.path().join("drizzle.config.ts");
        std::fs::write(&path, format!("{}  entities: {{ roles: true }},\n{}", &text[..start], &text[end..])).unwrap();
        relative(&path)
    } else {
        PathBuf::from("drizzle.config.ts")
    };
    let output = Command::new("node")
        .arg(kit)
        .arg("pull")
        .arg("--config")
        .arg(&config)
        .current_dir(repo_root().join("platform/db"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(dbenv::keys::DATABASE_MIGRATOR_URL, fx.config(db).dsn.expose_url())
        .env("DRIZZLE_MIGRATIONS_DIR", format!("./{}", relative(dir.path()).display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    std::fs::read_to_string(dir.path().join("schema.ts")).unwrap()
}

#[test]
fn pull_with_the_projects_config_leaves_the_roles_and_their_logins_alone() {
    let Some(kit) = drizzle_kit() else { return };
    let fx = Fixture::provisioned("app");
    let folder = drizzle::folder::read(&crate::common::app_migrations()).unwrap();
    drizzle::migrate_builtin(&fx.config("app"), &folder, false, &mut drizzle::Silent).unwrap();
    // A rotated role: its alternate login and gate exist too.
    fx.admin("app")
        .batch_execute("CREATE ROLE app_user_logins NOLOGIN NOINHERIT; CREATE ROLE app_user_alt LOGIN")
        .unwrap();
    let schema = pull(&kit, &fx, "app", false);
    assert!(schema.contains("pgTable(\"users\""), "the tables are pulled: {schema}");
    assert!(!schema.contains("pgRole("), "no role: {schema}");
    // Without the exclusions drizzle-kit takes the roles as its own.
    let schema = pull(&kit, &fx, "app", true);
    assert!(schema.contains("pgRole(\"app_user_alt\""), "{schema}");
}
