// The app's start-up check of its database environment: the same rules as
// the Rust tool's runtime context (crates/dbenv/src/invariants.rs), read
// from the same cases (invariants.cases.json), so the two cannot drift.
//
//   import { assertRoleSeparation } from "./platform/db/env/invariants";
//   assertRoleSeparation(process.env);
//
// Messages name the rule and the variable, never a value.

import { DsnError, isLocal, parseDsn, type Dsn } from "./dsn";

export type Rule =
  | "dsn-present"
  | "dsn-user"
  | "dsn-parse"
  | "no-admin-user"
  | "distinct-users"
  | "migrator-separate"
  | "tls-off-host"
  | "migrator-absent-at-runtime";

export interface Violation {
  rule: Rule;
  severity: "error" | "warning";
  message: string;
}

type Env = Record<string, string | undefined>;

/** User names that mean an administrative role. */
export const ADMIN_NAMES = ["postgres", "root", "superuser", "admin"];

/** The suffix of a role's alternate login (`cargo xtask db-rotate`). */
const ALT_LOGIN_SUFFIX = "_alt";

const ROLES = [
  { variable: "DATABASE_URL", userVariable: "APP_DB_USER", role: "runtime", required: true },
  { variable: "DATABASE_SERVICE_URL", userVariable: "APP_DB_SERVICE_USER", role: "service", required: true },
  { variable: "DATABASE_MIGRATOR_URL", userVariable: "APP_DB_MIGRATOR_USER", role: "migrator", required: false },
] as const;

type Role = (typeof ROLES)[number];

/** Two users stand for one role: the same name, or a role and its alternate login. */
function sameRole(a: string, b: string): boolean {
  return a === b || a === b + ALT_LOGIN_SUFFIX || b === a + ALT_LOGIN_SUFFIX;
}

/** A variable counts when it is set and not empty (as in the Rust tool). */
function get(env: Env, key: string): string | undefined {
  const value = env[key];
  return value === undefined || value === "" ? undefined : value;
}

/** Every rule over a service's environment: the errors and the warnings. */
export function checkRoleSeparation(env: Env): Violation[] {
  const found: Violation[] = [];
  const error = (rule: Rule, message: string) => found.push({ rule, severity: "error", message });
  const dsns: [Role, Dsn][] = [];
  for (const role of ROLES) {
    const text = get(env, role.variable);
    if (text === undefined) {
      if (role.required) {
        error("dsn-present", `${role.variable} is missing or empty: the app needs it to connect as the ${role.role} role`);
      }
      continue;
    }
    try {
      const dsn = parseDsn(role.variable, text);
      if (dsn.user === undefined) {
        error("dsn-user", `${role.variable} names no user; write it as postgresql://USER:PASSWORD@HOST:PORT/DB`);
      } else {
        dsns.push([role, dsn]);
      }
    } catch (e) {
      if (!(e instanceof DsnError)) {
        throw e;
      }
      error("dsn-parse", e.message);
    }
  }
  for (const [role, dsn] of dsns) {
    // ASCII case only, as the Rust tool compares.
    if (ADMIN_NAMES.includes((dsn.user ?? "").replace(/[A-Z]/gu, (c) => c.toLowerCase()))) {
      error(
        "no-admin-user",
        `${role.variable} logs in as an administrative name: the ${role.role} role must be its own least-privileged role`,
      );
    }
  }
  const user = (variable: string) => dsns.find(([role]) => role.variable === variable)?.[1].user;
  const runtime = user("DATABASE_URL");
  const service = user("DATABASE_SERVICE_URL");
  if (runtime !== undefined && service !== undefined && sameRole(runtime, service)) {
    error(
      "distinct-users",
      "DATABASE_URL and DATABASE_SERVICE_URL log in as one role: the runtime role must not bypass RLS, so they must differ",
    );
  }
  const migrator = user("DATABASE_MIGRATOR_URL");
  if (migrator !== undefined) {
    for (const role of ROLES.slice(0, 2)) {
      const fromDsn = user(role.variable);
      const [variable, name] =
        fromDsn !== undefined ? [role.variable, fromDsn] : [role.userVariable, get(env, role.userVariable)];
      if (name !== undefined && sameRole(name, migrator)) {
        error(
          "migrator-separate",
          `${variable} names the migrator (DATABASE_MIGRATOR_URL): the ${role.role} role must not own the schema; ` +
            `point ${variable} at the ${role.role} role`,
        );
      }
    }
  }
  for (const [role, dsn] of dsns) {
    if (isLocal(dsn.host) || ["require", "verify-ca", "verify-full"].includes(dsn.sslmode ?? "")) {
      continue;
    }
    found.push(
      dsn.sslmode === "disable"
        ? {
            rule: "tls-off-host",
            severity: "warning",
            message: `${role.variable} connects to another machine without TLS (sslmode=disable): acceptable only on a private network`,
          }
        : {
            rule: "tls-off-host",
            severity: "error",
            message:
              `${role.variable} connects to another machine without verified TLS: add ` +
              "`sslmode=verify-full&sslrootcert=…` (or `sslmode=require`), or `sslmode=disable` to say the network is private",
          },
    );
  }
  if (get(env, "DATABASE_MIGRATOR_URL") !== undefined) {
    found.push({
      rule: "migrator-absent-at-runtime",
      severity: "warning",
      message: "DATABASE_MIGRATOR_URL is set in a runtime environment: the app never needs it; remove it",
    });
  }
  return found;
}

/**
 * Throws an `Error` naming every broken rule and its variable (never a
 * value) when the environment is unsafe to serve with; returns otherwise.
 * Warnings do not throw: read them with {@link checkRoleSeparation}.
 */
export function assertRoleSeparation(env: Record<string, string | undefined>): void {
  const errors = checkRoleSeparation(env).filter((v) => v.severity === "error");
  if (errors.length > 0) {
    throw new Error(
      `the database environment is unsafe to serve with:\n${errors.map((v) => `  - [${v.rule}] ${v.message}`).join("\n")}`,
    );
  }
}
