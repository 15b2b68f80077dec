#!/bin/bash
# The upstream plugin's archiving scheme, replayed with the same barman-cloud CLI it ships
# (internal/cnpgi/common/wal.go): a marker in the spool answers a segment archived by an earlier
# call; otherwise archive the requested segment plus up to MAX_PARALLEL-1 other .ready segments,
# one barman-cloud-wal-archive process each, concurrently, and wait for all of them.
# Usage (as archive_command): upstream_batch_archive.sh %p   with BARMAN_BIN, SPOOL, MAX_PARALLEL,
# DESTINATION, SERVER and BARMAN_ARGS in the environment.
set -u
wal_path=$1
name=$(basename "$wal_path")
if [ -e "$SPOOL/$name" ]; then
    rm -f "$SPOOL/$name"
    exit 0
fi
pg_wal=$(dirname "$wal_path")
extras=$(ls "$pg_wal/archive_status" 2>/dev/null | grep '\.ready$' | sed 's/\.ready$//' | sort \
    | grep -v "^$name\$" | head -n $((MAX_PARALLEL - 1)))
pids=()
# shellcheck disable=SC2086
"$BARMAN_BIN/barman-cloud-wal-archive" $BARMAN_ARGS "$DESTINATION" "$SERVER" "$wal_path" & pids+=($!)
for extra in $extras; do
    # shellcheck disable=SC2086
    ( "$BARMAN_BIN/barman-cloud-wal-archive" $BARMAN_ARGS "$DESTINATION" "$SERVER" "$pg_wal/$extra" \
        && touch "$SPOOL/$extra" ) & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
