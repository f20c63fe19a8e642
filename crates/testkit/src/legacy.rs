//! The legacy database: the shape upstream's `provision.sh` and migrations
//! run as `app_user` left behind (`app_user` owns the database, `public` and
//! everything the migrations created; `app_service` reads through default
//! privileges), with rows of two tenants.

use crate::Cluster;

pub const TENANT_A: &str = "00000000-0000-4000-a000-00000000000a";
pub const TENANT_B: &str = "00000000-0000-4000-a000-00000000000b";

/// Upstream's roles and database: `app_user` and `app_service` log in,
/// `app_user` owns the database and `public`, and its default privileges
/// give both roles DML on what it creates.
pub fn roles_and_database(cluster: &Cluster, db: &str) {
    let mut admin = cluster.admin("postgres");
    admin
        .batch_execute(
            "CREATE ROLE app_user LOGIN PASSWORD 'password'; \
             CREATE ROLE app_service LOGIN BYPASSRLS PASSWORD 'service_password';",
        )
        .unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db} OWNER app_user")).unwrap();
    cluster
        .admin(db)
        .batch_execute(&format!(
            "ALTER SCHEMA public OWNER TO app_user; \
             GRANT USAGE, CREATE ON SCHEMA public TO app_user; \
             GRANT CONNECT ON DATABASE {db} TO app_service; \
             GRANT USAGE ON SCHEMA public TO app_service; \
             ALTER DEFAULT PRIVILEGES FOR ROLE app_user IN SCHEMA public \
               GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_user, app_service; \
             ALTER DEFAULT PRIVILEGES FOR ROLE app_user IN SCHEMA public \
               GRANT USAGE, SELECT ON SEQUENCES TO app_user, app_service;"
        ))
        .unwrap();
}

/// Builds the database the way upstream's `provision.sh` and migrations run
/// as `app_user` did, with data in it.
pub fn build(cluster: &Cluster, db: &str) {
    roles_and_database(cluster, db);
    // The migrations, run as app_user.
    cluster.connect_with("app_user", "password", db)
        .batch_execute(&format!(
            "CREATE EXTENSION citext; \
             CREATE TYPE account_kind AS ENUM ('personal', 'system'); \
             CREATE TABLE users (id uuid PRIMARY KEY, email citext NOT NULL, kind account_kind NOT NULL DEFAULT 'personal'); \
             CREATE TABLE billing_accounts (id serial PRIMARY KEY, owner_user_id uuid NOT NULL REFERENCES users(id), slug text); \
             CREATE TABLE credit_ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                                         billing_account_id int NOT NULL REFERENCES billing_accounts(id), amount int); \
             CREATE TABLE events (id bigserial, at date NOT NULL, note text) PARTITION BY RANGE (at); \
             CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); \
             CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01'); \
             CREATE FUNCTION current_app_user() RETURNS uuid LANGUAGE sql STABLE \
               AS $$ SELECT nullif(current_setting('app.current_user_id', true), '')::uuid $$; \
             CREATE VIEW user_emails AS SELECT id, email FROM users; \
             CREATE SCHEMA drizzle; \
             CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint); \
             INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('aa', 1700000000000), ('bb', 1700000000001); \
             INSERT INTO users VALUES ('{TENANT_A}', 'a@example.com', 'personal'), ('{TENANT_B}', 'B@example.com', 'system'); \
             INSERT INTO billing_accounts (owner_user_id, slug) VALUES ('{TENANT_A}', 'a'), ('{TENANT_B}', 'b'); \
             INSERT INTO credit_ledger (billing_account_id, amount) VALUES (1, 10), (2, 20); \
             INSERT INTO events (at, note) VALUES ('2026-05-01', 'x'), ('2027-05-01', 'y'); \
             ALTER TABLE users ENABLE ROW LEVEL SECURITY; ALTER TABLE users FORCE ROW LEVEL SECURITY; \
             CREATE POLICY users_self ON users USING (id = current_app_user()) WITH CHECK (id = current_app_user()); \
             ALTER TABLE billing_accounts ENABLE ROW LEVEL SECURITY; ALTER TABLE billing_accounts FORCE ROW LEVEL SECURITY; \
             CREATE POLICY billing_owner ON billing_accounts USING (owner_user_id = current_app_user()) \
               WITH CHECK (owner_user_id = current_app_user());"
        ))
        .unwrap();
}
