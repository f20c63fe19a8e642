// The three roles of the model, as Drizzle sees them: they exist already
// (`cargo xtask db-provision` makes and converges them), so `.existing()`
// keeps drizzle-kit from writing CREATE/ALTER/DROP ROLE for them; policies
// may name them (`pgPolicy("…", { to: appUser, … })`). The names come from
// the env contract, as the Rust tool reads them.
import { pgRole } from "drizzle-orm/pg-core";

/** The runtime role: DML under row-level security. */
export const appUser = pgRole(process.env.APP_DB_USER || "app_user").existing();
/** The service role: DML for workers, bypassing row-level security. */
export const appService = pgRole(process.env.APP_DB_SERVICE_USER || "app_service").existing();
/** The migrator: owns the schema and runs the migrations. */
export const appMigrator = pgRole(process.env.APP_DB_MIGRATOR_USER || "app_migrator").existing();
