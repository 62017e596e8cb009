#!/usr/bin/env bash
# NAT lab: two devices, each in its own network namespace behind its own symmetric NAT
# (iptables MASQUERADE --random-fully), reach coturn and ferry-signal on a "public" namespace
# (TEST-NET-3, 203.0.113.0/24). Only the TURN relay can join them; nat_lab.spec.ts proves it,
# also with UDP blocked by a firewall (then only TURN over TCP or TLS gets through).
# Run as root under `unshare -n` (as `cargo xtask test` does): every namespace, link and rule
# is made here and removed on exit; nothing leaves the machine.
#
#   pub   br0 203.0.113.1/24 — coturn :3478 (UDP, TCP) :443 (TLS), ferry-signal :3536
#         (signaling) + :8080 (app)
#    ├─ natA 203.0.113.11 (.21 after a move) ─ MASQUERADE --random-fully ─ 10.1.0.1/24 ─ devA 10.1.0.2 (Chromium)
#    └─ natB 203.0.113.12 ─ MASQUERADE --random-fully ─ 10.2.0.1/24 ─ devB 10.2.0.2 (Chromium)
#
# The Playwright runner stays in the calling namespace; each browser is started through a
# wrapper (`ip netns exec devX chromium`) and driven over --remote-debugging-pipe.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${FERRY_SIGNAL_BIN:=$root/target/release/ferry-signal}"
PUB_IP=203.0.113.1

if [ "$(id -u)" != 0 ]; then echo "natlab.sh needs root (network namespaces, iptables)" >&2; exit 1; fi
if ! command -v iptables >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables
fi
command -v turnserver >/dev/null || { echo "natlab.sh needs coturn (turnserver)" >&2; exit 1; }

work=$(mktemp -d /tmp/ferry-natlab.XXXXXX)
# A private snapshot of the app: others may rebuild dist while the lab runs.
cp -r "${FERRY_DIST:-$root/dist}" "$work/dist"
id="fl$$"
pub="$id-pub" natA="$id-natA" natB="$id-natB" devA="$id-devA" devB="$id-devB"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "$devA" "$devB" "$natA" "$natB" "$pub"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip link set lo up
for n in "$pub" "$natA" "$natB" "$devA" "$devB"; do
  ip netns add "$n"
  ip -n "$n" link set lo up
done

# The public segment: a bridge in pub; the NAT routers' public sides plug into it, so their
# public addresses can reach each other too — only the NAT stands between the devices.
ip -n "$pub" link add br0 type bridge
ip -n "$pub" addr add "$PUB_IP/24" dev br0
ip -n "$pub" link set br0 up

router() { # router <nat-ns> <dev-ns> <public-ip> <lan-prefix>
  local nat=$1 dev=$2 ip=$3 lan=$4
  ip -n "$pub" link add "p-$nat" type veth peer name wan netns "$nat"
  ip -n "$pub" link set "p-$nat" master br0 up
  ip -n "$nat" addr add "$ip/24" dev wan
  ip -n "$nat" link set wan up
  ip -n "$nat" route add default via "$PUB_IP"
  ip -n "$nat" link add lan type veth peer name eth0 netns "$dev"
  ip -n "$nat" addr add "$lan.1/24" dev lan
  ip -n "$nat" link set lan up
  ip netns exec "$nat" sysctl -qw net.ipv4.ip_forward=1
  # Symmetric NAT: a fresh random public port for every destination.
  ip netns exec "$nat" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully
  ip -n "$dev" addr add "$lan.2/24" dev eth0
  ip -n "$dev" link set eth0 up
  ip -n "$dev" route add default via "$lan.1"
  # The browser is started inside the device namespace.
  printf '#!/bin/sh\nexec ip netns exec %s /usr/bin/chromium "$@"\n' "$dev" >"$work/chromium-$dev"
  chmod +x "$work/chromium-$dev"
}
router "$natA" "$devA" 203.0.113.11 10.1.0
router "$natB" "$devB" 203.0.113.12 10.2.0

# Firewalls on the NAT routers, switched by the journeys (`firewall MODE`):
# - `udp-blocked` (corporate, hotel, school networks): every UDP packet the routers would
#   forward is dropped, both ways; TCP (signaling, the app, TURN over TCP or TLS) gets through;
# - `tls-only` (the strictest: little but HTTPS): only TCP to port 443 leaves, plus the lab's
#   signaling and app ports, which a real deployment serves as HTTPS on 443 behind a proxy;
#   only TURN over TLS on 443 reaches the relay;
# - `off`: everything passes again.
cat >"$work/firewall" <<SH
#!/bin/sh
set -e
for n in $natA $natB; do
  ip netns exec "\$n" iptables -F FORWARD
  case "\$1" in
    udp-blocked) ip netns exec "\$n" iptables -A FORWARD -p udp -j DROP ;;
    tls-only)
      ip netns exec "\$n" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      ip netns exec "\$n" iptables -A FORWARD -i lan -p tcp -m multiport --dports 443,3536,8080 -j ACCEPT
      ip netns exec "\$n" iptables -A FORWARD -j DROP ;;
    off) ;;
    *) echo "firewall udp-blocked|tls-only|off" >&2; exit 2 ;;
  esac
done
SH
chmod +x "$work/firewall"

# A network change (a phone moving from Wi-Fi to cellular): devA gets a new address and
# default route, and its NAT router a new public address, while the devices talk. Every flow
# through the old addresses dies silently (no reset reaches anyone): the signaling WebSocket,
# the TURN allocation, the ICE path. Each call moves devA to the other address pair.
#   move-device [--keep-link]
cat >"$work/move-device" <<SH
#!/bin/sh
set -e
# Removing a primary address takes its secondaries with it unless they are promoted.
ip netns exec $devA sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1
ip netns exec $natA sysctl -qw net.ipv4.conf.wan.promote_secondaries=1
if ip -n $devA addr show eth0 | grep -q 10.1.0.2/; then
  old_lan=10.1.0.2 new_lan=10.1.0.3 old_wan=203.0.113.11 new_wan=203.0.113.21
else
  old_lan=10.1.0.3 new_lan=10.1.0.2 old_wan=203.0.113.21 new_wan=203.0.113.11
fi
ip -n $natA addr add "\$new_wan/24" dev wan
ip -n $natA addr del "\$old_wan/24" dev wan
ip -n $natA route replace default via $PUB_IP src "\$new_wan"
# By default the device's link goes down and comes back with the new address, as a phone's
# does when it leaves Wi-Fi for cellular (the browser sees it go offline and online). With
# --keep-link the address changes under a live link: the browser is told nothing.
[ "\${1:-}" = --keep-link ] || ip -n $devA link set eth0 down
ip -n $devA addr add "\$new_lan/24" dev eth0
ip -n $devA addr del "\$old_lan/24" dev eth0
ip -n $devA link set eth0 up
ip -n $devA route replace default via 10.1.0.1 src "\$new_lan"
echo "devA moved: \$old_lan -> \$new_lan behind \$old_wan -> \$new_wan"
SH
chmod +x "$work/move-device"

# coturn's TLS listener gets a throwaway self-signed certificate (the journeys' browsers
# are told to accept it; a real deployment uses a certificate for its host name).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=turn.test" \
  -addext "subjectAltName=IP:$PUB_IP" -keyout "$work/turn.key" -out "$work/turn.crt" 2>/dev/null

# coturn on the public address, over UDP and TCP on 3478 and TLS on 443. The private
# ranges are denied as peers: pub cannot route there, and coturn would drop the whole
# allocation on an unroutable peer.
cat >"$work/turnserver.conf" <<CONF
listening-ip=$PUB_IP
relay-ip=$PUB_IP
listening-port=3478
tls-listening-port=443
cert=$work/turn.crt
pkey=$work/turn.key
min-port=49152
max-port=49999
lt-cred-mech
user=ferry:secret
realm=ferry
no-dtls
no-cli
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=172.16.0.0-172.31.255.255
denied-peer-ip=192.168.0.0-192.168.255.255
userdb=$work/turndb
pidfile=$work/turnserver.pid
CONF
ip netns exec "$pub" turnserver -c "$work/turnserver.conf" >"$root/target/natlab-turn.log" 2>&1 &
pids+=($!)
mkdir "$work/data"
ip netns exec "$pub" "$FERRY_SIGNAL_BIN" --host 0.0.0.0 --port 3536 --app-dir "$work/dist" \
  --app-port 8080 --ice none --data-dir "$work/data" >"$root/target/natlab-signal.log" 2>&1 &
pids+=($!)

# Health as seen from a device: through its NAT to the public namespace.
ip netns exec "$devA" python3 - "$PUB_IP" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        if urllib.request.urlopen(f"http://{sys.argv[1]}:3536/health", timeout=1).read() == b"ok":
            break
    except Exception:
        time.sleep(0.1)
else:
    raise SystemExit("ferry-signal is not reachable from devA through natA")
PY
ip netns exec "$natA" iptables -t nat -S POSTROUTING | grep -q -- '--random-fully'

cd "$here"
export FERRY_NATLAB=1 FERRY_APP_URL="http://$PUB_IP:8080" FERRY_TURN="turn:$PUB_IP:3478" \
  FERRY_TURN_TCP="turn:$PUB_IP:3478?transport=tcp" FERRY_TURN_TLS="turns:$PUB_IP:443" \
  FERRY_STUN="stun:$PUB_IP:3478" FERRY_NATLAB_CHROMIUM_A="$work/chromium-$devA" \
  FERRY_NATLAB_CHROMIUM_B="$work/chromium-$devB" FERRY_NATLAB_FIREWALL="$work/firewall" \
  FERRY_NATLAB_MOVE="$work/move-device"
# Its own output dir: the main run's screenshots in target/e2e-results stay.
node_modules/.bin/playwright test nat_lab.spec.ts --output ../../target/e2e-results-natlab "$@"
