-- Custom migration: row-level security for every table that reaches "users".
-- The tenant is app.current_user_id, set per transaction; unset means no rows.
-- FORCE makes the policies apply to the table owner too (the owner was the
-- runtime role when this was written; with a BYPASSRLS migrator it is harmless).
ALTER TABLE "users" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "users" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "users"
  USING ("id" = nullif(current_setting('app.current_user_id', true), '')::uuid)
  WITH CHECK ("id" = nullif(current_setting('app.current_user_id', true), '')::uuid);
--> statement-breakpoint
ALTER TABLE "billing_accounts" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "billing_accounts" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "billing_accounts"
  USING ("owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid)
  WITH CHECK ("owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid);
--> statement-breakpoint
ALTER TABLE "execution_grants" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "execution_grants" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "execution_grants"
  USING ("user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid)
  WITH CHECK ("user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid);
--> statement-breakpoint
ALTER TABLE "schedules" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "schedules" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "schedules"
  USING ("owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid)
  WITH CHECK ("owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid);
--> statement-breakpoint
ALTER TABLE "virtual_keys" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "virtual_keys" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "virtual_keys"
  USING ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid))
  WITH CHECK ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid));
--> statement-breakpoint
ALTER TABLE "credit_ledger" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "credit_ledger" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "credit_ledger"
  USING ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid))
  WITH CHECK ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid));
--> statement-breakpoint
ALTER TABLE "charge_receipts" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "charge_receipts" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "charge_receipts"
  USING ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid))
  WITH CHECK ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid));
--> statement-breakpoint
ALTER TABLE "payment_attempts" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "payment_attempts" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "payment_attempts"
  USING ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid))
  WITH CHECK ("billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid));
--> statement-breakpoint
ALTER TABLE "payment_events" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "payment_events" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "payment_events"
  USING ("attempt_id" IN (SELECT "id" FROM "payment_attempts" WHERE "billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid)))
  WITH CHECK ("attempt_id" IN (SELECT "id" FROM "payment_attempts" WHERE "billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid)));
--> statement-breakpoint
ALTER TABLE "schedule_runs" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "schedule_runs" FORCE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "schedule_runs"
  USING ("schedule_id" IN (SELECT "id" FROM "schedules" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid))
  WITH CHECK ("schedule_id" IN (SELECT "id" FROM "schedules" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid));
