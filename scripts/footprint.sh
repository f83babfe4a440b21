#!/usr/bin/env bash
# Measures the agent's footprint: resident memory and CPU share of one core
# over a run of SECONDS (default 60) at a 1 s interval, against a real
# config-free coordinator. Usage: scripts/footprint.sh [SECONDS]
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'kill $coord $agent 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/coordinator" ./cmd/coordinator
go build -o "$dir/agent" ./cmd/agent
cat > "$dir/session.json" <<JSON
{"port": 21999, "ssl": false, "debug": true, "nats": {"listen": "127.0.0.1:24222"},
 "simulationServers": ["footprint.test:2000"]}
JSON
"$dir/coordinator" "$dir/session.json" >"$dir/coord.log" 2>&1 & coord=$!
sleep 1
"$dir/agent" -nats nats://127.0.0.1:24222 -server footprint.test:2000 -interval 1s -probe off >"$dir/agent.log" 2>&1 & agent=$!
sleep 2 # let it settle
tck=$(getconf CLK_TCK)
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$agent/stat)
t0=$(date +%s.%N)
maxrss=0
for ((i = 0; i < secs; i++)); do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$agent/status)
  (( rss > maxrss )) && maxrss=$rss
  sleep 1
done
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$agent/stat)
t1=$(date +%s.%N)
awk -v u0=$u0 -v s0=$s0 -v u1=$u1 -v s1=$s1 -v t0=$t0 -v t1=$t1 -v tck=$tck -v rss=$maxrss 'BEGIN {
  cpu = ((u1 + s1) - (u0 + s0)) / tck
  printf "agent over %.0f s at a 1 s interval: CPU %.3f s = %.3f %% of one core; peak RSS %.1f MB\n", t1 - t0, cpu, 100 * cpu / (t1 - t0), rss / 1024
}'
