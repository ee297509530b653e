#!/bin/sh
# A fleet on one machine: a redis-server and two gateways sharing it, on loopback.
# Needs redis-server and a Caddy built with custom_auth (CADDY, default: ./caddy, built
# with `go build -o caddy ./caddymodule` from the repository's root). Stop with Ctrl-C.
#
# Then, in another terminal:
#   curl -s localhost:8181 -H 'X-Bot-Id: demo-bot' -H 'X-Access-Token: alice-token'
#   curl -s localhost:8182 -H 'X-Bot-Id: demo-bot' -H 'X-Access-Token: alice-token'
# (verified on both; only gateway 1's API is called), then purge on gateway 2:
#   curl -s localhost:2182/custom-auth/purge -d '{"bot":"demo-bot","token":"alice-token"}'
# which answers {"purged":1,"gateways":2}; the next request on gateway 1 calls its API again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
CADDY=${CADDY:-./caddy}
REDIS_PORT=${REDIS_PORT:-6391}
work=$(mktemp -d)
pids=""
trap 'kill $pids 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" &
pids="$pids $!"
for n in 1 2; do
	mkdir -p "$work/gateway$n"
	GATEWAY_PORT=818$n ADMIN_PORT=218$n API_PORT=918$n REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
		HOME="$work/gateway$n" XDG_DATA_HOME="$work/gateway$n" XDG_CONFIG_HOME="$work/gateway$n" \
		"$CADDY" run --config "$here/Caddyfile" --adapter caddyfile 2>&1 | sed "s/^/gateway $n: /" &
	pids="$pids $!"
done
echo "redis on 127.0.0.1:$REDIS_PORT; gateways on 127.0.0.1:8181 and :8182 (admin :2181, :2182)"
wait
