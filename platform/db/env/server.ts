// The server environment of an app on the three roles, as a Zod schema,
// checked against the role-separation rules before the app serves:
//
//   import { loadServerEnv } from "./platform/db/env/server";
//   export const env = loadServerEnv(process.env);
//
// Errors name the variable, never a value.

import { z } from "zod";

import { assertRoleSeparation } from "./invariants";

/** An empty variable counts as unset, as the Rust tool reads it. */
const unsetIfEmpty = (value: unknown) => (value === "" ? undefined : value);

const dsn = () =>
  z
    .string({ error: "set it to postgresql://USER:PASSWORD@HOST:PORT/DB" })
    .min(1, { error: "empty: set it to postgresql://USER:PASSWORD@HOST:PORT/DB" });

export const serverEnvSchema = z.object({
  /** The runtime role (`app_user`): DML under row-level security. */
  DATABASE_URL: dsn(),
  /** The service role (`app_service`): workers, DML that bypasses row-level security. */
  DATABASE_SERVICE_URL: dsn(),
  /** The migrator (`app_migrator`): only where migrations run, never in a serving app. */
  DATABASE_MIGRATOR_URL: z.preprocess(unsetIfEmpty, dsn().optional()),
  /** The role names, when the environment spells them out. */
  APP_DB_USER: z.preprocess(unsetIfEmpty, z.string().optional()),
  APP_DB_SERVICE_USER: z.preprocess(unsetIfEmpty, z.string().optional()),
  APP_DB_MIGRATOR_USER: z.preprocess(unsetIfEmpty, z.string().optional()),
});

export type ServerEnv = z.infer<typeof serverEnvSchema>;

/** Reads and checks the server environment; throws an `Error` naming each problem's variable. */
export function loadServerEnv(env: Record<string, string | undefined>): ServerEnv {
  const parsed = serverEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  - ${issue.path.join(".")}: ${issue.message}`);
    throw new Error(`the server environment is incomplete:\n${problems.join("\n")}`);
  }
  assertRoleSeparation(env);
  return parsed.data;
}
