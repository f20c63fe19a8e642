CREATE TABLE "ai_threads" (
	"owner_user_id" uuid NOT NULL,
	"state_key" text NOT NULL,
	"messages" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"metadata" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	CONSTRAINT "ai_threads_owner_user_id_state_key_pk" PRIMARY KEY("owner_user_id","state_key")
);
--> statement-breakpoint
ALTER TABLE "ai_threads" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "ai_threads" ADD CONSTRAINT "ai_threads_owner_user_id_users_id_fk" FOREIGN KEY ("owner_user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE POLICY "tenant_isolation" ON "ai_threads" AS PERMISSIVE FOR ALL TO public USING ("owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid) WITH CHECK ("owner_user_id" = nullif(current_setting('app.current_user_id', true), '')::uuid);