#!/bin/sh
# Entry point of the one-shot `db-provision` container.
#
# This script holds no SQL and no copy of the role model: it runs the same
# Rust code as `cargo xtask db-provision` (the `xtask` binary built into the
# image by Dockerfile.xtask), configured from the container's environment
# (DB_HOST, DB_PORT, POSTGRES_ROOT_*, APP_DB_*). Extra arguments pass through,
# e.g. `--dry-run`.
set -eu
exec xtask db-provision "$@"
