#!/usr/bin/env bash
# The compatibility run against a real S3 server: radosgw (Ceph) from Debian's packages, started on
# 127.0.0.1 by scripts/start-rgw.sh, then `deno task test:compat` against it, then stopped.
# Installs the packages when they are missing and apt-get can (root, Debian/Ubuntu). When they
# cannot be installed it prints "compat: skipped: …" and exits 0: a machine without them still
# passes .ci/run. Exits 1 when the server does not start or a compatibility test fails.
# LIFEBOAT_BIN (optional) runs a compiled binary instead of `deno run`; LIFEBOAT_COMPAT_REQUIRED=1
# turns the skip into a failure (the GitHub compat job, where the packages must install).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(radosgw ceph-mon ceph-osd)
start=$(date +%s)
have() { command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; }
if ! have; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  if command -v apt-get >/dev/null &&
    timeout 180 "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive timeout 300 "${sudo[@]}" apt-get install -y -qq \
      --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 && have; then
    echo "compat: installed ${pkgs[*]} in $(($(date +%s) - start)) s"
  else
    echo "compat: skipped: radosgw packages not installable here (apt-get install ${pkgs[*]} failed)"
    [ "${LIFEBOAT_COMPAT_REQUIRED:-}" = 1 ] && exit 1
    exit 0
  fi
fi
D=$(mktemp -d /tmp/lifeboat-rgw.XXXXXX)
trap 'bash scripts/stop-rgw.sh "$D"' EXIT
trap 'exit 143' TERM INT
D="$D" bash scripts/start-rgw.sh
set -a
# shellcheck disable=SC1091
. "$D/env"
set +a
status=0
deno task test:compat || status=$?
echo "compat: ${LIFEBOAT_COMPAT_SERVER}: $([ "$status" -eq 0 ] && echo passed || echo FAILED) in $(($(date +%s) - start)) s"
exit "$status"
