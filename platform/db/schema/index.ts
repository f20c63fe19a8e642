// The app's Drizzle schema: what `drizzle-kit generate` diffs into migrations.
export * from "./identity";
export * from "./billing";
export * from "./ai";
export * from "./scheduling";
export * from "./execution";
export * from "./roles";
