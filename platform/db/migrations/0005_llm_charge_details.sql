CREATE TABLE "llm_charge_details" (
	"charge_receipt_id" uuid PRIMARY KEY NOT NULL,
	"provider_call_id" text,
	"model" text NOT NULL,
	"provider" text,
	"tokens_in" integer,
	"tokens_out" integer,
	"latency_ms" integer,
	"graph_id" text
);
--> statement-breakpoint
ALTER TABLE "llm_charge_details" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "receipt_kind" text DEFAULT 'llm' NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_charge_details" ADD CONSTRAINT "llm_charge_details_charge_receipt_id_charge_receipts_id_fk" FOREIGN KEY ("charge_receipt_id") REFERENCES "public"."charge_receipts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "llm_charge_details" AS PERMISSIVE FOR ALL TO public USING ("charge_receipt_id" IN (SELECT "id" FROM "charge_receipts" WHERE "billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid))) WITH CHECK ("charge_receipt_id" IN (SELECT "id" FROM "charge_receipts" WHERE "billing_account_id" IN (SELECT "id" FROM "billing_accounts" WHERE "owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid)));