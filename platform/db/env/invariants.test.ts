// The shared cases (invariants.cases.json), which the Rust tool's tests
// read too: the same verdict and the same rules here. Run with
// `node --import tsx --test env/invariants.test.ts` from platform/db
// (`cargo xtask check` does).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { assertRoleSeparation, checkRoleSeparation } from "./invariants";
import { loadServerEnv } from "./server";

interface Case {
  name: string;
  env: Record<string, string>;
  verdict: "pass" | "fail";
  rules: string[];
}

const { cases } = JSON.parse(readFileSync(new URL("./invariants.cases.json", import.meta.url), "utf8")) as {
  cases: Case[];
};

/** Every value of the environment that could be a secret or a name. */
function values(env: Record<string, string>): string[] {
  return Object.values(env).flatMap((text) => {
    const found = [text];
    const userinfo = /^[a-z]+:\/\/([^@/?]*)@/u.exec(text)?.[1];
    for (const piece of (userinfo ?? "").split(":")) {
      if (piece.length >= 4) {
        found.push(piece);
      }
    }
    return found.filter((v) => v.length >= 4);
  });
}

for (const c of cases) {
  test(c.name, () => {
    assert.deepEqual(
      checkRoleSeparation(c.env).map((v) => v.rule),
      c.rules,
    );
    if (c.verdict === "pass") {
      assertRoleSeparation(c.env);
      return;
    }
    assert.throws(
      () => assertRoleSeparation(c.env),
      (error: Error) => {
        for (const rule of new Set(checkRoleSeparation(c.env).filter((v) => v.severity === "error").map((v) => v.rule))) {
          assert.ok(error.message.includes(`[${rule}]`), `${rule} in ${error.message}`);
        }
        for (const value of values(c.env)) {
          assert.ok(!error.message.includes(value), `no value in ${error.message}`);
        }
        return true;
      },
    );
  });
}

test("cases cover every rule, both verdicts and both severities", () => {
  const rules = new Set(cases.flatMap((c) => c.rules));
  for (const rule of [
    "dsn-present",
    "dsn-user",
    "dsn-parse",
    "no-admin-user",
    "distinct-users",
    "migrator-separate",
    "tls-off-host",
    "migrator-absent-at-runtime",
  ]) {
    assert.ok(rules.has(rule), rule);
  }
  assert.ok(cases.some((c) => c.verdict === "pass" && c.rules.length > 0), "a warning alone passes");
});

test("the server schema names a missing variable and checks the roles", () => {
  assert.throws(() => loadServerEnv({ DATABASE_URL: "postgresql://app_user:pw@localhost/db" }), /DATABASE_SERVICE_URL/u);
  const shared = "postgresql://app_user:s3cret-pw@localhost/db";
  assert.throws(
    () => loadServerEnv({ DATABASE_URL: shared, DATABASE_SERVICE_URL: shared }),
    (error: Error) => error.message.includes("[distinct-users]") && !error.message.includes("s3cret-pw"),
  );
  const env = loadServerEnv({
    DATABASE_URL: "postgresql://app_user:pw@localhost/db",
    DATABASE_SERVICE_URL: "postgresql://app_service:pw@localhost/db",
    UNRELATED: "kept out",
  });
  assert.deepEqual(Object.keys(env).sort(), ["DATABASE_SERVICE_URL", "DATABASE_URL"]);
  // Empty values are unset, as the rules and the Rust tool read them.
  loadServerEnv({
    DATABASE_URL: "postgresql://app_user:pw@localhost/db",
    DATABASE_SERVICE_URL: "postgresql://app_service:pw@localhost/db",
    DATABASE_MIGRATOR_URL: "",
    APP_DB_USER: "",
  });
});
