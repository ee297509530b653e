#!/usr/bin/env bash
# bench/run.sh: throughput, latency, CPU and memory of custom_auth next to a bare
# reverse proxy, Caddy's forward_auth and a static response. See bench/README.md.
#
#   bench/run.sh                                # every scenario
#   SCENARIO=sites DURATION=3s ROUNDS=1 bench/run.sh
#
# Settings, as environment variables (bench/harness checks them):
#   SCENARIO=all         sites, latency, memory, fleet, nginx, handler, or a list of them (sites,memory)
#   DURATION=10s         each measured wrk run of the sites and latency scenarios
#   ROUNDS=3             interleaved rounds of the sites scenario
#   CONNS=64 THREADS=2   wrk connections and threads
#   WARMUP=3s            wrk warm-up per site before the first round
#   API_LATENCY=50ms     the identity API's answer delay in the latency and fleet scenarios
#   LATENCY_CONNS="64 256"  wrk connections of the latency scenario, one run each
#   MEMORY_DURATION=60s  the memory scenario's wrk run
#   MEMORY_GOMEMLIMIT=off  GOMEMLIMIT of an extra run of custom_auth in the memory scenario
#   FLEET_VISITORS=100   distinct visitors of the fleet scenario (needs redis-server, redis-cli)
#   BASE_PORT=18400      first loopback port; the run uses BASE_PORT+0..7, +10..15 and +20..24
#   OUT=bench/RESULTS.md where the report goes
#
# This script only checks the tools and builds; bench/harness starts the processes,
# checks every site, runs wrk and writes the report. Everything listens on 127.0.0.1
# and is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

missing=()
for tool in go wrk git; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "bench: missing: ${missing[*]}" >&2
	for tool in "${missing[@]}"; do
		case $tool in
		go) echo "  Go: https://go.dev/doc/install (the version in go.mod)" >&2 ;;
		*) echo "  $tool: apt-get install $tool   (as root, or with sudo)" >&2 ;;
		esac
	done
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/custom_auth-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "bench: building Caddy with custom_auth, the bench servers and the harness" >&2
go build -o "$tmp/caddy" ./caddymodule
go build -o "$tmp/servers" ./bench/servers
go build -o "$tmp/harness" ./bench/harness
# The memory scenario runs TestZipfHitRatio from custom_auth's own tests.
go test -c -o "$tmp/custom_auth.test" .

# Not exec: the trap removes the work directory once the harness is done.
"$tmp/harness" -caddy "$tmp/caddy" -servers "$tmp/servers" -unit-tests "$tmp/custom_auth.test" -work "$tmp" -out "${OUT:-bench/RESULTS.md}"
