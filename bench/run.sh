#!/usr/bin/env bash
# bench/run.sh: throughput, latency, CPU and memory of custom_auth next to a bare
# reverse proxy, Caddy's forward_auth and a static response, all served by one Caddy.
#
#   bench/run.sh
#
# Options, as environment variables:
#   DURATION=10s   length of each measured wrk run
#   ROUNDS=3       interleaved rounds (A B C D E per round)
#   CONNS=64       wrk connections
#   THREADS=2      wrk threads
#   WARMUP=3s      wrk warm-up per site before the first round
#   BASE_PORT=18400  first loopback port; the run uses BASE_PORT+0/1 and +10..14
#
# Sites:
#   A  reverse_proxy to the backend
#   B  forward_auth to the identity API (GET /check per request) + reverse_proxy
#   C  custom_auth, default cache_ttl (warm cache) + reverse_proxy
#   D  custom_auth, cache_ttl 0 and negative_ttl 0 (POST /ca per request) + reverse_proxy
#   E  respond "ok"
#
# Writes bench/RESULTS.md. Everything it starts listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail

# The command as typed, for RESULTS.md: the options that were set, then the script.
command_line=""
for v in DURATION ROUNDS CONNS THREADS WARMUP BASE_PORT; do
	if [[ -n ${!v+x} ]]; then command_line+="$v=${!v} "; fi
done
command_line+="bench/run.sh"

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
BASE_PORT=${BASE_PORT:-18400}

die() {
	echo "bench: $*" >&2
	exit 1
}

[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 10s, got '$DURATION'"
[[ $WARMUP =~ ^[1-9][0-9]*[smh]?$ ]] || die "WARMUP must look like 3s, got '$WARMUP'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 100 ]] || die "ROUNDS must be 1..100, got '$ROUNDS'"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, got '$CONNS'"
[[ $THREADS =~ ^[1-9][0-9]*$ && $THREADS -le $CONNS ]] || die "THREADS must be 1..CONNS, got '$THREADS'"
[[ $BASE_PORT =~ ^[1-9][0-9]*$ && $BASE_PORT -ge 1024 && $BASE_PORT -le 65000 ]] || die "BASE_PORT must be 1024..65000"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/custom_auth-bench.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -----------------------------------------------------------------------------

if ! command -v wrk >/dev/null; then
	echo "bench: installing wrk from Debian" >&2
	sudo=""
	if [[ $(id -u) -ne 0 ]]; then sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
	command -v wrk >/dev/null || die "wrk could not be installed"
fi
command -v curl >/dev/null || die "curl is required"

echo "bench: building Caddy with custom_auth and the bench servers" >&2
go build -o "$tmp/caddy" ./caddymodule
go build -o "$tmp/servers" ./bench/servers

# --- ports, token ------------------------------------------------------------------------

backend_port=$((BASE_PORT))
api_port=$((BASE_PORT + 1))
sites=(A B C D E)
declare -A port desc
for i in "${!sites[@]}"; do port[${sites[$i]}]=$((BASE_PORT + 10 + i)); done
desc[A]="reverse_proxy"
desc[B]="forward_auth + reverse_proxy"
desc[C]="custom_auth, warm cache"
desc[D]="custom_auth, cache_ttl 0"
desc[E]="respond \"ok\""

for p in "$backend_port" "$api_port" "${port[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p on 127.0.0.1 is in use; set BASE_PORT"
	fi
done

# The token and the wrk script stay inside $tmp, which only this user can read.
token="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$token" >"$tmp/token"

# --- servers and Caddy ---------------------------------------------------------------------

"$tmp/servers" -backend "127.0.0.1:$backend_port" -api "127.0.0.1:$api_port" \
	-token-file "$tmp/token" >"$tmp/servers.log" 2>&1 &
servers_pid=$!
pids+=("$servers_pid")

cat >"$tmp/Caddyfile" <<EOF
{
	admin off
	persist_config off
	auto_https off
}

# A: bare reverse proxy.
http://:${port[A]} {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$backend_port
}

# B: Caddy's forward_auth, one identity call per request.
http://:${port[B]} {
	bind 127.0.0.1
	forward_auth 127.0.0.1:$api_port {
		uri /check
		copy_headers X-User-Id
	}
	reverse_proxy 127.0.0.1:$backend_port
}

# C: custom_auth with the default cache_ttl: after the first request, served from cache.
http://:${port[C]} {
	bind 127.0.0.1
	custom_auth {
		bot bench {
			auth_url http://127.0.0.1:$api_port/ca
			whitelist shop.example.com
		}
	}
	reverse_proxy 127.0.0.1:$backend_port
}

# D: custom_auth without caching: one identity call per request. negative_ttl 0 too, so
# that concurrent requests are not coalesced into one call either.
http://:${port[D]} {
	bind 127.0.0.1
	custom_auth {
		bot bench {
			auth_url http://127.0.0.1:$api_port/ca
			whitelist shop.example.com
			cache_ttl 0
			negative_ttl 0
		}
	}
	reverse_proxy 127.0.0.1:$backend_port
}

# E: static response.
http://:${port[E]} {
	bind 127.0.0.1
	respond "ok"
}
EOF

mkdir -p "$tmp/home"
HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/home/config" XDG_DATA_HOME="$tmp/home/data" \
	"$tmp/caddy" run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/caddy.log" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")

show_logs() {
	echo "--- Caddy log (tail) ---" >&2
	tail -n 20 "$tmp/caddy.log" >&2 || true
	echo "--- servers log (tail) ---" >&2
	tail -n 20 "$tmp/servers.log" >&2 || true
}
fail() {
	echo "bench: FAILED: $*" >&2
	show_logs
	exit 1
}

# wait_up waits (at most 10 s) until something answers HTTP at the URL.
wait_up() {
	local i
	for ((i = 0; i < 100; i++)); do
		if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
		sleep 0.1
	done
	fail "nothing answers at $1"
}
wait_up "http://127.0.0.1:$api_port/stats"
for s in "${sites[@]}"; do wait_up "http://127.0.0.1:${port[$s]}/"; done
[[ $(cat "/proc/$caddy_pid/comm") == caddy ]] || fail "pid $caddy_pid is not Caddy"

# --- checks ----------------------------------------------------------------------------------

# counter NAME prints one counter of the servers (see bench/servers).
stats() { curl -s --max-time 5 "http://127.0.0.1:$api_port/stats" >"$tmp/stats" || fail "no stats"; }
counter() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/stats"; }

# probe SITE TOKEN [curl args...] sends one widget request; sets status, body, echo_contact
# (the X-Contact-Id the backend got) and echo_user (its X-User-Id).
probe() {
	local site=$1 tok=$2
	shift 2
	status=$(curl -s --max-time 5 -o "$tmp/probe.body" -D "$tmp/probe.head" -w '%{http_code}' \
		-H 'X-Bot-Id: bench' -H "X-Access-Token: $tok" -H 'Origin: https://shop.example.com' \
		"$@" "http://127.0.0.1:${port[$site]}/") || status=000
	body=$(cat "$tmp/probe.body")
	echo_contact=$(tr -d '\r' <"$tmp/probe.head" | awk -F': ' 'tolower($1) == "x-echo-contact-id" { print $2 }')
	echo_user=$(tr -d '\r' <"$tmp/probe.head" | awk -F': ' 'tolower($1) == "x-echo-user-id" { print $2 }')
}

expect_ok() { # SITE WHAT
	[[ $status == 200 && $body == ok ]] || fail "site $1 ($2): got status $status, body '${body:0:80}'"
}

# wait_verified SITE WHEN checks that a valid request to C or D is verified. After a load
# run the site may fall back for a while (custom_auth's circuit breaker, open 10 s by
# default); it waits for that, at most 15 s, and records how long.
declare -A unverified_waits unverified_secs
wait_verified() {
	local s=$1 waited=0
	probe "$s" "$token"
	expect_ok "$s" "valid token"
	while [[ $echo_contact != 2 && $waited -lt 15 ]]; do
		sleep 1
		waited=$((waited + 1))
		probe "$s" "$token"
		expect_ok "$s" "valid token"
	done
	[[ $echo_contact == 2 ]] || fail "site $s ($2): not verified, backend got X-Contact-Id '$echo_contact' (want 2)"
	if [[ $waited -gt 0 ]]; then
		unverified_waits[$s]=$((${unverified_waits[$s]:-0} + 1))
		unverified_secs[$s]=$((${unverified_secs[$s]:-0} + waited))
		echo "bench: WARNING: site $s ($2) answered unverified (fallback) for about ${waited}s" >&2
	fi
}

check_sites() {
	local s before after
	for s in A E; do
		probe "$s" "$token"
		expect_ok "$s" "valid request"
	done

	probe B "$token"
	expect_ok B "valid token"
	[[ $echo_user == 2 ]] || fail "site B: backend did not get X-User-Id 2 from forward_auth (got '$echo_user')"
	probe B "wrong-$token"
	[[ $status == 401 ]] || fail "site B: a wrong token was not rejected (status $status)"

	for s in C D; do
		wait_verified "$s" "$1"
		# A wrong token falls back, and a spoofed contact header must not reach the backend.
		probe "$s" "wrong-$token" -H 'X-Contact-Id: 9'
		expect_ok "$s" "wrong token"
		[[ -z $echo_contact ]] || fail "site $s: a wrong token reached the backend with X-Contact-Id '$echo_contact'"
	done

	# C serves from its cache, D asks the API every time.
	for s in C D; do
		stats
		before=$(counter ca)
		probe "$s" "$token"
		probe "$s" "$token"
		probe "$s" "$token"
		[[ $echo_contact == 2 ]] || fail "site $s: not verified on repeat"
		stats
		after=$(counter ca)
		if [[ $s == C && $after -ne $before ]]; then
			fail "site C: $((after - before)) identity API calls for 3 repeated requests (want 0: cache)"
		fi
		if [[ $s == D && $((after - before)) -ne 3 ]]; then
			fail "site D: $((after - before)) identity API calls for 3 requests (want 3: no cache)"
		fi
	done
}

warnings=()
echo "bench: checking every site" >&2
check_sites "before the warm-up"

# --- measuring ---------------------------------------------------------------------------------

cat >"$tmp/bench.lua" <<EOF
wrk.method = "GET"
wrk.headers["X-Bot-Id"] = "bench"
wrk.headers["X-Access-Token"] = "$token"
wrk.headers["Origin"] = "https://shop.example.com"

done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d sockerr=%d\n",
		summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

clk_tck=$(getconf CLK_TCK)
# cpu_ticks PID: user + system CPU of the whole process (all threads), in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# busy_ticks: CPU the whole machine spent outside idle and iowait, in clock ticks.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# children_ticks FILE: CPU of this shell's finished children, from the output of times.
children_ticks() {
	awk -v hz="$clk_tck" 'function sec(x, a) { split(x, a, "m"); sub(/s$/, "", a[2]); return a[1] * 60 + a[2] }
		NR == 2 { printf "%d\n", (sec($1) + sec($2)) * hz }' "$1"
}
ncpu=$(nproc)
hwm_kb() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }

# Writing 5 to clear_refs resets VmHWM to the current RSS, which gives a peak per run.
if echo 5 >"/proc/$caddy_pid/clear_refs" 2>/dev/null; then
	rss_reset=yes
else
	rss_reset=no
fi

wrk_run() { # SITE DURATION OUTFILE
	wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency -s "$tmp/bench.lua" \
		"http://127.0.0.1:${port[$1]}/" >"$3" 2>&1 || fail "wrk failed on site $1: $(tail -n 3 "$3")"
	grep -q '^BENCH ' "$3" || fail "wrk printed no summary for site $1"
}

kv() { sed -n 's/^BENCH .*\b'"$1"'=\([0-9]*\).*/\1/p' "$2"; }

echo "bench: warming up (${WARMUP} per site)" >&2
for s in "${sites[@]}"; do wrk_run "$s" "$WARMUP" "$tmp/warmup.$s"; done
check_sites "right after the warm-up"

printf 'round\tsite\trps\tp50_ms\tp99_ms\tcaddy_us\tservers_us\tapi_per_req\tverified\tpeak_rss_mb\terrors\tother_load_pct\n' >"$tmp/runs.tsv"

measure() { # ROUND SITE
	local r=$1 s=$2 out="$tmp/wrk.$1.$2" c0 c1 v0 v1 ca0 ck0 b0 bc0 bu0 ca1 ck1 b1 bc1 bu1
	stats
	ca0=$(counter ca) ck0=$(counter check) b0=$(counter backend) bc0=$(counter backend_contact) bu0=$(counter backend_user)
	if [[ $rss_reset == yes ]]; then echo 5 >"/proc/$caddy_pid/clear_refs"; fi
	local m0 m1 w
	times >"$tmp/times0"
	m0=$(busy_ticks)
	c0=$(cpu_ticks "$caddy_pid")
	v0=$(cpu_ticks "$servers_pid")
	wrk_run "$s" "$DURATION" "$out"
	c1=$(cpu_ticks "$caddy_pid")
	v1=$(cpu_ticks "$servers_pid")
	m1=$(busy_ticks)
	times >"$tmp/times1"
	# wrk is the only child this shell waited for in between (the other commands run in
	# subshells, whose children are not counted here).
	w=$(($(children_ticks "$tmp/times1") - $(children_ticks "$tmp/times0")))
	local hwm
	hwm=$(hwm_kb "$caddy_pid")
	stats
	ca1=$(counter ca) ck1=$(counter check) b1=$(counter backend) bc1=$(counter backend_contact) bu1=$(counter backend_user)

	local n dur p50 p99 errs
	n=$(kv requests "$out") dur=$(kv duration_us "$out") p50=$(kv p50_us "$out") p99=$(kv p99_us "$out")
	errs=$(($(kv non2xx "$out") + $(kv sockerr "$out")))
	[[ $n -gt 0 ]] || fail "site $s: no requests completed"

	# Every request that reached the backend through B, C or D must carry the identity.
	local reached=$((b1 - b0)) verified="-"
	case $s in
	B) verified=$((bu1 - bu0)) ;;
	C | D) verified=$((bc1 - bc0)) ;;
	esac
	# Only the requests in flight when wrk stops (at most CONNS) may miss it: wrk closes
	# their connections and custom_auth falls back for them.
	if [[ $verified != - && $((reached - verified)) -gt $CONNS ]]; then
		fail "site $s round $r: only $verified of $reached backend requests were verified"
	fi
	if [[ $s != E && $reached -le 0 ]]; then fail "site $s round $r: the backend got no requests"; fi
	local vcol="-"
	if [[ $verified != - ]]; then vcol="$verified/$reached"; fi

	awk -v r="$r" -v s="$s" -v n="$n" -v dur="$dur" -v p50="$p50" -v p99="$p99" \
		-v c="$((c1 - c0))" -v v="$((v1 - v0))" -v hz="$clk_tck" -v api="$((ca1 - ca0 + ck1 - ck0))" \
		-v vcol="$vcol" -v hwm="$hwm" -v errs="$errs" -v other="$((m1 - m0 - (c1 - c0) - (v1 - v0) - w))" \
		-v ncpu="$ncpu" 'BEGIN {
		load = other * 100 / (dur / 1e6 * hz * ncpu)
		if (load < 0) load = 0
		printf "%d\t%s\t%.0f\t%.3f\t%.3f\t%.2f\t%.2f\t%.3f\t%s\t%.1f\t%d\t%.0f\n",
			r, s, n / (dur / 1e6), p50 / 1000, p99 / 1000, c * 1e6 / hz / n, v * 1e6 / hz / n,
			api / n, vcol, hwm / 1024, errs, load
	}' >>"$tmp/runs.tsv"
	tail -n 1 "$tmp/runs.tsv" | awk -F'\t' '{
		printf "bench: round %s site %s: %s req/s, p50 %s ms, p99 %s ms, Caddy %s us/req, errors %s, other load %s%%\n",
			$1, $2, $3, $4, $5, $6, $11, $12 }' >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
	for s in "${sites[@]}"; do
		# Each measured run of C and D starts verified (see wait_verified).
		if [[ $s == C || $s == D ]]; then wait_verified "$s" "before round $r"; fi
		measure "$r" "$s"
	done
done

# The sites must still answer right after the runs.
check_sites "right after the last round"

# --- report ---------------------------------------------------------------------------------

# median SITE COLUMN over the rounds.
median() {
	awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s { print $c }' "$tmp/runs.tsv" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
maxcol() {
	awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s && $c > m { m = $c } END { print m + 0 }' "$tmp/runs.tsv"
}
declare -A rps p50 p99 cpu srv api rss errs other
for s in "${sites[@]}"; do
	rps[$s]=$(median "$s" 3) p50[$s]=$(median "$s" 4) p99[$s]=$(median "$s" 5)
	cpu[$s]=$(median "$s" 6) srv[$s]=$(median "$s" 7) api[$s]=$(median "$s" 8)
	rss[$s]=$(maxcol "$s" 10) other[$s]=$(maxcol "$s" 12)
	errs[$s]=$(awk -F'\t' -v s="$s" 'NR > 1 && $2 == s { t += $11 } END { print t + 0 }' "$tmp/runs.tsv")
done

for s in "${sites[@]}"; do
	if awk -v o="${other[$s]}" 'BEGIN { exit !(o > 10) }'; then
		warnings+=("other processes used up to ${other[$s]}% of the machine during site $s's runs: its numbers are disturbed.")
	fi
done
for s in C D; do
	if [[ -n ${unverified_waits[$s]:-} ]]; then
		warnings+=("site $s fell back instead of verifying ${unverified_waits[$s]} time(s) after a load run, for ${unverified_secs[$s]}s in all; the measured runs started verified.")
	fi
done
# What custom_auth logged above debug level (message and error only, distinct).
while IFS= read -r line; do
	warnings+=("Caddy's log, custom_auth: $line")
done < <(grep '"logger":"http.handlers.custom_auth"' "$tmp/caddy.log" |
	sed -n 's/.*"msg":"\([^"]*\)".*"error":"\([^"]*\)".*/\1: \2/p; t; s/.*"msg":"\([^"]*\)".*/\1/p' |
	sort | uniq -c | awk '{ n = $1; sub(/^ *[0-9]+ /, ""); print $0 " (" n "x)" }')

if [[ $rss_reset == yes ]]; then
	rss_head="peak RSS MB"
	rss_note="Peak RSS is Caddy's VmHWM during each run (reset before every run by writing 5
  to /proc/<pid>/clear_refs), the highest over the rounds. It is process-wide: Go keeps
  freed heap for a while, so a site's peak includes what earlier runs left behind."
else
	rss_head="peak RSS MB (cumulative)"
	rss_note="Peak RSS is Caddy's VmHWM, which could not be reset on this machine: it is
  process-wide and cumulative, so each site shows the highest value seen up to and
  including its runs, not its own peak."
fi

median_table() {
	echo "| site | what | req/s | p50 ms | p99 ms | Caddy CPU µs/req | servers CPU µs/req | API calls/req | $rss_head | errors (all runs) | max other load % |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for s in "${sites[@]}"; do
		awk -v s="$s" -v d="${desc[$s]}" -v a="${rps[$s]}" -v b="${p50[$s]}" -v c="${p99[$s]}" \
			-v e="${cpu[$s]}" -v f="${srv[$s]}" -v g="${api[$s]}" -v h="${rss[$s]}" -v i="${errs[$s]}" \
			-v j="${other[$s]}" \
			'BEGIN { printf "| %s | %s | %.0f | %.2f | %.2f | %.1f | %.1f | %.2f | %.1f | %d | %.0f |\n", s, d, a, b, c, e, f, g, h, i, j }'
	done
}

# ratio_row X Y TARGET: X/Y of the medians and per round, and whether a target is met.
ratio_row() {
	local x=$1 y=$2 target=$3
	local per_round cpu_round
	per_round=$(awk -F'\t' -v x="$x" -v y="$y" 'NR > 1 { v[$1, $2] = $3; r[$1] = 1 }
		END { for (i = 1; i in r; i++) printf "%s%.3f", (i > 1 ? ", " : ""), v[i, x] / v[i, y] }' "$tmp/runs.tsv")
	cpu_round=$(awk -F'\t' -v x="$x" -v y="$y" 'NR > 1 { v[$1, $2] = $6; r[$1] = 1 }
		END { for (i = 1; i in r; i++) printf "%s%.2f", (i > 1 ? ", " : ""), v[i, x] / v[i, y] }' "$tmp/runs.tsv")
	awk -v x="$x" -v y="$y" -v rx="${rps[$x]}" -v ry="${rps[$y]}" -v cx="${cpu[$x]}" -v cy="${cpu[$y]}" \
		-v t="$target" -v pr="$per_round" -v cr="$cpu_round" 'BEGIN {
		q = rx / ry
		verdict = "-"
		if (t != "") verdict = (q >= t ? "met" : "NOT met") " (target >= " t ")"
		printf "| %s/%s | %.3f | %s | %.2f | %s | %s |\n", x, y, q, pr, cx / cy, cr, verdict
	}'
}
ratio_table() {
	echo "| ratio | throughput (medians) | throughput per round | Caddy CPU µs/req (medians) | CPU per round | target |"
	echo "| --- | ---: | --- | ---: | --- | --- |"
	ratio_row C A 0.97
	ratio_row D B 1.0
	ratio_row C B ""
}

runs_table() {
	echo "| round | site | req/s | p50 ms | p99 ms | Caddy CPU µs/req | servers CPU µs/req | API calls/req | verified/reached backend | peak RSS MB | errors | other load % |"
	echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }' "$tmp/runs.tsv"
}

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then commit+=" + uncommitted changes"; fi

{
	echo "# custom_auth benchmark"
	echo
	echo "- Command: \`$command_line\` (DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS THREADS=$THREADS WARMUP=$WARMUP)"
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- Machine: $(nproc) cores (nproc), ${cpu_model:-unknown CPU}, Linux $(uname -r)"
	echo "- Go $(go env GOVERSION), Caddy $("$tmp/caddy" version | awk '{ print $1 }'), $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), tree $commit"
	echo "- Load: \`wrk -t$THREADS -c$CONNS -d$DURATION --latency\` per run; rounds A B C D E interleaved, $ROUNDS round(s), after a $WARMUP warm-up per site."
	echo
	echo "## Medians per site"
	echo
	median_table
	echo
	echo "## Ratios"
	echo
	ratio_table
	echo
	echo "Throughput ratios above 1 mean the first site is faster; CPU ratios above 1 mean it"
	echo "costs Caddy more CPU per request."
	echo
	echo "## Every run"
	echo
	runs_table
	echo
	echo "## Notes"
	echo
	echo "- wrk, Caddy and the bench servers (backend and identity API in one process) share the"
	echo "  machine's $(nproc) cores, so a site that makes Caddy do more work per request also takes"
	echo "  CPU away from wrk and the servers. Throughput here is CPU-bound, not network-bound;"
	echo "  CPU µs per request is the most transferable number."
	echo "- Caddy CPU µs/req is utime+stime of the Caddy process over the run divided by the"
	echo "  requests wrk completed (clock ticks of 1/$clk_tck s). Servers CPU is the same for the"
	echo "  backend and identity API process."
	echo "- Other load % is the machine's busy CPU during the run that was neither Caddy, the"
	echo "  servers nor wrk, as a share of all $ncpu cores: work of other processes. Above a few"
	echo "  percent, the run was disturbed and its throughput and latency are not comparable."
	echo "- API calls/req counts identity API calls (POST /ca and GET /check) per completed request."
	echo "- verified/reached backend: requests that reached the backend carrying the identity set"
	echo "  by the gateway (X-Contact-Id: 2 for C and D, X-User-Id: 2 for B). The run fails if"
	echo "  more than CONNS ($CONNS) miss it: only requests in flight when wrk stops may."
	echo "- Stock reverse_proxy keeps at most 32 idle connections per upstream, fewer than the"
	echo "  $CONNS concurrent requests, so A to D open new backend connections under load (and B"
	echo "  new identity API connections too); it is Caddy's default and the same for every site."
	echo "- D also sets \`negative_ttl 0\`: with \`cache_ttl 0\` alone, concurrent requests for the"
	echo "  same token still share one API call, which would not be one call per request."
	echo "- $rss_note"
	for w in "${warnings[@]}"; do echo "- Warning: $w"; done
} >"$tmp/RESULTS.md"

cp "$tmp/RESULTS.md" bench/RESULTS.md
echo
median_table
echo
ratio_table
for w in "${warnings[@]}"; do echo "WARNING: $w"; done
echo
echo "bench: wrote bench/RESULTS.md" >&2
