//! Swapping places with the real drizzle-kit, in both directions, and the
//! same decoding, splitting and hashing on edge cases.

use crate::common::{app_migrations, drizzle_kit, output_text, run_drizzle_kit, Fixture, TestFolder};

#[test]
fn drizzle_kit_finds_nothing_to_do_after_this_runner() {
    let Some(kit) = drizzle_kit() else { return };
    let fx = Fixture::provisioned("ours_first");
    let folder = drizzle::folder::read(&app_migrations()).unwrap();
    drizzle::migrate_builtin(&fx.config("ours_first"), &folder, false, &mut drizzle::Silent).unwrap();
    let rows = fx.rows("ours_first");
    assert_eq!(rows.len(), 9);
    let output = run_drizzle_kit(&kit, &fx.config("ours_first").dsn, &app_migrations());
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(fx.rows("ours_first"), rows, "drizzle-kit applied nothing");
}

#[test]
fn half_by_drizzle_kit_half_by_this_runner_and_back() {
    let Some(kit) = drizzle_kit() else { return };
    let fx = Fixture::provisioned("kit_first");
    fx.provision("ours_first");
    fx.provision("reference");
    let all = drizzle::folder::read(&app_migrations()).unwrap();

    // drizzle-kit applies 0000-0003, this runner the rest.
    let first_half = TestFolder::copy_of(&app_migrations(), Some(4));
    let output = run_drizzle_kit(&kit, &fx.config("kit_first").dsn, first_half.path());
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(fx.rows("kit_first").len(), 4);
    let outcome = drizzle::migrate_builtin(&fx.config("kit_first"), &all, false, &mut drizzle::Silent).unwrap();
    assert_eq!(outcome.applied.len(), 5);

    // This runner applies 0000-0003, drizzle-kit the rest.
    drizzle::migrate_builtin(&fx.config("ours_first"), &first_half.read(), false, &mut drizzle::Silent).unwrap();
    let output = run_drizzle_kit(&kit, &fx.config("ours_first").dsn, &app_migrations());
    assert!(output.status.success(), "{}", output_text(&output));

    // drizzle-kit alone, for reference: every database has the same rows.
    let output = run_drizzle_kit(&kit, &fx.config("reference").dsn, &app_migrations());
    assert!(output.status.success(), "{}", output_text(&output));
    let reference = fx.rows("reference");
    assert_eq!(reference.len(), 9);
    assert_eq!(fx.rows("kit_first"), reference);
    assert_eq!(fx.rows("ours_first"), reference);
}

/// The hash drizzle-orm computes: `createHash('sha256').update(readFileSync(f).toString())`.
fn node_hash(file: &std::path::Path) -> String {
    let output = std::process::Command::new("node")
        .arg("-e")
        .arg("process.stdout.write(require('crypto').createHash('sha256').update(require('fs').readFileSync(process.argv[1]).toString()).digest('hex'))")
        .arg(file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn edge_cases_decode_split_and_hash_as_drizzle_does() {
    let Some(kit) = drizzle_kit() else { return };
    let mut folder = TestFolder::new();
    folder
        .add("0000_crlf", 1000, b"CREATE TABLE crlf (id int);\r\n--> statement-breakpoint\r\nINSERT INTO crlf VALUES (1);\r\n")
        .add(
            "0002_empty_pieces",
            3000,
            b"--> statement-breakpoint\n--> statement-breakpoint\nCREATE TABLE empty_pieces (id int);--> statement-breakpoint",
        )
        .add("0003_several_per_piece", 4000, b"CREATE TABLE several (id int); INSERT INTO several VALUES (1); INSERT INTO several VALUES (2);");
    let read = folder.read();
    for migration in &read.migrations {
        assert_eq!(
            migration.hash,
            node_hash(&folder.path().join(format!("{}.sql", migration.tag))),
            "{}",
            migration.tag
        );
    }

    let fx = Fixture::provisioned("ours");
    fx.provision("theirs");
    drizzle::migrate_builtin(&fx.config("ours"), &read, false, &mut drizzle::Silent).unwrap();
    let output = run_drizzle_kit(&kit, &fx.config("theirs").dsn, folder.path());
    assert!(output.status.success(), "{}", output_text(&output));
    let ours = fx.rows("ours");
    assert_eq!(ours.len(), 3);
    assert_eq!(ours, fx.rows("theirs"), "same rows: same decoding and hashing");
    for db in ["ours", "theirs"] {
        let data: Vec<i64> = fx
            .admin(db)
            .query_one("SELECT ARRAY[(SELECT count(*) FROM crlf), (SELECT count(*) FROM several)]", &[])
            .unwrap()
            .get(0);
        assert_eq!(data, [1, 2], "{db}");
    }
    // Nothing left for either engine.
    let again = run_drizzle_kit(&kit, &fx.config("ours").dsn, folder.path());
    assert!(again.status.success());
    assert_eq!(fx.rows("ours"), ours);
}

#[test]
fn invalid_utf8_is_refused_where_drizzle_kit_applies_altered_sql() {
    let Some(kit) = drizzle_kit() else { return };
    let mut folder = TestFolder::new();
    folder.add("0000_latin1", 1000, b"CREATE TABLE latin1 (note text DEFAULT 'caf\xe9 \xf0\x9f\x98 \xc3');");
    let read = folder.read();
    assert!(read.migrations[0].lossy);
    assert_eq!(read.migrations[0].hash, node_hash(&folder.path().join("0000_latin1.sql")));
    let fx = Fixture::provisioned("ours");
    let refusals = crate::common::refused(&fx.config("ours"), &read);
    assert_eq!(refusals, [drizzle::Refusal::NotUtf8 { tag: "0000_latin1".into() }]);
    assert!(fx.rows("ours").is_empty());
    // drizzle-kit applies it, each invalid sequence replaced by one U+FFFD;
    // this runner then counts it as applied (same hash) and has nothing to do.
    let output = run_drizzle_kit(&kit, &fx.config("ours").dsn, folder.path());
    assert!(output.status.success(), "{}", output_text(&output));
    let default: String = fx
        .admin("ours")
        .query_one("SELECT column_default FROM information_schema.columns WHERE table_name = 'latin1'", &[])
        .unwrap()
        .get(0);
    assert_eq!(default, "'caf\u{FFFD} \u{FFFD} \u{FFFD}'::text");
    let outcome = drizzle::migrate_builtin(&fx.config("ours"), &read, false, &mut drizzle::Silent).unwrap();
    assert!(outcome.applied.is_empty());
}

#[test]
fn a_byte_order_mark_is_refused_where_drizzle_kit_fails_silently() {
    let Some(kit) = drizzle_kit() else { return };
    let mut folder = TestFolder::new();
    folder.add("0000_bom", 1000, b"\xEF\xBB\xBFCREATE TABLE bom (id int);");
    let read = folder.read();
    assert!(read.migrations[0].text.starts_with('\u{FEFF}'));
    assert_eq!(read.migrations[0].hash, node_hash(&folder.path().join("0000_bom.sql")));
    let fx = Fixture::provisioned("ours");
    fx.provision("theirs");
    let refusals = crate::common::refused(&fx.config("ours"), &read);
    assert_eq!(refusals, [drizzle::Refusal::ByteOrderMark { tag: "0000_bom".into() }]);
    let output = run_drizzle_kit(&kit, &fx.config("theirs").dsn, folder.path());
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    assert!(fx.rows("ours").is_empty() && fx.rows("theirs").is_empty());
}
