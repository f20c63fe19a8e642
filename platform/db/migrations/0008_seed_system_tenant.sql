-- Custom migration: the system tenant (the platform's own principal), idempotent.
-- set_config(..., true) is transaction-local: it needs the batch transaction
-- drizzle runs migrations in. It was required when the migrating role owned
-- these forced-RLS tables; with a BYPASSRLS migrator it is harmless.
SELECT set_config('app.current_user_id', '00000000-0000-4000-a000-000000000001', true);
--> statement-breakpoint
INSERT INTO "users" ("id", "name")
VALUES ('00000000-0000-4000-a000-000000000001', 'Cogni System')
ON CONFLICT ("id") DO NOTHING;
--> statement-breakpoint
INSERT INTO "billing_accounts" ("id", "owner_user_id", "is_system_tenant", "slug", "balance_credits")
VALUES ('00000000-0000-4000-b000-000000000000', '00000000-0000-4000-a000-000000000001', true, 'cogni_system', 0)
ON CONFLICT ("id") DO NOTHING;
--> statement-breakpoint
INSERT INTO "virtual_keys" ("billing_account_id", "label", "is_default", "active")
SELECT '00000000-0000-4000-b000-000000000000', 'Default', true, true
WHERE NOT EXISTS (
  SELECT 1 FROM "virtual_keys"
  WHERE "billing_account_id" = '00000000-0000-4000-b000-000000000000' AND "is_default"
);
