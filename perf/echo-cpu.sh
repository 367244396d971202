#!/usr/bin/env bash
# perf/echo-cpu.sh: where an echoed request's CPU goes. Two redis-servers with a `relay agent` each,
# one relay with a plain and an echoed (resp, 10 ms, one shadow) route to them; redis-benchmark -P 1
# runs through each route in turn, and every process's CPU time (/proc/PID/stat) and context switches
# over each run are divided by the requests it served. Prints one line per run and the medians.
# See perf/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; repo="$(cd "$here/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: perf/echo-cpu.sh [options]

  --rounds N          plain/echoed pairs of runs, after one unrecorded warm-up pair (default 3)
  --requests N        redis-benchmark -n for each of SET and GET (default 80000)
  --relay PATH        relay executable (default: artifacts/relay/relay, from ./run-relay.sh publish)
  --relay-env K=V     extra environment for the relay (repeatable)
  --agent-env K=V     extra environment for both agents (repeatable)
  --port-base N       first of the 7 loopback ports used (default 26100)
  -h, --help          this text
EOF
}

rounds=3; requests=80000; port_base=26100
relay_bin="$repo/artifacts/relay/relay"
relay_env=(); agent_env=()
die() { echo "echo-cpu.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive whole number"; rounds="$2"; shift ;;
        --requests) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--requests needs a positive whole number"; requests="$2"; shift ;;
        --relay) [[ $# -ge 2 ]] || die "--relay needs a path"; relay_bin="$2"; shift ;;
        --relay-env) [[ $# -ge 2 && "$2" == *=* ]] || die "--relay-env needs K=V"; relay_env+=("$2"); shift ;;
        --agent-env) [[ $# -ge 2 && "$2" == *=* ]] || die "--agent-env needs K=V"; agent_env+=("$2"); shift ;;
        --port-base) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1024 && "$2" -le 65500 ]] || die "--port-base needs a port 1024-65500"; port_base="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ -x "$relay_bin" ]] || die "no relay at $relay_bin (./run-relay.sh publish)"
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || die "needs redis-server and redis-benchmark (apt install redis-server redis-tools)"

# shellcheck source=perf/procs.sh
source "$here/procs.sh"

head -c 32 /dev/urandom | base64 >"$work/echo.psk"
head -c 24 /dev/urandom | base64 >"$work/admin.token"; token=$(cat "$work/admin.token")
r_a=$port_base; r_b=$((port_base + 1)); c_a=$((port_base + 2)); c_b=$((port_base + 3))
p_plain=$((port_base + 4)); p_echo=$((port_base + 5)); p_admin=$((port_base + 6))
redis-server --port "$r_a" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis-a.log" 2>&1 & pids+=($!); redis_a=$!
redis-server --port "$r_b" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis-b.log" 2>&1 & pids+=($!); redis_b=$!
wait_listen "$r_a" "$redis_a"; wait_listen "$r_b" "$redis_b"
env "${agent_env[@]}" "$relay_bin" agent --id ra --control "127.0.0.1:$c_a" --backend "127.0.0.1:$r_a" --path 127.0.0.1 --psk-file "$work/echo.psk" >"$work/agent-a.log" 2>&1 & pids+=($!); agent_a=$!
env "${agent_env[@]}" "$relay_bin" agent --id rb --control "127.0.0.1:$c_b" --backend "127.0.0.1:$r_b" --path 127.0.0.1 --psk-file "$work/echo.psk" >"$work/agent-b.log" 2>&1 & pids+=($!); agent_b=$!
wait_listen "$c_a" "$agent_a"; wait_listen "$c_b" "$agent_b"
cat >"$work/relay.json" <<EOF
{
  "admin": { "listen": "127.0.0.1:$p_admin", "tokenFile": "$work/admin.token" },
  "echo": { "pskFile": "$work/echo.psk", "paths": ["127.0.0.1", "127.0.0.1"] },
  "routes": {
    "plain": { "listen": "127.0.0.1:$p_plain", "cluster": "r" },
    "echoed": { "listen": "127.0.0.1:$p_echo", "cluster": "r", "echo": { "codec": "resp", "shadows": 1, "interval": "10ms" } }
  },
  "clusters": { "r": { "endpoints": {
    "ra": { "address": "127.0.0.1:$r_a", "agent": "127.0.0.1:$c_a" },
    "rb": { "address": "127.0.0.1:$r_b", "agent": "127.0.0.1:$c_b" } } } }
}
EOF
env "${relay_env[@]}" "$relay_bin" --config "$work/relay.json" --log-level warning >"$work/relay.log" 2>&1 & pids+=($!); relay=$!
wait_listen "$p_echo" "$relay"
for _ in $(seq 1 100); do
    [[ $(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$p_admin/api/endpoints" 2>/dev/null | grep -o '"connected":true' | wc -l) -ge 2 ]] && break
    sleep 0.1
done

names=(relay redis-a redis-b agent-a agent-b); procs=("$relay" "$redis_a" "$redis_b" "$agent_a" "$agent_b")
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'; }
hz=$(getconf CLK_TCK)
bench() { # PORT N -> mean req/s of SET and GET
    timeout 300 redis-benchmark -h 127.0.0.1 -p "$1" -c 50 -n "$2" -t set,get -P 1 --csv 2>/dev/null |
        awk -F'"' '/^"(SET|GET)"/ { s += $4; n++ } END { if (n) printf "%.0f", s / n; else print 0 }'
}

for port in $p_plain $p_echo; do bench "$port" 20000 >/dev/null; done # warm-up, not recorded
echo "# us of CPU per request (and the relay's context switches per request), redis-benchmark -c 50 -P 1 -n $requests SET+GET"
printf '%-7s %5s %8s' route round 'req/s'; printf ' %8s' "${names[@]}"; printf ' %8s %10s\n' total 'relay csw'
results="$work/results"
for r in $(seq 1 "$rounds"); do
    for v in plain echoed; do
        port=$p_plain; [[ $v == echoed ]] && port=$p_echo
        before=(); for p in "${procs[@]}"; do before+=("$(ticks "$p")"); done
        csw_before=$(switches "$relay")
        rps=$(bench "$port" "$requests")
        line=$(printf '%-7s %5s %8s' "$v" "$r" "$rps"); total=0
        for i in "${!procs[@]}"; do
            us=$(awk -v d=$(( $(ticks "${procs[$i]}") - ${before[$i]} )) -v n="$requests" -v hz="$hz" 'BEGIN { printf "%.1f", d * 1e6 / hz / (2 * n) }')
            total=$(awk -v a="$total" -v b="$us" 'BEGIN { print a + b }')
            line+=$(printf ' %8s' "$us")
        done
        csw=$(awk -v d=$(( $(switches "$relay") - csw_before )) -v n="$requests" 'BEGIN { printf "%.2f", d / (2 * n) }')
        line+=$(printf ' %8.1f %10s' "$total" "$csw")
        echo "$line"; echo "$line" >>"$results"
    done
done
awk '
    function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $1 == "plain" { p[++np] = $3; pr[np] = $4 } $1 == "echoed" { e[++ne] = $3; er[ne] = $4; ag[ne] = $7 + $8; q[ne] = $3 / p[ne] }
    END { printf "medians: plain %.0f req/s, echoed %.0f req/s, echoed/plain %.2f; relay %.1f -> %.1f us/request; agents %.1f us/request\n",
        median(p, np), median(e, ne), median(q, ne), median(pr, np), median(er, ne), median(ag, ne) }' "$results"
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
