// The tenant of the current transaction: `SET LOCAL app.current_user_id`
// (or set_config(..., true)) at the start of each transaction. Unset means
// no rows, not an error.
import { sql } from "drizzle-orm";

export const currentUserId = sql`nullif(current_setting('app.current_user_id', true), '')::uuid`;
