// Billing: accounts, virtual keys, the credit ledger, charges and payments.
import { sql } from "drizzle-orm";
import { bigint, bigserial, boolean, integer, jsonb, numeric, pgPolicy, pgTable, text, timestamp, uuid, index, uniqueIndex } from "drizzle-orm/pg-core";
import { currentUserId } from "./rls";
import { users } from "./identity";

export const billingAccounts = pgTable("billing_accounts", {
  id: uuid("id").primaryKey().defaultRandom(),
  ownerUserId: uuid("owner_user_id").notNull().references(() => users.id, { onDelete: "cascade" }),
  balanceCredits: bigint("balance_credits", { mode: "number" }).notNull().default(0),
  // Since 0007: the one system tenant, found by its slug.
  isSystemTenant: boolean("is_system_tenant").notNull().default(false),
  slug: text("slug").unique(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  index("billing_accounts_owner_idx").on(t.ownerUserId),
  uniqueIndex("billing_accounts_one_system_tenant").on(t.isSystemTenant).where(sql`"is_system_tenant"`),
]);

export const virtualKeys = pgTable("virtual_keys", {
  id: uuid("id").primaryKey().defaultRandom(),
  billingAccountId: uuid("billing_account_id").notNull().references(() => billingAccounts.id, { onDelete: "cascade" }),
  label: text("label"),
  isDefault: boolean("is_default").notNull().default(false),
  active: boolean("active").notNull().default(true),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("virtual_keys_billing_account_idx").on(t.billingAccountId)]);

export const creditLedger = pgTable("credit_ledger", {
  id: uuid("id").primaryKey().defaultRandom(),
  billingAccountId: uuid("billing_account_id").notNull().references(() => billingAccounts.id, { onDelete: "cascade" }),
  virtualKeyId: uuid("virtual_key_id").references(() => virtualKeys.id, { onDelete: "set null" }),
  amount: bigint("amount", { mode: "number" }).notNull(),
  balanceAfter: bigint("balance_after", { mode: "number" }).notNull(),
  reason: text("reason").notNull(),
  reference: text("reference"),
  metadata: jsonb("metadata"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("credit_ledger_billing_account_idx").on(t.billingAccountId)]);

export const chargeReceipts = pgTable("charge_receipts", {
  id: uuid("id").primaryKey().defaultRandom(),
  billingAccountId: uuid("billing_account_id").notNull().references(() => billingAccounts.id, { onDelete: "cascade" }),
  virtualKeyId: uuid("virtual_key_id").references(() => virtualKeys.id, { onDelete: "set null" }),
  requestId: text("request_id").notNull().unique(),
  chargedCredits: bigint("charged_credits", { mode: "number" }).notNull(),
  responseCostUsd: numeric("response_cost_usd", { precision: 12, scale: 6 }),
  provenance: text("provenance").notNull(),
  receiptKind: text("receipt_kind").notNull().default("llm"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("charge_receipts_billing_account_idx").on(t.billingAccountId)]);

export const paymentAttempts = pgTable("payment_attempts", {
  id: uuid("id").primaryKey().defaultRandom(),
  billingAccountId: uuid("billing_account_id").notNull().references(() => billingAccounts.id, { onDelete: "cascade" }),
  fromAddress: text("from_address").notNull(),
  chainId: integer("chain_id").notNull(),
  amountRaw: numeric("amount_raw", { precision: 78, scale: 0 }).notNull(),
  txHash: text("tx_hash").unique(),
  status: text("status").notNull().default("created"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

export const paymentEvents = pgTable("payment_events", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  attemptId: uuid("attempt_id").notNull().references(() => paymentAttempts.id, { onDelete: "cascade" }),
  eventType: text("event_type").notNull(),
  payload: jsonb("payload"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("payment_events_attempt_idx").on(t.attemptId)]);

// Per-call detail of LLM charges, one row per charge receipt.
export const llmChargeDetails = pgTable("llm_charge_details", {
  chargeReceiptId: uuid("charge_receipt_id").primaryKey().references(() => chargeReceipts.id, { onDelete: "cascade" }),
  providerCallId: text("provider_call_id"),
  model: text("model").notNull(),
  provider: text("provider"),
  tokensIn: integer("tokens_in"),
  tokensOut: integer("tokens_out"),
  latencyMs: integer("latency_ms"),
  graphId: text("graph_id"),
}, () => [
  pgPolicy("tenant_isolation", {
    for: "all",
    using: sql`"charge_receipt_id" IN (SELECT "id" FROM "charge_receipts" WHERE "billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = ${currentUserId}))`,
    withCheck: sql`"charge_receipt_id" IN (SELECT "id" FROM "charge_receipts" WHERE "billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = ${currentUserId}))`,
  }),
]);
