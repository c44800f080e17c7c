#!/usr/bin/env bash
# A local Flick cluster on this machine: a 3-member etcd and 3 flickd hosts
# (h1, h2, h3), each with its own data dir, ports and VM network range.
#   bash scripts/cluster.sh up     start it (prints how to reach each host)
#   bash scripts/cluster.sh down   remove every instance, stop the hosts and etcd, delete the folder
# State lives in $FLICK_CLUSTER_DIR (default /tmp/flick-cluster). Ports: etcd 23790-23792 (client),
# 23800-23802 (peer); host hN: API 74N0... h1 7460/7461/7462, h2 7470/7471/7472, h3 7480/7481/7482
# (API/proxy/hop listener, where the other hosts' proxies send requests with the cluster's token).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${FLICK_CLUSTER_DIR:-/tmp/flick-cluster}
N=3
ENDPOINTS=$(for i in 0 1 2; do printf 'http://127.0.0.1:%s,' $((23790 + i)); done | sed 's/,$//')
INITIAL=$(for i in 0 1 2; do printf 'etcd%s=http://127.0.0.1:%s,' "$i" $((23800 + i)); done | sed 's/,$//')

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_host() {
  local h=$1 api=$((7450 + 10 * $1))
  alive "$DIR/h$h.pid" && return 0
  nohup node bin/flickd --data-dir "$DIR/h$h" --listen "127.0.0.1:$api" --proxy-listen "127.0.0.1:$((api + 1))" \
    --cluster-hop-listen "127.0.0.1:$((api + 2))" --cluster-etcd "$ENDPOINTS" --host-name "h$h" --advertise 127.0.0.1 >>"$DIR/h$h.log" 2>&1 &
  echo $! >"$DIR/h$h.pid"
  for _ in $(seq 300); do [ "$(grep -c 'listening on http' "$DIR/h$h.log")" -gt "$(cat "$DIR/h$h.starts" 2>/dev/null || echo 0)" ] && break; alive "$DIR/h$h.pid" || break; sleep 0.2; done
  alive "$DIR/h$h.pid" || { echo "cluster: host h$h did not start: see $DIR/h$h.log" >&2; tail -5 "$DIR/h$h.log" >&2; exit 70; }
  grep -c 'listening on http' "$DIR/h$h.log" >"$DIR/h$h.starts"
}

up() {
  command -v etcd >/dev/null || { echo "cluster: etcd is not installed: run 'bash scripts/setup.sh'" >&2; exit 69; }
  [ -f dist/src/daemon/main.js ] || { echo "cluster: Flick is not built: run 'bash scripts/setup.sh'" >&2; exit 69; }
  mkdir -p "$DIR"
  for i in 0 1 2; do
    alive "$DIR/etcd$i.pid" && continue
    nohup etcd --name "etcd$i" --data-dir "$DIR/etcd$i" \
      --listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
      --initial-cluster "$INITIAL" --initial-cluster-token flick-local --initial-cluster-state new \
      --heartbeat-interval 100 --election-timeout 1000 >"$DIR/etcd$i.log" 2>&1 &
    echo $! >"$DIR/etcd$i.pid"
  done
  for i in 0 1 2; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((23790 + i))/health" | grep -q '"true"' && break; sleep 0.2; done
    curl -sf "http://127.0.0.1:$((23790 + i))/health" | grep -q '"true"' || { echo "cluster: etcd$i did not become healthy: see $DIR/etcd$i.log" >&2; exit 70; }
  done
  echo "cluster: etcd up at $ENDPOINTS"
  for h in $(seq $N); do start_host "$h"; done
  echo "cluster: hosts up; the cluster's token is in $DIR/h1/token (the same on every host)"
  for h in $(seq $N); do
    echo "  h$h: FLICK_HOST=http://127.0.0.1:$((7450 + 10 * h)) FLICK_TOKEN=\$(cat $DIR/h$h/token)   proxy http://<name>.localhost:$((7451 + 10 * h))"
  done
}

down() {
  [ -d "$DIR" ] || { echo "cluster: nothing to stop ($DIR does not exist)"; return 0; }
  # A host whose flickd died left its VMs and networks: start it again so it removes them itself.
  for h in $(seq $N); do [ -d "$DIR/h$h" ] && ! alive "$DIR/h$h.pid" && alive "$DIR/etcd0.pid" && start_host "$h"; done
  for h in $(seq $N); do
    api=$((7450 + 10 * h))
    if alive "$DIR/h$h.pid"; then
      token=$(cat "$DIR/h$h/token")
      # Remove this host's instances (a flickd stopped with SIGTERM leaves its VMs for the next one to adopt).
      for id in $(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api/v1/instances" | grep -o '"id":"[^"]*"' | cut -d'"' -f4); do
        curl -sf -X DELETE -H "Authorization: Bearer $token" "http://127.0.0.1:$api/v1/instances/$id?force=true" >/dev/null || true
      done
      kill "$(cat "$DIR/h$h.pid")"
      for _ in $(seq 100); do alive "$DIR/h$h.pid" || break; sleep 0.1; done
    fi
    rm -f "$DIR/h$h.pid"
  done
  for i in 0 1 2; do alive "$DIR/etcd$i.pid" && kill "$(cat "$DIR/etcd$i.pid")"; done
  # A member leaving a cluster whose others leave too can take seconds: its folder goes once it has exited.
  for i in 0 1 2; do
    for _ in $(seq 100); do alive "$DIR/etcd$i.pid" || break; sleep 0.1; done
    alive "$DIR/etcd$i.pid" && kill -9 "$(cat "$DIR/etcd$i.pid")"
    rm -f "$DIR/etcd$i.pid"
  done
  rm -rf "$DIR"
  echo "cluster: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: bash scripts/cluster.sh up|down" >&2; exit 64 ;;
esac
