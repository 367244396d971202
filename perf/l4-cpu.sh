#!/usr/bin/env bash
# perf/l4-cpu.sh: CPU per relayed request, Relay against HAProxy (mode tcp), on one plain L4 route.
# One redis-server; the relay (and, with --baseline, a second relay build) and HAProxy in front of it,
# each pinned to CPU 1 with redis and redis-benchmark on CPU 0; redis-benchmark GET runs through each
# proxy in turn, round after round, and each proxy's CPU time (/proc/PID/stat) over its run is divided
# by the requests. CPU per request is the steadier comparison on a shared machine: requests/s and
# p99 move with whatever else the host runs. See perf/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; repo="$(cd "$here/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: perf/l4-cpu.sh [options]

  --rounds N          rounds over every proxy, after one unrecorded warm-up (default 4)
  --requests N        redis-benchmark -n per run (default 100000)
  --pipeline N        redis-benchmark -P (default 1)
  --relay PATH        relay executable (default: artifacts/relay/relay, from ./run-relay.sh publish)
  --tuning JSON       the relays' "tuning" object (default {}), e.g. '{"epoll": false}' for Kestrel's
                      socket transport (a baseline too old to know a key refuses to start)
  --baseline PATH     also measure another relay build (e.g. one published from an older commit)
  --unpinned          do not pin with taskset
  --port-base N       first of the 5 loopback ports used (default 26600)
  -h, --help          this text
EOF
}

rounds=4; requests=100000; pipeline=1; port_base=26600; pin=1
relay_bin="$repo/artifacts/relay/relay"; baseline=""; tuning="{}"
die() { echo "l4-cpu.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive whole number"; rounds="$2"; shift ;;
        --requests) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--requests needs a positive whole number"; requests="$2"; shift ;;
        --pipeline) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--pipeline needs a positive whole number"; pipeline="$2"; shift ;;
        --relay) [[ $# -ge 2 ]] || die "--relay needs a path"; relay_bin="$2"; shift ;;
        --tuning) [[ $# -ge 2 && "$2" == \{*\} ]] || die "--tuning needs a JSON object"; tuning="$2"; shift ;;
        --baseline) [[ $# -ge 2 && -x "$2" ]] || die "--baseline needs an executable relay"; baseline="$2"; shift ;;
        --unpinned) pin=0 ;;
        --port-base) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1024 && "$2" -le 65500 ]] || die "--port-base needs a port 1024-65500"; port_base="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ -x "$relay_bin" ]] || die "no relay at $relay_bin (./run-relay.sh publish)"
for tool in redis-server redis-benchmark haproxy; do command -v "$tool" >/dev/null || die "needs $tool (apt install redis-server redis-tools haproxy)"; done
# shellcheck source=perf/pin.sh
source "$here/pin.sh"
check_pinning l4-cpu.sh

# shellcheck source=perf/procs.sh
source "$here/procs.sh"

p_redis=$port_base
$(on_cpu $load_cpu) redis-server --port "$p_redis" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 & pids+=($!)
wait_listen "$p_redis" "${pids[-1]}"

names=(); ports=(); procs=()
start_relay() { # NAME BIN PORT
    cat >"$work/$1.json" <<EOF
{ "tuning": $tuning,
  "routes": { "r": { "listen": "127.0.0.1:$3", "cluster": "c" } },
  "clusters": { "c": { "endpoints": { "e": { "address": "127.0.0.1:$p_redis" } } } } }
EOF
    $(on_cpu $proxy_cpu) "$2" --config "$work/$1.json" --admin off --log-level warning >"$work/$1.log" 2>&1 & pids+=($!)
    wait_listen "$3" "${pids[-1]}"
    names+=("$1"); ports+=("$3"); procs+=("${pids[-1]}")
}
start_relay relay "$relay_bin" $((port_base + 1))
[[ -n "$baseline" ]] && start_relay baseline "$baseline" $((port_base + 2))
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen r
  bind 127.0.0.1:$((port_base + 3))
  server s 127.0.0.1:$p_redis
EOF
$(on_cpu $proxy_cpu) haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 & pids+=($!)
wait_listen $((port_base + 3)) "${pids[-1]}"
names+=(haproxy); ports+=($((port_base + 3))); procs+=("${pids[-1]}")

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
bench() { # PORT N -> "req/s p99"
    timeout 300 $(on_cpu $load_cpu) redis-benchmark -h 127.0.0.1 -p "$1" -c 50 -n "$2" -t get -P "$pipeline" --csv 2>/dev/null |
        awk -F'"' '/^"GET"/ { print $4, $14 }'
}
for port in "${ports[@]}"; do bench "$port" 20000 >/dev/null; done # warm-up, not recorded

echo "# redis-benchmark -c 50 -P $pipeline -n $requests GET; proxy CPU (user+system) per request"
printf '%-9s %5s %9s %8s %10s\n' proxy round 'req/s' 'p99 ms' 'us/request'
results="$work/results"
for r in $(seq 1 "$rounds"); do
    for i in "${!names[@]}"; do
        before=$(ticks "${procs[$i]}")
        read -r rps p99 < <(bench "${ports[$i]}" "$requests")
        us=$(awk -v d=$(( $(ticks "${procs[$i]}") - before )) -v n="$requests" -v hz="$hz" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
        printf '%-9s %5s %9.0f %8s %10s\n' "${names[$i]}" "$r" "$rps" "$p99" "$us" | tee -a "$results"
    done
done
awk '
    function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { n[$1]++; rps[$1, n[$1]] = $3; p99[$1, n[$1]] = $4; us[$1, n[$1]] = $5 }
    END {
        for (name in n) {
            delete a; delete b; delete c
            for (i = 1; i <= n[name]; i++) { a[i] = rps[name, i]; b[i] = p99[name, i]; c[i] = us[name, i] }
            m_rps[name] = median(a, n[name]); m_p99[name] = median(b, n[name]); m_us[name] = median(c, n[name])
        }
        printf "medians:"
        for (name in n) printf " %s %.0f req/s, p99 %.3f ms, %.1f us/request;", name, m_rps[name], m_p99[name], m_us[name]
        printf "\nrelay/haproxy: requests/s %.2f, p99 %.2f, CPU per request %.2f\n", m_rps["relay"] / m_rps["haproxy"], m_p99["relay"] / m_p99["haproxy"], m_us["relay"] / m_us["haproxy"]
        if ("baseline" in n) printf "relay/baseline: CPU per request %.2f\n", m_us["relay"] / m_us["baseline"]
    }' "$results"
placement="pinned: proxies on CPU $proxy_cpu, redis and redis-benchmark on CPU $load_cpu"; [[ $pin -eq 1 ]] || placement="unpinned"
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $placement, load $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
