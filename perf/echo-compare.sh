#!/usr/bin/env bash
# perf/echo-compare.sh: what echo costs and what a splice costs, measured in one run on this machine.
# Two relay-loadgen echo backends, a `relay agent` beside each, and one relay with two routes to
# the same cluster: "plain" (no echo) and "echoed" (raw codec, one shadow). Measures request/response
# and streaming through direct / plain / echoed (and redis-benchmark through plain / echoed resp routes
# when redis is installed), then drains an endpoint under load, kills a backend under 1,000 sessions, and reads the
# splice blackouts from /metrics. Prints a markdown table. See perf/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: perf/echo-compare.sh [options]

  --rounds N        rounds over the variants; each cell is the median (default 2)
  --seconds S       measured seconds per run (default 5)
  --drain-sessions N  sessions under load when an endpoint is drained (default 100)
  --idle-sessions N   idle sessions held on each route for the memory figure (default 1000; 0 skips)
  --kill-sessions N   rr sessions under load when a backend is killed with SIGKILL (default 1000)
  --no-build        use the existing published relay (artifacts/relay) and Release relay-loadgen
  --port-base N     first of the 10 loopback ports used (default 21500)
  --out FILE        also write the table to FILE
  --keep-logs       keep the temporary directory with every process's log
  -h, --help        this text
EOF
}

rounds=2
seconds=5
drain_sessions=100
idle_sessions=1000
kill_sessions=1000
build=1
port_base=21500
out_file=""
keep_logs=0
die() { echo "echo-compare.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive whole number"; rounds="$2"; shift ;;
        --seconds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--seconds needs a positive whole number"; seconds="$2"; shift ;;
        --drain-sessions) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--drain-sessions needs a positive whole number"; drain_sessions="$2"; shift ;;
        --kill-sessions) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--kill-sessions needs a positive whole number"; kill_sessions="$2"; shift ;;
        --idle-sessions) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--idle-sessions needs a whole number"; idle_sessions="$2"; shift ;;
        --no-build) build=0 ;;
        --port-base) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1024 && "$2" -le 65500 ]] || die "--port-base needs a port 1024-65500"; port_base="$2"; shift ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; out_file="$2"; shift ;;
        --keep-logs) keep_logs=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $keep_logs -eq 1 ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

relay_bin="$repo/artifacts/relay/relay"
loadgen_bin="$repo/perf/Relay.LoadGen/bin/Release/net10.0/relay-loadgen"
if [[ $build -eq 1 ]]; then
    log "building relay and relay-loadgen (Release)"
    "$repo/run-relay.sh" publish >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "relay does not publish"; }
    dotnet build -c Release "$repo/perf/Relay.LoadGen/Relay.LoadGen.csproj" >>"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "relay-loadgen does not build"; }
fi
[[ -x "$relay_bin" && -x "$loadgen_bin" ]] || die "relay or relay-loadgen missing (build them, or drop --no-build)"

p_a=$port_base; p_b=$((port_base + 1)); c_a=$((port_base + 2)); c_b=$((port_base + 3))
p_plain=$((port_base + 4)); p_echo=$((port_base + 5)); p_admin=$((port_base + 6))

wait_listen() { # PORT PID WHAT
    for _ in $(seq 1 200); do
        if ss -Hltn "sport = :$1" | grep -q .; then return 0; fi
        kill -0 "$2" 2>/dev/null || die "$3 exited (see $work)"
        sleep 0.05
    done
    die "$3 does not listen on $1"
}

export DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1
head -c 48 /dev/urandom | base64 >"$work/echo.psk"
head -c 24 /dev/urandom | base64 >"$work/admin.token"
chmod 600 "$work/echo.psk" "$work/admin.token"
token=$(cat "$work/admin.token")

"$loadgen_bin" --serve "127.0.0.1:$p_a" --duration 3600 >"$work/backend-a.log" 2>&1 & pids+=($!); wait_listen "$p_a" "$!" "backend a"
"$loadgen_bin" --serve "127.0.0.1:$p_b" --duration 3600 >"$work/backend-b.log" 2>&1 & pids+=($!); backend_b_pid=$!; wait_listen "$p_b" "$!" "backend b"
"$relay_bin" agent --id a --control "127.0.0.1:$c_a" --backend "127.0.0.1:$p_a" --path 127.0.0.1 --psk-file "$work/echo.psk" >"$work/agent-a.log" 2>&1 & pids+=($!); agent_a_pid=$!; wait_listen "$c_a" "$!" "agent a"
"$relay_bin" agent --id b --control "127.0.0.1:$c_b" --backend "127.0.0.1:$p_b" --path 127.0.0.1 --psk-file "$work/echo.psk" >"$work/agent-b.log" 2>&1 & pids+=($!); agent_b_pid=$!; wait_listen "$c_b" "$!" "agent b"

# Redis: two redis-servers with an agent each, a plain and an echoed (resp, 10 ms) route to them.
redis_routes=""; redis_cluster=""; redis=0
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    redis=1
    r_a=$((port_base + 7)); r_b=$((port_base + 8)); rc_a=$((port_base + 9)); rc_b=$((port_base + 10)); p_rplain=$((port_base + 11)); p_recho=$((port_base + 12))
    for port in $r_a $r_b; do
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis-$port.log" 2>&1 & pids+=($!); wait_listen "$port" "$!" "redis-server $port"
    done
    "$relay_bin" agent --id ra --control "127.0.0.1:$rc_a" --backend "127.0.0.1:$r_a" --path 127.0.0.1 --psk-file "$work/echo.psk" >"$work/agent-ra.log" 2>&1 & pids+=($!); wait_listen "$rc_a" "$!" "agent ra"
    "$relay_bin" agent --id rb --control "127.0.0.1:$rc_b" --backend "127.0.0.1:$r_b" --path 127.0.0.1 --psk-file "$work/echo.psk" >"$work/agent-rb.log" 2>&1 & pids+=($!); wait_listen "$rc_b" "$!" "agent rb"
    redis_routes=",
    \"redis-plain\": { \"listen\": \"127.0.0.1:$p_rplain\", \"cluster\": \"r\" },
    \"redis-echoed\": { \"listen\": \"127.0.0.1:$p_recho\", \"cluster\": \"r\", \"echo\": { \"codec\": \"resp\", \"shadows\": 1, \"interval\": \"10ms\" } }"
    redis_cluster=",
    \"r\": { \"endpoints\": { \"ra\": { \"address\": \"127.0.0.1:$r_a\", \"agent\": \"127.0.0.1:$rc_a\" }, \"rb\": { \"address\": \"127.0.0.1:$r_b\", \"agent\": \"127.0.0.1:$rc_b\" } } }"
fi

cat >"$work/relay.json" <<EOF
{
  "admin": { "listen": "127.0.0.1:$p_admin", "tokenFile": "$work/admin.token" },
  "echo": { "pskFile": "$work/echo.psk", "paths": ["127.0.0.1", "127.0.0.1"] },
  "routes": {
    "plain": { "listen": "127.0.0.1:$p_plain", "cluster": "c" },
    "echoed": { "listen": "127.0.0.1:$p_echo", "cluster": "c", "echo": { "codec": "raw", "shadows": 1, "interval": "5ms", "stateScope": "connection" } }$redis_routes
  },
  "clusters": { "c": { "endpoints": {
    "a": { "address": "127.0.0.1:$p_a", "agent": "127.0.0.1:$c_a", "zone": "z1" },
    "b": { "address": "127.0.0.1:$p_b", "agent": "127.0.0.1:$c_b", "zone": "z2" } } }$redis_cluster }
}
EOF
"$relay_bin" --config "$work/relay.json" --log-level warning >"$work/relay.log" 2>&1 & relay_pid=$!; pids+=($relay_pid)
wait_listen "$p_echo" "$relay_pid" "relay"
admin() { curl -fsS -H "Authorization: Bearer $token" "$@"; }
for _ in $(seq 1 100); do
    [[ $(admin "http://127.0.0.1:$p_admin/api/endpoints" 2>/dev/null | grep -o '"connected":true' | wc -l) -ge $((2 + 2 * redis)) ]] && break
    sleep 0.1
done

# Memory first, on a fresh relay (later load leaves heap behind that hides the sessions' own cost):
# the relay's RSS growth with N idle sessions on the plain route, then on the echoed one, and the
# growth of the two agents together (each echoed session has its one shadow on one of them).
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
agents_rss_kib() { echo $(($(rss_kib "$agent_a_pid") + $(rss_kib "$agent_b_pid"))); }
idle_rss() { # PORT -> "RELAY_GROWTH AGENTS_GROWTH" in KiB while N idle sessions are open
    local port=$1 before after agents_before agents_after lg
    before=$(rss_kib "$relay_pid"); agents_before=$(agents_rss_kib)
    "$loadgen_bin" idle --target "127.0.0.1:$port" --sessions "$idle_sessions" --size 16 --duration 8 >"$work/idle-$port.txt" 2>&1 & lg=$!
    for _ in $(seq 1 300); do grep -q '^ready:' "$work/idle-$port.txt" 2>/dev/null && break; sleep 0.1; done
    sleep 3
    after=$(rss_kib "$relay_pid"); agents_after=$(agents_rss_kib)
    wait $lg || true
    sleep 2
    echo "$((after - before)) $((agents_after - agents_before))"
}
mem_plain="-"; mem_echo="-"; mem_agents="-"
if [[ $idle_sessions -gt 0 ]]; then
    log "memory: $idle_sessions idle sessions on each route"
    read -r mem_plain _ < <(idle_rss "$p_plain")
    read -r mem_echo mem_agents < <(idle_rss "$p_echo")
fi

declare -A cells
record() { cells["$1|$2|$3|${4}"]+="$5 "; } # ROW METRIC VARIANT ROUND VALUE
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { echo "$1" | grep -o "\"$2\":[0-9.]*" | cut -d: -f2; }

run() { # KIND VARIANT PORT ROUND
    local kind=$1 v=$2 port=$3 r=$4 out json
    out="$work/$kind-$v-$r.txt"
    if [[ $kind == rr ]]; then
        timeout $((seconds + 30)) "$loadgen_bin" rr --target "127.0.0.1:$port" --sessions 16 --size 64 --duration "$seconds" --warmup 1 >"$out" 2>&1 || true
    else
        timeout $((seconds + 30)) "$loadgen_bin" stream --target "127.0.0.1:$port" --sessions 4 --size 64K --direction both --duration "$seconds" --warmup 1 >"$out" 2>&1 || true
    fi
    json=$(grep '^{' "$out" || true)
    [[ -n "$json" ]] || { log "$kind via $v: no result ($(tail -1 "$out"))"; return; }
    [[ "$(field "$json" errors)" == 0 ]] || log "$kind via $v: $(field "$json" errors) errors"
    if [[ $kind == rr ]]; then
        record "rr 16x64 B" ops "$v" "$r" "$(field "$json" ops_per_s)"
        record "rr 16x64 B" p99 "$v" "$r" "$(awk -v x="$(field "$json" p99_us)" 'BEGIN { printf "%.3f", x / 1000 }')"
    else
        record "stream 4x64 KiB both ways" gbit "$v" "$r" "$(field "$json" gbit_per_s)"
    fi
    log "$kind via $v (round $r): $(grep -v '^{' "$out" | tail -1)"
}

# Warm-up, not recorded: the first redis-benchmark through a route compiles its path in the relay and
# in the agents (the JIT took about half of an agent's CPU in such a run), a cost a running relay pays
# once. The loadgen runs below warm up on their own (--warmup 1).
if [[ $redis -eq 1 ]]; then
    for port in $p_rplain $p_recho; do
        timeout 60 redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 20000 -t set,get -P 1 -q >/dev/null 2>&1 || true
    done
fi

for r in $(seq 1 "$rounds"); do
    for v in direct plain echoed; do
        case $v in direct) port=$p_a ;; plain) port=$p_plain ;; echoed) port=$p_echo ;; esac
        run rr "$v" "$port" "$r"
        run stream "$v" "$port" "$r"
    done
    if [[ $redis -eq 1 ]]; then
        for v in plain echoed; do
            port=$p_rplain; [[ $v == echoed ]] && port=$p_recho
            rps=$(timeout 120 redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n 40000 -t set,get -P 1 --csv 2>/dev/null | awk -F'"' '/^"(SET|GET)"/ { s += $4; n++ } END { if (n) printf "%.0f", s / n }')
            record "redis-benchmark -P 1 SET+GET (10 ms interval)" rps "$v" "$r" "${rps:-0}"
            log "redis-benchmark via $v (round $r): ${rps:-none} req/s (mean of SET and GET)"
        done
    fi
done

# Drain under load: every echoed session on the busier endpoint moves to its shadow.
log "drain: $drain_sessions rr sessions on the echoed route, endpoint drained after 3 s"
timeout 60 "$loadgen_bin" rr --target "127.0.0.1:$p_echo" --sessions "$drain_sessions" --size 64 --duration 8 --warmup 0 >"$work/drain.txt" 2>&1 & lg=$!
sleep 3
victim=a
on_victim=$( (admin "http://127.0.0.1:$p_admin/api/endpoints/$victim" || true) | grep -o '"echoedSessionsHere":[0-9]*' | cut -d: -f2 || true)
admin -X POST "http://127.0.0.1:$p_admin/api/endpoints/$victim/drain" >"$work/drain-answer.json" || log "drain request failed"

wait $lg || true
drain_json=$(grep '^{' "$work/drain.txt" || echo '{}')
metrics=$(admin "http://127.0.0.1:$p_admin/metrics")
metric_sum() { echo "$metrics" | awk -v pat="$1" '$0 ~ pat { s += $NF } END { print s + 0 }'; }
spliced=$(metric_sum '^relay_splices_total[{].*trigger="drain",result="spliced"')
rolled=$(metric_sum '^relay_splices_total[{].*result="rolled_back"')
count=$(metric_sum '^relay_splice_blackout_seconds_count')
sum=$(metric_sum '^relay_splice_blackout_seconds_sum')
bucket_q() { # QUANTILE: the smallest bucket bound holding that share of blackouts
    echo "$metrics" | { grep '^relay_splice_blackout_seconds_bucket' || true; } | sed -E 's/.*le="([^"]+)"\} ([0-9.e+]+)/\1 \2/' | grep -v '^+Inf' | sort -g \
        | awk -v q="$1" -v n="$count" '$2 >= q * n { printf "%.3f", $1 * 1000; exit }'
}

# Failover under load: N rr sessions on the echoed route, the backend serving them killed with SIGKILL.
log "failover: $kill_sessions rr sessions on the echoed route, backend b killed after 4 s"
admin -X POST "http://127.0.0.1:$p_admin/api/endpoints/a/undrain" >/dev/null || true
timeout 90 "$loadgen_bin" rr --target "127.0.0.1:$p_echo" --sessions "$kill_sessions" --size 64 --duration 10 --warmup 0 --connect-concurrency 64 >"$work/kill.txt" 2>&1 & lg=$!
sleep 4
lost_before=$( (admin "http://127.0.0.1:$p_admin/metrics" || true) | awk '/^relay_echo_sessions_lost_total/ { s += $NF } END { print s + 0 }')
on_b=$( (admin "http://127.0.0.1:$p_admin/api/endpoints/b" || true) | grep -o '"echoedSessionsHere":[0-9]*' | cut -d: -f2 || true)
kill -9 "$backend_b_pid"
wait "$backend_b_pid" 2>/dev/null || true # reaped here, so bash does not report the SIGKILL it was sent on purpose
wait $lg || true
kill_json=$(grep '^{' "$work/kill.txt" || echo '{}')
metrics=$(admin "http://127.0.0.1:$p_admin/metrics")
lost_after=$(metric_sum '^relay_echo_sessions_lost_total')
failovers=$(metric_sum '^relay_splices_total[{].*trigger="primary_failure",result="spliced"')

table="$work/table.md"
{
    echo "| workload | metric | direct | plain relay | echoed relay (1 shadow) | echoed / plain |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    for row in "rr 16x64 B|ops|req/s" "rr 16x64 B|p99|p99 ms" "stream 4x64 KiB both ways|gbit|Gbit/s" "redis-benchmark -P 1 SET+GET (10 ms interval)|rps|req/s"; do
        IFS='|' read -r name metric label <<<"$row"
        d=$(for r in $(seq 1 "$rounds"); do echo "${cells["$name|$metric|direct|$r"]:-}"; done | median)
        p=$(for r in $(seq 1 "$rounds"); do echo "${cells["$name|$metric|plain|$r"]:-}"; done | median)
        e=$(for r in $(seq 1 "$rounds"); do echo "${cells["$name|$metric|echoed|$r"]:-}"; done | median)
        ratio=$(awk -v a="$e" -v b="$p" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        echo "| $name | $label | $d | $p | $e | $ratio |"
    done
    echo
    if [[ $idle_sessions -gt 0 ]]; then
        echo "Memory: relay RSS growth with $idle_sessions idle sessions (one 16-byte echo each): plain route $((mem_plain / 1024)) MiB ($((mem_plain / idle_sessions)) KiB per session), echoed route $((mem_echo / 1024)) MiB ($((mem_echo / idle_sessions)) KiB per session); the two agents together $((mem_agents / 1024)) MiB ($((mem_agents / idle_sessions)) KiB per shadow session)."
        echo
    fi
    echo "Drain under load ($drain_sessions rr sessions, endpoint $victim with $on_victim echoed sessions drained after 3 s):"
    echo "spliced $spliced, rolled back $rolled; blackout mean $(awk -v s="$sum" -v n="$count" 'BEGIN { if (n > 0) printf "%.3f", s / n * 1000; else print "-" }') ms,"
    echo "p50 <= $(bucket_q 0.5) ms, p99 <= $(bucket_q 0.99) ms (histogram bucket bounds); client errors $(field "$drain_json" errors),"
    echo "client p99 $(awk -v x="$(field "$drain_json" p99_us)" 'BEGIN { printf "%.3f", x / 1000 }') ms, max $(awk -v x="$(field "$drain_json" max_us)" 'BEGIN { printf "%.3f", x / 1000 }') ms over the 8 s run."
    echo
    echo "Failover under load ($kill_sessions rr sessions, backend b with ${on_b:-?} echoed sessions killed with SIGKILL after 4 s):"
    echo "failovers $failovers, sessions lost $((${lost_after%.*} - ${lost_before%.*})), client errors $(field "$kill_json" errors), connect failures $(field "$kill_json" connect_failures),"
    echo "client p99 $(awk -v x="$(field "$kill_json" p99_us)" 'BEGIN { printf "%.3f", x / 1000 }') ms, max $(awk -v x="$(field "$kill_json" max_us)" 'BEGIN { printf "%.3f", x / 1000 }') ms over the 10 s run."
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git -C "$repo" rev-parse --short HEAD), rounds $rounds x ${seconds} s; perf/echo-compare.sh"
} >"$table"
cat "$table"
[[ -z "$out_file" ]] || cp "$table" "$out_file"
