// Idempotency records of graph execution requests (no tenant column, exempt from RLS).
import { boolean, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const executionRequests = pgTable("execution_requests", {
  idempotencyKey: text("idempotency_key").primaryKey(),
  requestHash: text("request_hash").notNull(),
  runId: text("run_id").notNull(),
  traceId: text("trace_id"),
  // Nullable since 0003: a request still running has no outcome yet.
  ok: boolean("ok"),
  errorCode: text("error_code"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
