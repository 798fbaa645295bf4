#!/usr/bin/env bash
# Stops the daemons scripts/start-rgw.sh started (their pids are in $1/pids) and removes $1.
# Never fails: a daemon already gone is fine.
D=${1:?usage: stop-rgw.sh STATE_DIR}
if [ -f "$D/pids" ]; then
  pids=$(tr '\n' ' ' <"$D/pids")
  # shellcheck disable=SC2086
  [ -n "${pids// /}" ] && kill $pids 2>/dev/null
  for _ in $(seq 1 50); do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  [ -n "$alive" ] && kill -9 $pids 2>/dev/null
fi
rm -rf "$D"
exit 0
