// drizzle-kit configuration. Migrations run only as the migrator role:
// the URL comes from DATABASE_MIGRATOR_URL and nowhere else (no fallback to
// DATABASE_URL, the runtime role's DSN, which must never own the schema).
import { defineConfig } from "drizzle-kit";

// `generate` and `check` only read files; every other command talks to the database.
const offline = process.argv.some((arg) => arg === "generate" || arg === "check");
const url = process.env.DATABASE_MIGRATOR_URL;
if (!url && !offline) {
  throw new Error(
    "DATABASE_MIGRATOR_URL is not set. Migrations run only as the migrator role (app_migrator), never with " +
      "DATABASE_URL. Run `cargo xtask env` to add it to .env.local, or use `cargo xtask db-migrate`.",
  );
}

export default defineConfig({
  dialect: "postgresql",
  schema: "./schema/index.ts",
  out: process.env.DRIZZLE_MIGRATIONS_DIR ?? "./migrations",
  dbCredentials: { url: url ?? "postgresql://offline.invalid/unused" },
  // The roles are the tool's (db-provision, db-rotate): push and pull must leave them, their
  // alternate logins and their gates alone. schema/roles.ts declares the three `.existing()`.
  entities: {
    roles: {
      exclude: ["app_migrator", "app_user", "app_service"].flatMap((role) => [role, `${role}_alt`, `${role}_logins`]),
    },
  },
  migrations: {
    schema: process.env.DRIZZLE_MIGRATIONS_SCHEMA ?? "drizzle",
    table: process.env.DRIZZLE_MIGRATIONS_TABLE ?? "__drizzle_migrations",
  },
});
