#!/usr/bin/env bash
# Starts a throwaway single-node Ceph (1 mon, 1 bluestore OSD on a sparse file, no mgr) and radosgw
# (S3) on 127.0.0.1, for `deno task test:compat`. Cold start ≈ 20 s.
# Needs: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd  (Debian 12: Ceph 16)
# Env: D (state dir, default: a new temporary one), PORT (S3 port, default: a free one), MON_PORT
# (default: a free one), S3_KEY / S3_SECRET (keys of the S3 user created, default test/testsecret).
# Writes $D/env (LIFEBOAT_COMPAT_* lines to source) and $D/pids (the daemons; stop them with
# scripts/stop-rgw.sh $D). Exits non-zero, with the daemons it started stopped, if any step fails.
set -euo pipefail
for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool ceph; do
  command -v "$bin" >/dev/null || { echo "start-rgw: $bin is not installed" >&2; exit 3; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
D=${D:-$(mktemp -d /tmp/lifeboat-rgw.XXXXXX)}
PORT=${PORT:-$(free_port)}
MON_PORT=${MON_PORT:-$(free_port)}
S3_KEY=${S3_KEY:-test}
S3_SECRET=${S3_SECRET:-testsecret}
rm -rf "$D"
mkdir -p "$D"/{mon.a,osd.0,log,run}
: >"$D/pids"
cleanup_on_failure() {
  echo "start-rgw: failed; logs in $D/log" >&2
  bash "$(dirname "$0")/stop-rgw.sh" "$D" || true
}
trap cleanup_on_failure ERR
FSID=$(cat /proc/sys/kernel/random/uuid)
cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
# without this radosgw/radosgw-admin loop on "get_initial_auth_request returned -13" (auth none + msgr v2)
ms mon client mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
run dir = $D/run
log file = $D/log/\$name.log
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
[mon]
mon data = $D/mon.\$id
[osd]
osd data = $D/osd.\$id
osd objectstore = bluestore
# the block file must live outside osd data (else mkfs fails: "Too many levels of symbolic links")
bluestore block path = $D/osd.\$id.block
bluestore block create = true
bluestore block size = 21474836480
osd memory target = 1073741824
[client.rgw.a]
# tcp_nodelay=1: without it small requests take ~45 ms each (Nagle/delayed ACK)
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw crypt require ssl = false
CONF
C=(-c "$D/ceph.conf")
record() { # the daemon's pid file, once it exists
  for _ in $(seq 1 100); do [ -s "$D/run/$1.pid" ] && break; sleep 0.1; done
  cat "$D/run/$1.pid" >>"$D/pids"
}
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon "${C[@]}" -i a 2>>"$D/log/daemons.err"
record mon.a
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
ID=$(timeout 60 ceph "${C[@]}" osd new "$OSD_UUID")
ceph-osd "${C[@]}" -i "$ID" --mkfs --osd-uuid "$OSD_UUID" >"$D/log/osd-mkfs.out" 2>&1
ceph-osd "${C[@]}" -i "$ID" 2>>"$D/log/daemons.err"
record "osd.$ID"
radosgw "${C[@]}" -n client.rgw.a 2>>"$D/log/daemons.err"
record client.rgw.a
up=""
for _ in $(seq 1 600); do
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || { echo "start-rgw: radosgw did not answer on port $PORT within 60 s" >&2; false; }
timeout 60 radosgw-admin "${C[@]}" user create --uid=test --display-name=test \
  --access-key="$S3_KEY" --secret-key="$S3_SECRET" >/dev/null
cat >"$D/env" <<ENV
LIFEBOAT_COMPAT_ENDPOINT=http://127.0.0.1:$PORT
LIFEBOAT_COMPAT_ACCESS_KEY=$S3_KEY
LIFEBOAT_COMPAT_SECRET_KEY=$S3_SECRET
LIFEBOAT_COMPAT_SERVER="radosgw $(radosgw --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"
ENV
trap - ERR
echo "radosgw S3 endpoint http://127.0.0.1:$PORT (key $S3_KEY), state in $D, pids: $(tr '\n' ' ' <"$D/pids")"
