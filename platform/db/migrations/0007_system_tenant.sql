ALTER TABLE "billing_accounts" ADD COLUMN "is_system_tenant" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "billing_accounts" ADD COLUMN "slug" text;--> statement-breakpoint
CREATE UNIQUE INDEX "billing_accounts_one_system_tenant" ON "billing_accounts" USING btree ("is_system_tenant") WHERE "is_system_tenant";--> statement-breakpoint
ALTER TABLE "billing_accounts" ADD CONSTRAINT "billing_accounts_slug_unique" UNIQUE("slug");