// Scheduled graph runs and the grants they execute under.
import { integer, jsonb, pgTable, text, timestamp, uuid, boolean, index } from "drizzle-orm/pg-core";
import { users } from "./identity";
import { billingAccounts } from "./billing";

export const executionGrants = pgTable("execution_grants", {
  id: uuid("id").primaryKey().defaultRandom(),
  userId: uuid("user_id").notNull().references(() => users.id, { onDelete: "cascade" }),
  billingAccountId: uuid("billing_account_id").notNull().references(() => billingAccounts.id, { onDelete: "cascade" }),
  scopes: text("scopes").array().notNull(),
  expiresAt: timestamp("expires_at", { withTimezone: true }),
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("execution_grants_user_idx").on(t.userId)]);

export const schedules = pgTable("schedules", {
  id: uuid("id").primaryKey().defaultRandom(),
  ownerUserId: uuid("owner_user_id").notNull().references(() => users.id, { onDelete: "cascade" }),
  executionGrantId: uuid("execution_grant_id").notNull().references(() => executionGrants.id, { onDelete: "restrict" }),
  graphId: text("graph_id").notNull(),
  input: jsonb("input").notNull(),
  cron: text("cron").notNull(),
  timezone: text("timezone").notNull(),
  enabled: boolean("enabled").notNull().default(true),
  nextRunAt: timestamp("next_run_at", { withTimezone: true }),
  lastRunAt: timestamp("last_run_at", { withTimezone: true }),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("schedules_owner_idx").on(t.ownerUserId), index("schedules_next_run_idx").on(t.nextRunAt)]);

export const scheduleRuns = pgTable("schedule_runs", {
  id: uuid("id").primaryKey().defaultRandom(),
  scheduleId: uuid("schedule_id").notNull().references(() => schedules.id, { onDelete: "cascade" }),
  runId: text("run_id").notNull(),
  scheduledFor: timestamp("scheduled_for", { withTimezone: true }).notNull(),
  startedAt: timestamp("started_at", { withTimezone: true }),
  completedAt: timestamp("completed_at", { withTimezone: true }),
  status: text("status").notNull().default("pending"),
  attemptCount: integer("attempt_count").notNull().default(0),
  errorMessage: text("error_message"),
}, (t) => [index("schedule_runs_schedule_idx").on(t.scheduleId)]);
