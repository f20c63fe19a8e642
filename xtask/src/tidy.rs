//! Tidy checks: project-wide rules kept as ordinary tests (rust-analyzer's
//! `xtask/src/tidy.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use dbenv::keys;

use crate::{flags, project_root};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != "node_modules" && !name.to_string_lossy().starts_with('.') {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let root = project_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    assert!(files.len() > 10);
    let missing: Vec<String> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` first line: {missing:?}");
}

#[test]
fn the_readme_shows_every_command() {
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    for command in flags::Xtask::command().get_subcommands() {
        let name = command.get_name();
        assert!(readme.contains(&format!("cargo xtask {name}")), "README.md does not show `cargo xtask {name}`");
    }
    assert!(readme.contains("cargo xtask db-setup") && readme.contains("cargo xtask check"));
}

#[test]
fn the_readme_role_table_says_what_the_code_does() {
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    for kind in dbenv::RoleKind::ALL {
        let row = format!("| `{}` | {} |", kind.default_name(), roles::model::attributes_prose(kind));
        assert!(readme.contains(&row), "README.md's role table should read `{row}` (roles::model::Attribute)");
    }
}

#[test]
fn the_env_examples_are_valid_and_agree() {
    let root = project_root();
    for example in [".env.local.example", ".env.test.example"] {
        let vars = dbenv::EnvVars::load(&root.join(example), true, &dbenv::ProcessEnv::none()).unwrap();
        let settings = dbenv::Settings::from_env(&vars).unwrap();
        assert!(settings.migrator.dsn_given, "{example} has DATABASE_MIGRATOR_URL");
        assert_eq!(settings.port, 55432);
    }
    let local = dbenv::read_env_file(&root.join(".env.local.example")).unwrap();
    let test = dbenv::read_env_file(&root.join(".env.test.example")).unwrap();
    for key in [
        keys::APP_DB_PASSWORD,
        keys::APP_DB_SERVICE_PASSWORD,
        keys::APP_DB_MIGRATOR_PASSWORD,
        keys::POSTGRES_ROOT_PASSWORD,
    ] {
        assert_eq!(local[key], test[key], "{key} must agree between the examples");
    }
    assert_eq!(local[keys::APP_DB_NAME], "cogni_template_dev");
    assert_eq!(test[keys::APP_DB_NAME], "cogni_template_stack_test");
}

#[test]
fn the_container_entry_point_runs_the_rust_code_and_holds_no_sql() {
    use std::os::unix::fs::PermissionsExt;
    let path = project_root().join("platform/infra/services/runtime/postgres-init/provision.sh");
    let script = std::fs::read_to_string(&path).unwrap();
    assert!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o111 != 0, "provision.sh is executable");
    let code: Vec<&str> = script.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(code, ["set -eu", "exec xtask db-provision \"$@\""]);
    let upper = script.to_uppercase();
    for sql in ["CREATE ROLE", "GRANT ", "ALTER ", "PSQL"] {
        assert!(!upper.contains(sql), "provision.sh must not carry SQL ({sql})");
    }
}

/// The environment block of one compose service: `KEY` names under
/// `environment:` (a plain text reading, enough for this file's layout).
fn service_environment(compose: &str, service: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let (mut in_service, mut in_env) = (false, false);
    for line in compose.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent == 2 {
            in_service = trimmed == format!("{service}:");
            in_env = false;
        } else if in_service && indent == 4 {
            in_env = trimmed == "environment:";
        } else if in_service && in_env && indent == 6 {
            keys.push(trimmed.split(':').next().unwrap().to_string());
        }
    }
    keys
}

#[test]
fn the_compose_file_gives_db_migrate_only_the_migrator_credentials() {
    let root = project_root();
    let file = root.join("platform/infra/services/runtime/docker-compose.dev.yml");
    let compose = std::fs::read_to_string(&file).unwrap();
    // The migrator's password is its only secret, in a variable of its own
    // (the URL holds none, so no character needs percent-encoding); the
    // role names (not credentials) let it grant what migrations create in
    // new schemas.
    let migrate = service_environment(&compose, "db-migrate");
    assert_eq!(migrate, crate::containers::MIGRATE_ENVIRONMENT);
    assert!(
        !migrate
            .iter()
            .any(|k| (k.contains("PASSWORD") && k != keys::APP_DB_MIGRATOR_PASSWORD) || k.starts_with("POSTGRES_")),
        "{migrate:?}"
    );
    let url = compose.lines().find(|l| l.trim_start().starts_with("DATABASE_MIGRATOR_URL:")).unwrap();
    assert!(!url.contains("PASSWORD"), "the URL must not carry the password: {url}");
    let provision = service_environment(&compose, "db-provision");
    assert!(provision.contains(&keys::APP_DB_MIGRATOR_PASSWORD.to_string()));
    assert!(!provision.iter().any(|k| k.starts_with("DATABASE_")), "{provision:?}");
    assert!(compose.contains("\"127.0.0.1:${DB_PORT:-55432}:5432\""));

    // docker-compose 1.29 validates the file (no engine needed).
    let available = Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("XTASK_REQUIRE_TOOLS").is_none(),
            "docker-compose is required (`.ci/run` installs it)"
        );
        eprintln!("SKIPPED: docker-compose is not installed; the compose file was only read as text");
        return;
    }
    let output = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("--env-file")
        .arg(root.join(".env.local.example"))
        .args(["--profile", "bootstrap", "config", "--services"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut services: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(String::from).collect();
    services.sort();
    assert_eq!(services, ["db-migrate", "db-provision", "postgres"]);
}

#[test]
fn the_command_line_is_well_formed() {
    flags::Xtask::command().debug_assert();
}

#[test]
fn the_image_build_context_leaves_out_build_output_packages_and_env_files() {
    let ignore = std::fs::read_to_string(project_root().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for pattern in ["**/target", "**/node_modules", "**/.env", "**/.env.*", "**/*.env", ".git"] {
        assert!(lines.contains(&pattern), "`.dockerignore` must list `{pattern}`: {lines:?}");
    }
    // Only the examples (which hold no credential) come back in.
    let negations: Vec<&&str> = lines.iter().filter(|l| l.starts_with('!')).collect();
    assert_eq!(negations, [&"!**/.env*.example"]);
}

type Graph = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// The names a path names after `crate::` (or a top-level file's
/// `super::`) at the start of `rest`: one name, or each first segment of a
/// braced group, nested groups and line breaks included.
fn named_after(rest: &str) -> Vec<String> {
    let Some(group) = rest.strip_prefix('{') else {
        return vec![rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()];
    };
    let (mut depth, mut names, mut current, mut at_start) = (0, Vec::new(), String::new(), true);
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut current));
                at_start = true;
            }
            ':' if depth == 0 => at_start = false,
            c if depth == 0 && at_start && (c.is_alphanumeric() || c == '_') => current.push(c),
            _ => {}
        }
    }
    names.push(current);
    names.into_iter().filter(|n| !n.is_empty()).collect()
}

/// The top-level modules of one crate's `src` and the modules each names
/// through `crate::` (or `super::` from a top-level file), a name the crate
/// root re-exports counting as the module it comes from (comments and the
/// `tests` module aside).
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |path: &Path| {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        first.trim_end_matches(".rs").to_string()
    };
    let code_of = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap().to_string();
        code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
    };
    let modules: std::collections::BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    // `pub use module::{A, B}` at the root: `crate::A` is `module`.
    let mut reexported = std::collections::BTreeMap::new();
    for root in ["lib.rs", "main.rs"].map(|f| src.join(f)).iter().filter(|f| f.exists()) {
        let code = code_of(root);
        for part in code.split("pub use ").skip(1) {
            let module: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let rest = part[module.len()..].trim_start_matches("::");
            if modules.contains(&module) {
                for name in named_after(rest) {
                    reexported.insert(name, module.clone());
                }
            }
        }
    }
    let mut graph: Graph = modules.iter().map(|m| (m.clone(), Default::default())).collect();
    for file in &files {
        let from = module_of(file);
        let top_level = file.parent() == Some(src);
        let code = code_of(file);
        let mut prefixes = vec!["crate::"];
        if top_level {
            prefixes.push("super::");
        }
        for prefix in prefixes {
            for (at, _) in code.match_indices(prefix) {
                for name in named_after(&code[at + prefix.len()..]) {
                    let module = reexported.get(&name).cloned().unwrap_or(name);
                    if module != from && modules.contains(&module) {
                        graph.get_mut(&from).unwrap().insert(module);
                    }
                }
            }
        }
    }
    graph
}

/// The modules of `graph` that reach themselves through others.
fn circles(graph: &Graph) -> Vec<String> {
    graph
        .keys()
        .filter(|start| {
            let mut seen = std::collections::BTreeSet::new();
            let mut stack: Vec<&String> = graph[*start].iter().collect();
            while let Some(next) = stack.pop() {
                if seen.insert(next.clone()) {
                    stack.extend(graph[next].iter());
                }
            }
            seen.contains(*start)
        })
        .cloned()
        .collect()
}

#[test]
fn no_module_circles_and_no_crate_climbs() {
    let root = project_root();
    let mut sources = vec![("xtask".to_string(), root.join("xtask/src"))];
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        sources.push((entry.file_name().to_string_lossy().into_owned(), entry.path().join("src")));
    }
    let mut found = Vec::new();
    for (krate, src) in &sources {
        let graph = module_graph(src);
        assert!(!graph.is_empty(), "{krate}: no modules read");
        found.extend(circles(&graph).into_iter().map(|m| format!("{krate}::{m}")));
    }
    assert!(found.is_empty(), "modules that import themselves back through others: {found:?}");

    // The crates in layers: each depends only on crates below it.
    let layers = ["pgcluster", "dbenv", "roles", "drizzle", "audit", "xtask"];
    for (at, krate) in layers.iter().enumerate() {
        let manifest = if *krate == "xtask" {
            root.join("xtask/Cargo.toml")
        } else {
            root.join(format!("crates/{krate}/Cargo.toml"))
        };
        let text = std::fs::read_to_string(manifest).unwrap();
        let dependencies = text.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap();
        for line in dependencies.lines() {
            let name = line.split(['.', ' ', '=']).next().unwrap();
            if let Some(layer) = layers.iter().position(|l| *l == name) {
                assert!(layer < at, "{krate} depends on {name}, a crate above it");
            }
            assert_ne!(name, "testkit", "{krate} depends on the test kit, which is for tests only");
        }
    }
}

#[test]
fn the_module_graph_sees_a_circle() {
    let dir = std::env::temp_dir().join(format!("tidy-circle-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("lib.rs"), "//! root\nmod a;\nmod b;\npub use e::{Thing, other::Deep};\n").unwrap();
    std::fs::write(dir.join("a.rs"), "//! a\nuse crate::b::Thing;\n").unwrap();
    std::fs::write(dir.join("b/mod.rs"), "//! b\nuse crate::{\n    a,\n    c::{X, Y},\n};\n// crate::d in a comment\n")
        .unwrap();
    std::fs::write(dir.join("c.rs"), "//! c\nuse super::Thing;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n")
        .unwrap();
    std::fs::write(dir.join("d.rs"), "//! d\n").unwrap();
    std::fs::write(dir.join("e.rs"), "//! e\nfn f() -> crate::Deep {}\n").unwrap();
    let graph = module_graph(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(graph["a"].iter().collect::<Vec<_>>(), ["b"]);
    assert_eq!(graph["b"].iter().collect::<Vec<_>>(), ["a", "c"], "a braced group over several lines");
    assert_eq!(graph["c"].iter().collect::<Vec<_>>(), ["e"], "`super::` of a re-exported name");
    assert!(graph["d"].is_empty() && graph["e"].is_empty(), "{graph:?}");
    assert_eq!(circles(&graph), ["a", "b"]);
}

#[test]
fn the_contract_keys_are_named_once() {
    let root = project_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask/src"), &mut files);
    let mut spelled = Vec::new();
    for file in
        files.iter().filter(|f| !f.ends_with("dbenv/src/keys.rs") && !f.components().any(|c| c.as_os_str() == "tests"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for key in dbenv::keys::CONTRACT {
            if code.contains(&format!("\"{key}\"")) {
                spelled.push(format!("{}: \"{key}\"", file.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(spelled.is_empty(), "contract keys spelled as literals (use dbenv::keys): {spelled:?}");
}

/// The libraries get the environment as a value from the command line:
/// none reads the process's variables. The one exception is
/// `pgcluster::LocalEnv::from_process`, for test harnesses; the command
/// line never calls it, and hands every throwaway cluster its `LocalEnv`.
#[test]
fn nothing_below_the_command_line_reads_process_variables() {
    let root = project_root();
    let mut readers = Vec::new();
    for krate in ["pgcluster", "dbenv", "roles", "drizzle", "audit"] {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut code = text.split("#[cfg(test)]\nmod tests").next().unwrap().to_string();
            if file.ends_with("pgcluster/src/local.rs") {
                let allowed = "LocalEnv::from_vars(|key| std::env::var_os(key))";
                assert_eq!(code.matches(allowed).count(), 1, "LocalEnv::from_process changed: {}", file.display());
                code = code.replace(allowed, "");
            }
            // A call through the path, or an import that would hide it (`use std::env::var;`).
            let calls = [
                "env::var(",
                "env::var_os(",
                "env::vars(",
                "env::vars_os(",
                "env::temp_dir(",
                "env::home_dir(",
                "use std::env",
            ];
            if calls.iter().any(|call| code.contains(call)) {
                readers.push(file.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(readers.is_empty(), "libraries that read process variables: {readers:?}");

    let mut files = Vec::new();
    rust_files(&root.join("xtask/src"), &mut files);
    for file in files.iter().filter(|file| !file.ends_with("tidy.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("from_process"), "{}: the command line reads LocalEnv once, in Context", file.display());
        for options in text.split("ClusterOptions {").skip(1) {
            let fields = options.split('}').next().unwrap();
            assert!(
                fields.contains("local:"),
                "{}: a throwaway cluster without the context's LocalEnv",
                file.display()
            );
        }
    }
}

#[test]
fn the_readme_links_resolve_and_the_command_reference_covers_every_command() {
    let root = project_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut links = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap().split('#').next().unwrap();
        if target.starts_with("http") || target.is_empty() {
            continue;
        }
        links += 1;
        assert!(root.join(target).exists(), "README.md links to `{target}`, which does not exist");
    }
    assert!(links >= 8, "README.md links to the reference in docs/");
    let reference = std::fs::read_to_string(root.join("docs/commands.md")).unwrap();
    for command in flags::Xtask::command().get_subcommands() {
        let row = format!("| `{}` |", command.get_name());
        assert!(reference.contains(&row), "docs/commands.md has no row for `{}`", command.get_name());
    }
    assert!(readme.lines().count() <= 130, "README.md should fit on two screens; the reference lives in docs/");
}
