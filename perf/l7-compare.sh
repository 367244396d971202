#!/usr/bin/env bash
# perf/l7-compare.sh: HTTP/1.1 requests/s and latency with wrk, in one run on this machine, against
# a small static response: direct to the backend, through HAProxy (mode http), through Relay's L7
# route, through a Relay L7 route that mirrors every request to one shadow (with enough copies in
# flight to send them all), and through one that mirrors with the default bound (and sheds copies). Prints a markdown
# table with the ratios. See docs/benchmarks.md ("L7 HTTP relay against HAProxy").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: perf/l7-compare.sh [options]

  --duration S        seconds per measured wrk run (default 10)
  --rounds N          rounds over all variants; each cell is the median (default 3)
  --warmup S          unrecorded wrk seconds per variant before the first round (default 10: the
                      relay's tiered JIT recompiles Kestrel's, YARP's and HttpClient's hot paths on
                      the proxy's one CPU for several seconds; a 3 s warm-up left round 1 at
                      59 us of CPU per request against 37 in round 2)
  --connections N     wrk connections (default 64)
  --threads N         wrk threads (default 2)
  --unpinned          do not pin with taskset (default: proxy on CPU 1; wrk and backends on CPU 0)
  --no-build          use the existing published relay (artifacts/relay) and build of perf/l7-backend.cs
  --relay-bin PATH    run this relay executable instead of the published one (artifacts/relay/relay) (a copy
                      of an older build, say, to compare two versions one run after the other;
                      the worktree is still built unless --no-build)
  --relay-env K=V     extra environment for the relay (repeatable)
  --mirror-concurrency N  copies in flight to the shadow (route mirror.concurrency, default 64)
  --port-base N       first of the 7 loopback ports used (default 21400)
  --out FILE          also write the table to FILE
  --keep-logs         keep the temporary directory with every process's log
  -h, --help          this text

The backend is perf/l7-backend.cs, a Kestrel app with no middleware that answers every request
with the same 31-byte text body (run as a .NET 10 file-based app). The shadow of the mirroring
run is a second instance of it. Needs wrk, haproxy, taskset, ss, dotnet; when run as root and wrk
or haproxy is missing, installs it with apt-get.
EOF
}

duration=10
rounds=3
warmup=10
connections=64
threads=2
pin=1
build=1
# The relay turns the thread pool's spin-wait off itself (docs/operations.md, "Tuning"); this script
# used to set DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 for it.
relay_env=()
port_base=21400
mirror_concurrency=64
out_file=""
keep_logs=0
relay_bin_override=""

die() { echo "l7-compare.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--duration needs seconds"; duration="$2"; shift ;;
        --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive whole number"; rounds="$2"; shift ;;
        --warmup) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--warmup needs a positive whole number of seconds"; warmup="$2"; shift ;;
        --connections) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--connections needs a number"; connections="$2"; shift ;;
        --threads) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--threads needs a number"; threads="$2"; shift ;;
        --unpinned) pin=0 ;;
        --no-build) build=0 ;;
        --relay-env) [[ $# -ge 2 && "$2" == *=* ]] || die "--relay-env needs K=V"; relay_env+=("$2"); shift ;;
        --mirror-concurrency) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--mirror-concurrency needs a number"; mirror_concurrency="$2"; shift ;;
        --port-base) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--port-base needs a port"; port_base="$2"; shift ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; out_file="$2"; shift ;;
        --relay-bin) [[ $# -ge 2 ]] || die "--relay-bin needs a path"; relay_bin_override="$2"; shift ;;
        --keep-logs) keep_logs=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

# ---------------------------------------------------------------- tools
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
if [[ ${#need[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
    else
        die "missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root"
    fi
fi
for tool in taskset ss awk curl dotnet; do command -v "$tool" >/dev/null || die "missing $tool"; done
source "$here/pin.sh"   # on_cpu, load_cpu, proxy_cpu, check_pinning
check_pinning l7-compare.sh
client_cpu=$load_cpu

relay_bin="${relay_bin_override:-$repo/artifacts/relay/relay}"
backend_out="$repo/perf/bin/l7-backend"
if [[ $build -eq 1 ]]; then
    echo "building relay and the backend (Release)..." >&2
    "$repo/run-relay.sh" publish >/dev/null || die "relay publish failed"
    dotnet build -c Release "$repo/perf/l7-backend.cs" -o "$backend_out" -v quiet -nologo >/dev/null || die "backend build failed"
fi
[[ -x "$relay_bin" ]] || die "no relay at $relay_bin (build it, or drop --no-build)"
[[ -f "$backend_out/l7-backend.dll" ]] || die "no backend at $backend_out (drop --no-build)"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d /tmp/l7-compare.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $keep_logs -eq 1 ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

p_backend=$port_base; p_shadow=$((port_base + 1)); p_haproxy=$((port_base + 2))
p_relay=$((port_base + 3)); p_mirror=$((port_base + 4)); p_admin=$((port_base + 5)); p_shed=$((port_base + 6))
for p in $p_backend $p_shadow $p_haproxy $p_relay $p_mirror $p_admin $p_shed; do
    ss -Htln "sport = :$p" | grep -q . && die "port $p is in use (try --port-base)"
done

wait_listen() { # PORT PID NAME
    for _ in $(seq 1 200); do
        ss -Htln "sport = :$1" | grep -q . && return 0
        kill -0 "$2" 2>/dev/null || { echo "$3 exited" >&2; return 1; }
        sleep 0.05
    done
    echo "$3 did not listen on $1" >&2; return 1
}

# ---------------------------------------------------------------- processes
export DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1
$(on_cpu $client_cpu) dotnet "$backend_out/l7-backend.dll" "$p_backend" >"$work/backend.log" 2>&1 &
pids+=($!); wait_listen $p_backend $! backend || die "backend did not start"
$(on_cpu $client_cpu) dotnet "$backend_out/l7-backend.dll" "$p_shadow" >"$work/shadow.log" 2>&1 &
pids+=($!); wait_listen $p_shadow $! shadow || die "shadow backend did not start"

cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    maxconn 9000
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend web
    bind 127.0.0.1:$p_haproxy
    default_backend app
backend app
    server b1 127.0.0.1:$p_backend
EOF
$(on_cpu $proxy_cpu) haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!); haproxy_pid=$!; wait_listen $p_haproxy $! haproxy || die "haproxy did not start (see $work/haproxy.log)"

cat >"$work/relay.json" <<EOF
{
  "admin": { "listen": "127.0.0.1:$p_admin" },
  "routes": {
    "web": { "protocol": "http", "listen": "127.0.0.1:$p_relay", "cluster": "app" },
    "web-mirror": { "protocol": "http", "listen": "127.0.0.1:$p_mirror", "cluster": "app",
                    "mirror": { "shadows": ["sh"], "percent": 100, "concurrency": $mirror_concurrency } },
    "web-mirror-shed": { "protocol": "http", "listen": "127.0.0.1:$p_shed", "cluster": "app",
                    "mirror": { "shadows": ["sh"], "percent": 100 } }
  },
  "clusters": {
    "app": { "endpoints": { "b1": { "address": "127.0.0.1:$p_backend" } } },
    "shadow": { "endpoints": { "sh": { "address": "127.0.0.1:$p_shadow" } } }
  }
}
EOF
export RELAY_ADMIN_TOKEN="l7-compare-token-$$-$RANDOM"
env "${relay_env[@]}" $(on_cpu $proxy_cpu) "$relay_bin" --config "$work/relay.json" >"$work/relay.out" 2>"$work/relay.log" &
pids+=($!); relay_pid=$!
wait_listen $p_relay $relay_pid relay || { tail -5 "$work/relay.log" >&2; die "relay did not start"; }
wait_listen $p_mirror $relay_pid relay || die "relay did not start"
wait_listen $p_shed $relay_pid relay || die "relay did not start"

# ---------------------------------------------------------------- measure
to_ms() { # wrk latency such as 512.00us, 1.20ms, 1.01s
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "nan" }'
}

cpu_ticks() { # PID -> user+system clock ticks so far (0 when no pid)
    [[ -n "$1" && -r /proc/$1/stat ]] || { echo 0; return; }
    awk '{print $14 + $15}' "/proc/$1/stat"
}

runq_wait_ns() { # PID -> nanoseconds its threads have spent runnable but not running (0 when no pid)
    [[ -n "$1" && -d /proc/$1/task ]] || { echo 0; return; }
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $2 } END { printf "%.0f", s }'
}

run_wrk() { # PORT SECONDS [PROXY_PID] -> "rps p50ms p99ms cpu_us_per_request proxy_cpu_percent proxy_wait_percent"
    local out before after wait_before wait_after
    before="$(cpu_ticks "${3:-}")"
    wait_before="$(runq_wait_ns "${3:-}")"
    out="$($(on_cpu $client_cpu) wrk -t"$threads" -c"$connections" -d"$2"s --latency "http://127.0.0.1:$1/" 2>&1)" || { echo "nan nan nan nan nan nan"; return; }
    after="$(cpu_ticks "${3:-}")"
    wait_after="$(runq_wait_ns "${3:-}")"
    local errors rps p50 p99
    errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")"
    [[ -n "$errors" ]] && echo "port $1: $errors" >&2
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    local total cpu
    total="$(awk '/requests in/ {print $1}' <<<"$out")"
    cpu="$(awk -v t="$((after - before))" -v n="${total:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0 && t > 0) printf "%.1f", t * 1e6 / hz / n; else print "nan" }')"
    # The proxy's CPU time over the run's wall time, and the time its threads were runnable but
    # not running (summed over threads, so it can pass 100). On a shared machine a high wait means
    # other processes had the proxy's CPU: its requests/s then says more about them than about it.
    local share wait
    share="$(awk -v t="$((after - before))" -v d="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (t > 0) printf "%.0f", t * 100 / hz / d; else print "nan" }')"
    wait="$(awk -v w="$((wait_after - wait_before))" -v d="$2" -v p="${3:-}" 'BEGIN { if (p != "") printf "%.0f", w / 1e7 / d; else print "nan" }')"
    echo "${rps:-nan} $p50 $p99 $cpu $share $wait"
}

median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

variants=(direct haproxy relay relay-mirror relay-mirror-shed)
declare -A port=([direct]=$p_backend [haproxy]=$p_haproxy [relay]=$p_relay [relay-mirror]=$p_mirror [relay-mirror-shed]=$p_shed)
declare -A proxy_pid=([direct]="" [haproxy]=$haproxy_pid [relay]=$relay_pid [relay-mirror]=$relay_pid [relay-mirror-shed]=$relay_pid)
declare -A samples
echo "warming up ($warmup s each)..." >&2
for v in "${variants[@]}"; do run_wrk "${port[$v]}" "$warmup" >/dev/null; done
for r in $(seq 1 "$rounds"); do
    for v in "${variants[@]}"; do
        result="$(run_wrk "${port[$v]}" "$duration" "${proxy_pid[$v]}")"
        echo "round $r $v: $result" >&2
        samples[$v]+="$result"$'\n'
    done
done

metric() { curl -s -H "Authorization: Bearer $RELAY_ADMIN_TOKEN" "http://127.0.0.1:$p_admin/metrics" | awk -v k="$1" 'index($0, k " ") == 1 {print $2}'; }
copies() { # ROUTE -> "queued Q, dropped D, compared equal M"
    echo "queued $(metric "relay_http_mirror_total{route=\"$1\",shadow=\"sh\",result=\"queued\"}"), dropped $(metric "relay_http_mirror_total{route=\"$1\",shadow=\"sh\",result=\"dropped\"}"), compared equal $(metric "relay_http_mirror_compare_total{route=\"$1\",shadow=\"sh\",result=\"match\"}")"
}
relay_rss="$(awk '/VmHWM/ {print $2}' /proc/$relay_pid/status 2>/dev/null || echo nan)"

declare -A rps p50 p99 cpu share wait
for v in "${variants[@]}"; do
    wait[$v]="$(awk 'NF {print $6}' <<<"${samples[$v]}" | median)"
    cpu[$v]="$(awk 'NF {print $4}' <<<"${samples[$v]}" | median)"
    share[$v]="$(awk 'NF {print $5}' <<<"${samples[$v]}" | median)"
    rps[$v]="$(awk 'NF {print $1}' <<<"${samples[$v]}" | median)"
    p50[$v]="$(awk 'NF {print $2}' <<<"${samples[$v]}" | median)"
    p99[$v]="$(awk 'NF {print $3}' <<<"${samples[$v]}" | median)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }'; }

{
    echo "| variant | requests/s | p50 ms | p99 ms | vs direct | vs HAProxy | proxy CPU µs/request | proxy CPU % | proxy runnable-wait % |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for v in "${variants[@]}"; do
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$v" "${rps[$v]}" "${p50[$v]}" "${p99[$v]}" "$(ratio "${rps[$v]}" "${rps[direct]}")" "$(ratio "${rps[$v]}" "${rps[haproxy]}")" "${cpu[$v]}" "${share[$v]}" "${wait[$v]}"
    done
    echo
    echo "relay-mirror vs relay: requests/s $(ratio "${rps[relay-mirror]}" "${rps[relay]}"), p99 +$(awk -v a="${p99[relay-mirror]}" -v b="${p99[relay]}" 'BEGIN {printf "%.3f", a - b}') ms"
    echo "relay-mirror-shed vs relay: requests/s $(ratio "${rps[relay-mirror-shed]}" "${rps[relay]}"), p99 +$(awk -v a="${p99[relay-mirror-shed]}" -v b="${p99[relay]}" 'BEGIN {printf "%.3f", a - b}') ms"
    echo "copies over the whole run (warm-up included): relay-mirror (concurrency $mirror_concurrency): $(copies web-mirror); relay-mirror-shed (default concurrency 4, queue 1024): $(copies web-mirror-shed)"
    echo "relay peak RSS: ${relay_rss} KiB"
    echo "wrk -t$threads -c$connections -d${duration}s --latency, median of $rounds round(s); $(nproc) CPUs, pinned=$pin (proxy CPU $proxy_cpu; wrk and backends CPU $client_cpu); load average before: $load_before"
} | tee "${out_file:-/dev/null}"
