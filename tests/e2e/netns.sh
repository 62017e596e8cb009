#!/usr/bin/env bash
# Runs the e2e specs inside a private network namespace (started by `unshare -n`): loopback
# plus a veth pair with a TEST-NET-2 address and a default route, so Chromium has a
# non-loopback interface for WebRTC host candidates while nothing can leave the machine.
# ferry-signal serves the app and signaling on 127.0.0.1 inside the namespace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${FERRY_SIGNAL_BIN:=$root/target/release/ferry-signal}"
: "${FERRY_DIST:=$root/dist}"
log="$root/target/e2e-signal.log"

ip link set lo up
ip link add ferry0 type veth peer name ferry1
ip addr add 198.51.100.2/24 dev ferry0
ip link set ferry0 up
ip link set ferry1 up
ip route add default via 198.51.100.1 dev ferry0

# The mailbox's database lives in a throwaway dir; the mailbox spec reads its raw bytes.
FERRY_DATA_DIR=$(mktemp -d)
export FERRY_DATA_DIR
# Every device of the suite (about a hundred, with restarts) comes from 127.0.0.1 within the
# hour: the per-address mailbox rate limits (registrations 60/h) would refuse later journeys.
# ferry-signal's own integration tests cover those limits.
"$FERRY_SIGNAL_BIN" --host 127.0.0.1 --port 3536 --app-dir "$FERRY_DIST" --app-port 8080 --ice none --data-dir "$FERRY_DATA_DIR" \
  --mailbox-register-rate off --mailbox-post-rate off >"$log" 2>&1 &
signal_pid=$!
trap 'kill $signal_pid 2>/dev/null || true' EXIT
python3 - <<'PY'
import time, urllib.request
for _ in range(100):
    try:
        if urllib.request.urlopen("http://127.0.0.1:3536/health", timeout=1).read() == b"ok":
            break
    except Exception:
        time.sleep(0.1)
else:
    raise SystemExit("ferry-signal did not become healthy")
PY
# A TURN relay (Debian's coturn) on 127.0.0.1:3478 for the relay-only journey.
if command -v turnserver >/dev/null; then
  turn_dir=$(mktemp -d)
  cat >"$turn_dir/turnserver.conf" <<CONF
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=3478
min-port=49152
max-port=49999
lt-cred-mech
user=ferry:secret
realm=ferry
no-tls
no-dtls
allow-loopback-peers
no-cli
userdb=$turn_dir/turndb
pidfile=$turn_dir/turnserver.pid
CONF
  turnserver -c "$turn_dir/turnserver.conf" >"$root/target/e2e-turn.log" 2>&1 &
  turn_pid=$!
  trap 'kill $signal_pid $turn_pid 2>/dev/null || true' EXIT
  export FERRY_TURN=turn:127.0.0.1:3478
fi

cd "$here"
export FERRY_APP_URL=http://127.0.0.1:8080 FERRY_DIST FERRY_SIGNAL_BIN
if [ "${1:-}" = "--bench" ]; then
  node bench.mjs
else
  node_modules/.bin/playwright test "$@"
fi
