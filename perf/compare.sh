#!/usr/bin/env bash
# perf/compare.sh: measure, in one run, a direct connection vs HAProxy (mode tcp) vs Relay with
# real unmodified tools (redis-benchmark against redis-server, iperf3), plus the relay's memory
# under 5,000 idle sessions (its /metrics scraped every 5 s, as an operator would). Prints a markdown
# table. See perf/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: perf/compare.sh [options]

Measures direct vs HAProxy (mode tcp) vs Relay in one run on this machine and prints a table of
throughput, p50/p99 latency and the ratios Relay/HAProxy and Relay/direct.

  --quick             short run (~2 minutes): 1 round, shorter tests, shorter memory hold
  --rounds N          rounds over all variants; each cell is the median (default 2, quick 1)
  --unpinned          do not pin with taskset (default: proxy on CPU 1, client and server on CPU 0)
  --no-build          use the existing published relay (artifacts/relay) and Release relay-loadgen
  --relay PATH        relay executable (default artifacts/relay/relay, from ./run-relay.sh publish)
  --relay-rev REV     build the relay from git revision REV (exported to a temporary directory with
                      git archive, so a half-edited working tree does not matter), e.g. HEAD
  --relay-env K=V     extra environment for the relay process (repeatable), e.g.
                      --relay-env DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1
  --skip-relay        measure only direct and HAProxy
  --skip-memory       skip the 5,000 idle sessions memory test
  --only LIST         comma list of groups to run: redis,iperf,loadgen,memory (default all)
  --port-base N       first of the 20 loopback ports used (default 21300; keep below the ephemeral range)
  --out FILE          also write the table (markdown) to FILE
  --keep-logs         keep the temporary directory with every process's log
  -h, --help          this text

Needs redis-server, redis-benchmark, iperf3, haproxy, taskset, ss, dotnet; when run as root
and one is missing, installs it with apt-get (redis-server redis-tools iperf3 haproxy).
EOF
}

# ---------------------------------------------------------------- options
quick=0
rounds=""
pin=1
build=1
relay_bin="$repo/artifacts/relay/relay"
relay_env=()
relay_rev=""
skip_relay=0
only="redis,iperf,loadgen,memory"
port_base=21300
out_file=""
keep_logs=0

die() { echo "compare.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1 ;;
        --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive whole number"; rounds="$2"; shift ;;
        --unpinned) pin=0 ;;
        --no-build) build=0 ;;
        --relay) [[ $# -ge 2 ]] || die "--relay needs a path"; relay_bin="$2"; shift ;;
        --relay-rev) [[ $# -ge 2 ]] || die "--relay-rev needs a git revision"; relay_rev="$2"; shift ;;
        --relay-env) [[ $# -ge 2 && "$2" == *=* ]] || die "--relay-env needs K=V"; relay_env+=("$2"); shift ;;
        --skip-relay) skip_relay=1 ;;
        --skip-memory) only="${only//memory/}" ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a list"; only="$2"; shift
            for g in ${only//,/ }; do [[ "$g" =~ ^(redis|iperf|loadgen|memory)$ ]] || die "--only: unknown group '$g'"; done ;;
        --port-base) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1024 && "$2" -le 65500 ]] || die "--port-base needs a port 1024-65500"; port_base="$2"; shift ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; out_file="$2"; shift ;;
        --keep-logs) keep_logs=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

group() { [[ ",$only," == *",$1,"* ]]; }

if [[ $quick -eq 1 ]]; then
    : "${rounds:=1}"
    redis_n_p1=40000; redis_n_warmup=20000; redis_n_p16=400000; iperf_seconds=3; loadgen_seconds=3; mem_hold=12
else
    : "${rounds:=2}"
    redis_n_p1=60000; redis_n_warmup=40000; redis_n_p16=600000; iperf_seconds=3; loadgen_seconds=3; mem_hold=20
fi
redis_clients=50
redis_tests="set,get"
mem_sessions=5000

# Ports: all on 127.0.0.1.
p_redis=$((port_base + 0)); p_iperf=$((port_base + 1)); p_echo=$((port_base + 2))
# iperf3 -s serves one test at a time and takes any connection as a client, so the relay's active
# health probes would break tests of other variants on a shared server: each variant gets its own.
p_iperf_ha=$((port_base + 3)); p_iperf_rl=$((port_base + 4))
p_ha_redis=$((port_base + 10)); p_ha_iperf=$((port_base + 11)); p_ha_echo=$((port_base + 12)); p_ha_mem=$((port_base + 13))
p_rl_redis=$((port_base + 15)); p_rl_iperf=$((port_base + 16)); p_rl_echo=$((port_base + 17)); p_rl_mem=$((port_base + 18))
p_rl_admin=$((port_base + 19)); p_rl_mem_admin=$((port_base + 14))

# ---------------------------------------------------------------- processes and cleanup
work="$(mktemp -d /tmp/relay-compare.XXXXXX)"
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    if [[ $keep_logs -eq 1 ]]; then
        echo "logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# stop PID: end one process this script started.
stop() {
    local pid="$1" keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${pids[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# on_cpu, load_cpu, proxy_cpu, check_pinning
source "$here/pin.sh"

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# wait_listen PORT PID NAME: wait until PORT listens (or PID dies).
wait_listen() {
    local port="$1" pid="$2" name="$3"
    for _ in $(seq 1 150); do
        listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { echo "compare.sh: $name exited before listening on $port" >&2; return 1; }
        sleep 0.1
    done
    echo "compare.sh: $name did not listen on $port within 15 s" >&2
    return 1
}

# wait_line FILE TEXT PID SECONDS: wait until FILE contains TEXT (or PID dies).
wait_line() {
    local file="$1" text="$2" pid="$3" seconds="$4"
    for _ in $(seq 1 $((seconds * 10))); do
        grep -q -- "$text" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "nan"; }

# ---------------------------------------------------------------- prerequisites
need_install=()
command -v redis-server >/dev/null || need_install+=(redis-server)
command -v redis-benchmark >/dev/null || need_install+=(redis-tools)
command -v iperf3 >/dev/null || need_install+=(iperf3)
command -v haproxy >/dev/null || need_install+=(haproxy)
if [[ ${#need_install[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${need_install[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_install[@]}" >"$work/apt.log" 2>&1 \
            || { apt-get update >>"$work/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_install[@]}" >>"$work/apt.log" 2>&1; } \
            || die "apt-get install ${need_install[*]} failed (see $work/apt.log)"
    else
        die "missing ${need_install[*]}; install them (apt-get install -y redis-server redis-tools iperf3 haproxy) or run as root"
    fi
fi
for tool in taskset ss awk; do command -v "$tool" >/dev/null || die "missing $tool"; done

cpus=$(nproc)
check_pinning compare.sh
# Pinned: HAProxy gets one thread on the proxy CPU, as Relay gets one CPU. Unpinned: both may use every CPU.
ha_threads=1
[[ $pin -eq 1 ]] || ha_threads=$cpus

# 5,000 idle sessions through a proxy: 10,000 sockets in the proxy process.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt 12000 ]] && group memory; then
    log "open-file limit is $(ulimit -n) (< 12000): the memory test may fail; run as root or raise the hard limit"
fi

read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { eph_lo=32768; eph_hi=60999; }
if [[ $((port_base + 19)) -ge $eph_lo && $port_base -le $eph_hi ]]; then
    log "warning: ports $port_base-$((port_base + 19)) overlap the ephemeral range $eph_lo-$eph_hi; a listener may find its port taken by an outgoing connection"
fi
for port in $p_redis $p_iperf $p_iperf_ha $p_iperf_rl $p_echo $p_ha_redis $p_ha_iperf $p_ha_echo $p_ha_mem $p_rl_redis $p_rl_iperf $p_rl_echo $p_rl_mem $p_rl_admin $p_rl_mem_admin; do
    listening "$port" && die "port $port is already in use on this machine; pick another --port-base"
done

# ---------------------------------------------------------------- builds
loadgen_bin="$repo/perf/Relay.LoadGen/bin/Release/net10.0/relay-loadgen"
relay_state="not tried"
if [[ $build -eq 1 ]]; then
    log "building relay-loadgen (Release)"
    dotnet build -c Release "$repo/perf/Relay.LoadGen/Relay.LoadGen.csproj" >"$work/build-loadgen.log" 2>&1 \
        || { tail -20 "$work/build-loadgen.log" >&2; die "relay-loadgen does not build"; }
    if [[ $skip_relay -eq 0 && -n "$relay_rev" ]]; then
        :  # built below, with or without --no-build
    elif [[ $skip_relay -eq 0 && "$relay_bin" == "$repo/artifacts/relay/relay" ]]; then
        log "publishing relay (./run-relay.sh publish)"
        if ! "$repo/run-relay.sh" publish >"$work/build-relay.log" 2>&1; then
            relay_state="does not publish (./run-relay.sh publish failed)"
            log "relay: $relay_state"
            grep -E "error" "$work/build-relay.log" | sort -u | head -5 >&2 || true
        fi
    fi
fi
if [[ $skip_relay -eq 0 && -n "$relay_rev" ]]; then
    # Resolve once: HEAD may move while we build.
    relay_commit=$(git -C "$repo" rev-parse --short "$relay_rev^{commit}" 2>/dev/null) || die "--relay-rev: '$relay_rev' is not a commit"
    relay_rev="$relay_rev = $relay_commit"
    log "building relay from $relay_rev in $work/src"
    mkdir -p "$work/src"
    if ! git -C "$repo" archive "$relay_commit" | tar -x -C "$work/src"; then
        relay_state="cannot export $relay_rev"
    elif grep -q '^publish_relay()' "$work/src/run-relay.sh" 2>/dev/null; then
        # Published as the revision's own run-relay.sh does it (Native AOT since 94c691a).
        relay_bin="$work/src/artifacts/relay/relay"
        "$work/src/run-relay.sh" publish >"$work/build-relay.log" 2>&1 || relay_state="does not publish at $relay_rev"
    else
        relay_bin="$work/src/src/Relay/bin/Release/net10.0/relay"
        if ! dotnet build -c Release "$work/src/src/Relay/Relay.csproj" >"$work/build-relay.log" 2>&1; then
            relay_state="does not build at $relay_rev"
            grep -E "error" "$work/build-relay.log" | sort -u | head -5 >&2 || true
        fi
    fi
fi
[[ -x "$loadgen_bin" ]] || die "relay-loadgen not found at $loadgen_bin (build it, or drop --no-build)"

# ---------------------------------------------------------------- servers (CPU 0)
log "starting redis-server :$p_redis, iperf3 -s :$p_iperf :$p_iperf_ha :$p_iperf_rl, echo backend :$p_echo (pinned: $([[ $pin -eq 1 ]] && echo "load CPU $load_cpu, proxy CPU $proxy_cpu" || echo no))"
$(on_cpu $load_cpu) redis-server --port "$p_redis" --bind 127.0.0.1 --save '' --appendonly no \
    --protected-mode no --daemonize no --maxclients 10000 >"$work/redis.log" 2>&1 &
pids+=($!); redis_pid=$!
iperf_pids=()
for port in $p_iperf $p_iperf_ha $p_iperf_rl; do
    $(on_cpu $load_cpu) iperf3 -s -B 127.0.0.1 -p "$port" >"$work/iperf3-server-$port.log" 2>&1 &
    pids+=($!); iperf_pids+=($!)
done
env DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 $(on_cpu $load_cpu) "$loadgen_bin" --serve "127.0.0.1:$p_echo" --duration 3600 >"$work/echo.log" 2>&1 &
pids+=($!); echo_pid=$!
wait_listen "$p_redis" "$redis_pid" redis-server || die "redis-server did not start (see $work/redis.log)"
wait_listen "$p_iperf" "${iperf_pids[0]}" "iperf3 -s" || die "iperf3 -s did not start"
wait_listen "$p_iperf_ha" "${iperf_pids[1]}" "iperf3 -s" || die "iperf3 -s did not start"
wait_listen "$p_iperf_rl" "${iperf_pids[2]}" "iperf3 -s" || die "iperf3 -s did not start"
wait_listen "$p_echo" "$echo_pid" "relay-loadgen --serve" || die "echo backend did not start"

# ---------------------------------------------------------------- proxies (CPU 1)
write_haproxy_cfg() { # FILE then pairs of LISTEN UPSTREAM
    local file="$1"; shift
    {
        printf 'global\n    nbthread %s\n    maxconn 9000\n\n' "$ha_threads"
        printf 'defaults\n    mode tcp\n    maxconn 9000\n    timeout connect 5s\n    timeout client 5m\n    timeout server 5m\n'
        local i=0
        while [[ $# -gt 0 ]]; do
            printf '\nlisten l%s\n    bind 127.0.0.1:%s\n    server s%s 127.0.0.1:%s\n' "$i" "$1" "$i" "$2"
            shift 2; i=$((i + 1))
        done
    } >"$file"
}

# start_haproxy NAME then pairs: starts it on the proxy CPU; sets started_pid.
start_haproxy() {
    local name="$1"; shift
    write_haproxy_cfg "$work/$name.cfg" "$@"
    $(on_cpu $proxy_cpu) haproxy -db -f "$work/$name.cfg" >"$work/$name.log" 2>&1 &
    started_pid=$!; pids+=("$started_pid")
    while [[ $# -gt 0 ]]; do
        wait_listen "$1" "$started_pid" haproxy || { tail -5 "$work/$name.log" >&2; return 1; }
        shift 2
    done
}

# start_relay NAME ADMINPORT then pairs: starts it on the proxy CPU; sets started_pid; returns 1 (with relay_state) on failure.
start_relay() {
    local name="$1" admin_port="$2"; shift 2
    local args=()
    local pairs=("$@")
    while [[ $# -gt 0 ]]; do args+=(--route "127.0.0.1:$1=127.0.0.1:$2"); shift 2; done
    if [[ ! -x "$relay_bin" ]]; then
        [[ "$relay_state" == "not tried" ]] && relay_state="not found at $relay_bin"
        return 1
    fi
    # Each instance gets its own admin port in our range (the default 9901 may be taken, and two
    # instances run at once), when this relay has the flag.
    if "$relay_bin" --help 2>/dev/null | grep -q -- '--admin '; then
        args+=(--admin "127.0.0.1:$admin_port")
    fi
    env "${relay_env[@]+"${relay_env[@]}"}" $(on_cpu $proxy_cpu) "$relay_bin" "${args[@]}" >"$work/$name.log" 2>&1 &
    started_pid=$!; pids+=("$started_pid")
    if ! wait_line "$work/$name.log" "listening" "$started_pid" 30; then
        relay_state="did not print a 'listening' line within 30 s: $(tail -3 "$work/$name.log" | tr '\n' ' ' | cut -c1-300)"
        stop "$started_pid"
        return 1
    fi
    set -- "${pairs[@]}"
    while [[ $# -gt 0 ]]; do
        if ! wait_listen "$1" "$started_pid" relay; then
            relay_state="printed 'listening' but port $1 does not listen"
            stop "$started_pid"
            return 1
        fi
        shift 2
    done
    relay_state="ok"
}

start_haproxy haproxy "$p_ha_redis" "$p_redis" "$p_ha_iperf" "$p_iperf_ha" "$p_ha_echo" "$p_echo" \
    || die "haproxy did not start (see $work/haproxy.log)"
haproxy_pid=$started_pid

variants=(direct haproxy)
if [[ $skip_relay -eq 1 ]]; then
    relay_state="skipped (--skip-relay)"
elif [[ "$relay_state" == "not tried" ]] && start_relay relay "$p_rl_admin" "$p_rl_redis" "$p_redis" "$p_rl_iperf" "$p_iperf_rl" "$p_rl_echo" "$p_echo"; then
    relay_pid=$started_pid
    variants+=(relay)
    log "relay started (pid $relay_pid${relay_env[*]+, env ${relay_env[*]}})"
fi
[[ "$relay_state" == "ok" ]] || log "relay row not measured: relay $relay_state"

port_of() { # SERVICE VARIANT
    case "$2" in
        direct) case "$1" in redis) echo "$p_redis" ;; iperf) echo "$p_iperf" ;; echo) echo "$p_echo" ;; esac ;;
        haproxy) case "$1" in redis) echo "$p_ha_redis" ;; iperf) echo "$p_ha_iperf" ;; echo) echo "$p_ha_echo" ;; esac ;;
        relay) case "$1" in redis) echo "$p_rl_redis" ;; iperf) echo "$p_rl_iperf" ;; echo) echo "$p_rl_echo" ;; esac ;;
    esac
}

# ---------------------------------------------------------------- measurements
results="$work/results.tsv"   # bench \t metric \t variant \t value
: >"$results"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }

run_redis() { # VARIANT PIPELINE N
    local v="$1" p="$2" n="$3" port out
    port=$(port_of redis "$v")
    out="$work/redis-$v-P$p.csv"
    if ! timeout 180 $(on_cpu $load_cpu) redis-benchmark -h 127.0.0.1 -p "$port" -c "$redis_clients" -n "$n" \
        -P "$p" -t "$redis_tests" --csv >"$out" 2>"$out.err"; then
        log "redis-benchmark -P $p via $v failed: $(tail -2 "$out.err" | tr '\n' ' ')"
        local t
        for t in ${redis_tests//,/ }; do record "redis ${t^^} -P $p" rps "$v" FAIL; done
        return 0
    fi
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    awk -F'","|^"|"$' -v v="$v" -v p="$p" 'NR > 1 && $2 != "" {
        printf "redis %s -P %s\trps\t%s\t%s\n", $2, p, v, $3
        printf "redis %s -P %s\tp50\t%s\t%s\n", $2, p, v, $6
        printf "redis %s -P %s\tp99\t%s\t%s\n", $2, p, v, $8 }' "$out" >>"$results"
    log "redis -P $p via $v: $(awk -F'","|^"|"$' 'NR > 1 { printf "%s %s rps p99 %s ms; ", $2, $3, $8 }' "$out")"
}

run_iperf() { # VARIANT STREAMS REVERSE(0/1)
    local v="$1" s="$2" r="$3" port out name gbps reverse=()
    port=$(port_of iperf "$v")
    name="iperf3 $s stream"
    if [[ $s -gt 1 ]]; then name+="s"; fi
    if [[ $r -eq 1 ]]; then name+=" -R"; reverse=(-R); fi
    out="$work/iperf-$v-$s-$r.txt"
    if ! timeout $((iperf_seconds + 30)) $(on_cpu $load_cpu) iperf3 -c 127.0.0.1 -p "$port" -t "$iperf_seconds" -O 1 \
        -P "$s" "${reverse[@]+"${reverse[@]}"}" -f m >"$out" 2>&1; then
        log "$name via $v failed: $(tail -2 "$out" | tr '\n' ' ')"
        record "$name" gbps "$v" FAIL
        sleep 1
        return 0
    fi
    # Last "receiver" line: [SUM] (or the only stream) ... <value> Mbits/sec ... receiver
    gbps=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) } END { if (v != "") printf "%.3f", v / 1000 }' "$out")
    [[ -n "$gbps" ]] && record "$name" gbps "$v" "$gbps"
    log "$name via $v: ${gbps:-?} Gbit/s"
}

run_loadgen() { # VARIANT
    local v="$1" port out
    port=$(port_of echo "$v")
    out="$work/loadgen-$v.txt"
    timeout $((loadgen_seconds + 30)) env DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 $(on_cpu $load_cpu) "$loadgen_bin" rr --target "127.0.0.1:$port" --sessions 16 --size 64 \
        --duration "$loadgen_seconds" --warmup 1 >"$out" 2>"$out.err" || log "loadgen rr via $v reported errors: $(grep -o '"note":"[^"]*"' "$out" || tail -1 "$out.err")"
    local json
    json=$(grep '^{' "$out" || true)
    [[ -n "$json" ]] || return 0
    for key in ops_per_s p50_us p99_us p999_us; do
        local val
        val=$(echo "$json" | grep -o "\"$key\":[0-9.]*" | cut -d: -f2)
        [[ -n "$val" ]] || continue
        case "$key" in
            ops_per_s) record "loadgen rr 16x64 B" rps "$v" "$val" ;;
            p50_us) record "loadgen rr 16x64 B" p50 "$v" "$(awk -v x="$val" 'BEGIN { printf "%.3f", x / 1000 }')" ;;
            p99_us) record "loadgen rr 16x64 B" p99 "$v" "$(awk -v x="$val" 'BEGIN { printf "%.3f", x / 1000 }')" ;;
            p999_us) record "loadgen rr 16x64 B" p999 "$v" "$(awk -v x="$val" 'BEGIN { printf "%.3f", x / 1000 }')" ;;
        esac
    done
    log "loadgen rr via $v: $(grep -v '^{' "$out" | tail -1)"
}

# rotate: variants in a different order every round, so no variant always runs first.
rotated() { local r="$1" n=${#variants[@]} i; for ((i = 0; i < n; i++)); do echo "${variants[$(((i + r) % n))]}"; done; }

# Warm-up, not recorded: one short redis-benchmark per variant and pipeline depth, so that no
# variant's first measured run also pays for process start (the relay's JIT compiles its hot path
# at first use; HAProxy and redis-server get the same runs).
warm_up_redis() {
    local v port
    for v in "${variants[@]}"; do
        port=$(port_of redis "$v")
        timeout 60 $(on_cpu $load_cpu) redis-benchmark -h 127.0.0.1 -p "$port" -c "$redis_clients" -n "$redis_n_warmup" -P 1 -t "$redis_tests" -q >/dev/null 2>&1 || true
        timeout 60 $(on_cpu $load_cpu) redis-benchmark -h 127.0.0.1 -p "$port" -c "$redis_clients" -n "$((redis_n_warmup * 4))" -P 16 -t "$redis_tests" -q >/dev/null 2>&1 || true
    done
}
if group redis; then
    log "warm-up: redis-benchmark -n $redis_n_warmup (-P 1) and $((redis_n_warmup * 4)) (-P 16) through each variant, not recorded"
    warm_up_redis
fi

started_at=$(date -u +%s)
load_start=$(cut -d' ' -f1 /proc/loadavg)
[[ ${load_start%.*} -ge $cpus ]] && log "warning: load average is $load_start on $cpus CPUs: other work is running and the figures will be noisy"
for ((round = 0; round < rounds; round++)); do
    log "round $((round + 1)) of $rounds"
    order=$(rotated "$round")
    if group redis; then
        for v in $order; do run_redis "$v" 1 "$redis_n_p1"; done
        for v in $order; do run_redis "$v" 16 "$redis_n_p16"; done
    fi
    if group iperf; then
        for v in $order; do run_iperf "$v" 1 0; done
        for v in $order; do run_iperf "$v" 4 0; done
        for v in $order; do run_iperf "$v" 1 1; done
    fi
    if group loadgen; then
        for v in $order; do run_loadgen "$v"; done
    fi
done

# ---------------------------------------------------------------- memory: 5,000 idle sessions
mem_note=""
# scrape_metrics ADMINPORT: one GET /metrics with the memory relay's token, as Prometheus would.
scrape_metrics() {
    curl -s -o /dev/null --max-time 5 -H "Authorization: Bearer $mem_token" "http://127.0.0.1:$1/metrics" || true
}
run_memory() { # VARIANT PORT PID [ADMINPORT]
    local v="$1" port="$2" pid="$3" admin="${4:-}" out="$work/idle-$1.txt" base samples=() s max open i=0
    # The relay is measured the way an operator runs it: scraped (first before the base sample, then
    # every 5 s), since a relay's first admin request and each scrape cost memory of their own.
    [[ -n "$admin" ]] && { scrape_metrics "$admin"; sleep 1; }
    base=$(rss_mib "$pid")
    env DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 $(on_cpu $load_cpu) "$loadgen_bin" idle --target "127.0.0.1:$port" --sessions "$mem_sessions" --size 16 \
        --duration "$mem_hold" >"$out" 2>"$out.err" &
    local idle_pid=$!; pids+=("$idle_pid")
    if ! wait_line "$out" "ready:" "$idle_pid" 90; then
        log "memory via $v: the idle client did not get ready: $(tail -2 "$out.err" | tr '\n' ' ')"
        stop "$idle_pid"
        return 0
    fi
    sleep 5 # let accepts, upstream connects and the GC settle
    for _ in $(seq 1 $((mem_hold - 8))); do
        [[ -n "$admin" && $((i++ % 5)) -eq 0 ]] && scrape_metrics "$admin"
        samples+=("$(rss_mib "$pid")"); sleep 1
    done
    wait "$idle_pid" 2>/dev/null || true
    max=$(printf '%s\n' "${samples[@]}" | sort -g | tail -1)
    open=$(grep -o '"open_at_end":[0-9]*' "$out" | cut -d: -f2)
    record "memory: $mem_sessions idle sessions" rss "$v" "$max"
    record "memory: $mem_sessions idle sessions" open "$v" "${open:-0}"
    record "memory: $mem_sessions idle sessions" base "$v" "$base"
    log "memory via $v: RSS $base MiB before, max $max MiB with ${open:-?} of $mem_sessions sessions open (samples ${samples[*]})"
    stop "$idle_pid"
}

if group memory; then
    # Fresh proxy processes with one route each, so the figure is the idle cost and not what the
    # throughput tests left in pools and heaps.
    start_haproxy haproxy-mem "$p_ha_mem" "$p_echo" || die "haproxy (memory) did not start"
    ha_mem_pid=$started_pid
    sleep 1
    run_memory haproxy "$p_ha_mem" "$ha_mem_pid"
    stop "$ha_mem_pid"
    if [[ " ${variants[*]} " == *" relay "* ]]; then
        mem_token=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        saved_env=("${relay_env[@]+"${relay_env[@]}"}")
        relay_env+=("RELAY_ADMIN_TOKEN=$mem_token")
        if start_relay relay-mem "$p_rl_mem_admin" "$p_rl_mem" "$p_echo"; then
            relay_env=("${saved_env[@]+"${saved_env[@]}"}")
            rl_mem_pid=$started_pid
            sleep 2
            run_memory relay "$p_rl_mem" "$rl_mem_pid" "$p_rl_mem_admin"
            stop "$rl_mem_pid"
        else
            relay_env=("${saved_env[@]+"${saved_env[@]}"}")
            log "memory via relay: relay $relay_state"
        fi
    fi
fi
elapsed=$(( $(date -u +%s) - started_at ))
load_end=$(cut -d' ' -f1 /proc/loadavg)

# ---------------------------------------------------------------- table
relay_col="Relay"
[[ ${#relay_env[@]} -gt 0 ]] && relay_col="Relay (${relay_env[*]})"
pin_note=$([[ $pin -eq 1 ]] && echo "proxy pinned to CPU $proxy_cpu (HAProxy nbthread 1), clients and servers to CPU $load_cpu" || echo "unpinned (HAProxy nbthread $ha_threads)")

table=$(awk -F'\t' -v relay_state="$relay_state" -v relay_col="$relay_col" '
    function median(key,    n, m, i, j, t, a, all) {
        m = split(vals[key], all, " "); n = 0
        for (i = 1; i <= m; i++) if (all[i] != "FAIL") a[++n] = all[i]
        if (n == 0) return ""
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt(x, metric) {
        if (x == "") return "-"
        if (metric == "rps") return sprintf("%.0f", x)
        if (metric == "gbps") return sprintf("%.2f", x)
        if (metric == "rss" || metric == "base") return sprintf("%.1f", x)
        if (metric == "open") return sprintf("%d", x)
        return sprintf("%.3f", x)
    }
    function cell(key, metric, state,    x) {
        x = median(key)
        if (x == "" && fails[key] > 0) return "failed"
        if (x == "" && state != "ok") return "n/a"
        return fmt(x, metric) (fails[key] > 0 ? sprintf(" (%d run(s) failed)", fails[key]) : "")
    }
    function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
    {
        key = $1 SUBSEP $2 SUBSEP $3
        vals[key] = (key in vals) ? vals[key] " " $4 : $4
        if ($4 == "FAIL") fails[key]++
        if (!(($1 SUBSEP $2) in seen)) { seen[$1 SUBSEP $2] = 1; order[++rows] = $1 SUBSEP $2 }
    }
    END {
        label["rps"] = "requests/s"; label["gbps"] = "Gbit/s"; label["p50"] = "p50 ms"; label["p99"] = "p99 ms"
        label["p999"] = "p99.9 ms"; label["rss"] = "RSS MiB (max while held)"; label["open"] = "sessions open"
        label["base"] = "RSS MiB before"
        printf "| benchmark | metric | direct | HAProxy | %s | Relay/HAProxy | Relay/direct | target |\n", relay_col
        printf "|---|---|---:|---:|---:|---:|---:|---|\n"
        for (r = 1; r <= rows; r++) {
            split(order[r], k, SUBSEP); b = k[1]; m = k[2]
            d = median(b SUBSEP m SUBSEP "direct"); h = median(b SUBSEP m SUBSEP "haproxy"); x = median(b SUBSEP m SUBSEP "relay")
            target = "-"
            if (x != "" && h != "") {
                if (b ~ /^redis/ && m == "rps") target = (x + 0 >= h + 0) ? "ok (>= 1.0x HAProxy)" : "SHORT (< 1.0x HAProxy)"
                if (b ~ /^redis/ && m == "p99") target = (x + 0 <= h + 0) ? "ok (<= HAProxy)" : "SHORT (> HAProxy)"
                if (b ~ /^iperf3 [14] stream/ && b !~ /-R/ && m == "gbps") target = (x + 0 >= h + 0) ? "ok (>= 1.0x HAProxy)" : "SHORT (< 1.0x HAProxy)"
            }
            if (m == "rss" && x != "") target = (x + 0 <= 100) ? "ok (<= 100 MiB)" : "SHORT (> 100 MiB)"
            if ((b SUBSEP m SUBSEP "relay") in fails) target = sprintf("SHORT (%d relay run(s) failed)", fails[b SUBSEP m SUBSEP "relay"])
            printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", b, label[m], cell(b SUBSEP m SUBSEP "direct", m, "ok"), cell(b SUBSEP m SUBSEP "haproxy", m, "ok"), cell(b SUBSEP m SUBSEP "relay", m, relay_state), ratio(x, h), ratio(x, d), target
        }
    }' "$results")

header="Run $(date -u +'%Y-%m-%d %H:%M UTC') on $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); $pin_note; $rounds round(s), median per cell; ${elapsed}s of measurement; load average $load_start at start, $load_end at end.
Tools: $(haproxy -v | head -1 | cut -d' ' -f1-3), $(redis-server --version | cut -d' ' -f1-3), $(iperf3 --version | head -1 | cut -d' ' -f1-2); redis-benchmark -c $redis_clients -t $redis_tests -n $redis_n_p1 (-P 1) / $redis_n_p16 (-P 16); iperf3 -t $iperf_seconds -O 1; idle test: $mem_sessions sessions with one 16-byte echo each, held ${mem_hold}s.
Relay: $relay_state${relay_rev:+ (built from $relay_rev)}"

echo
echo "$header"
echo
echo "$table"
if [[ -n "$out_file" ]]; then
    { echo "$header"; echo; echo "$table"; } >"$out_file"
    log "table written to $out_file"
fi
