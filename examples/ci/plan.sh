#!/bin/sh
# The pull-request plan, for any CI system: validate the manifests, then plan them against the
# shared state without reading a single media file, and print the plan as markdown.
#
# Run it from a checkout of the manifests repository (no media folder needed):
#
#   RECONCILE_STATE='postgresql://reconcile_ci@db.example.com:5432/media?schema=mediasync' \
#   PGPASSWORD=...  sh plan.sh [MANIFESTS_DIR]
#
# RECONCILE_STATE names the shared state; give the CI a read-only role
# (`reconcile state grant-readonly reconcile_ci`), its password in PGPASSWORD (or ~/.pgpass).
# PLAN_FILE (default plan.md) receives the markdown plan, for a pull-request comment; on
# GitHub Actions the dry run also appends it to $GITHUB_STEP_SUMMARY by itself.
#
# Exit status, as `reconcile --dry-run --detailed-exitcode`: 0 nothing to change, 2 changes
# planned, 3 changes planned but blocked; 1 invalid manifests or an error (the reason is
# printed, and is in the plan file too).
set -u

manifests=${1:-manifests}
plan=${PLAN_FILE:-plan.md}
: "${RECONCILE_STATE:?set RECONCILE_STATE to the shared state: postgresql://ROLE@HOST:PORT/DB}"
export RECONCILE_STATE

reconcile validate --manifests "$manifests" --no-refresh || exit 1

reconcile --dry-run --no-refresh --detailed-exitcode --manifests "$manifests" \
    --output markdown >"$plan"
status=$?
cat "$plan"
exit "$status"
