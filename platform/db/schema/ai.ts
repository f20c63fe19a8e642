// AI: invocation summaries (telemetry, no tenant column, exempt from RLS) and chat threads.
import { sql } from "drizzle-orm";
import { integer, jsonb, pgPolicy, pgTable, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { users } from "./identity";
import { currentUserId } from "./rls";

export const aiInvocationSummaries = pgTable("ai_invocation_summaries", {
  id: uuid("id").primaryKey().defaultRandom(),
  invocationId: text("invocation_id").notNull().unique(),
  requestId: text("request_id").notNull(),
  model: text("model"),
  tokensIn: integer("tokens_in"),
  tokensOut: integer("tokens_out"),
  status: text("status").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

// Chat threads, one per owner and state key.
export const aiThreads = pgTable("ai_threads", {
  ownerUserId: uuid("owner_user_id").notNull().references(() => users.id, { onDelete: "cascade" }),
  stateKey: text("state_key").notNull(),
  messages: jsonb("messages").notNull().default(sql`'[]'::jsonb`),
  metadata: jsonb("metadata"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  deletedAt: timestamp("deleted_at", { withTimezone: true }),
}, (t) => [
  primaryKey({ columns: [t.ownerUserId, t.stateKey] }),
  pgPolicy("tenant_isolation", {
    for: "all",
    using: sql`"owner_user_id" = ${currentUserId}`,
    withCheck: sql`"owner_user_id" = ${currentUserId}`,
  }),
]);
