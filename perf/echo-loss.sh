#!/usr/bin/env bash
# perf/echo-loss.sh: echo traffic on the wire per byte of session input, with real random loss.
# Two network namespaces joined by one or two veth pairs (one echo path each). Namespace A holds the
# relay, endpoint a (a relay-loadgen backend with its agent) and the load generator; namespace B
# holds endpoint b (backend and `relay agent`). nftables drops N% of the echo UDP datagrams at
# random (relay -> agent, or both ways with --both) and counts every echo UDP datagram each side
# sends on the veths, by type. Sessions whose primary is a echo to b across the veths; the ratio is
# the echo bytes on the wire over the input the relay shipped to b (relay_echo_bytes_total). Needs
# root, ip, nft, nsenter and curl. Everything is torn down on exit. See perf/README.md ("echo-loss.sh").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: perf/echo-loss.sh [options]   (as root)

  --loss N          percent of echo UDP datagrams dropped at random (default 5; 0 for none)
  --both            drop in both directions (default: relay -> agent only, acks pass)
  --paths N         echo paths, one veth pair each: 1 or 2 (default 2)
  --workload W      stream (stream --direction up against a sink backend, default)
                    or rr (request/response against an echo backend)
  --sessions N      loadgen sessions (default 4)
  --size BYTES      stream write size or rr request size (default 16K for stream, 1K for rr)
  --rate BYTES      stream: bytes per second per session (default 4M; 0 = as fast as it can, which
                    on a small shared machine starves the relay and its admin API)
  --seconds S       measured seconds (default 10), after --settle S (default 3)
  --interval T      the route's echo interval (default 5ms)
  --configuration C Release (default) or Debug builds of relay and relay-loadgen
  --batch-loss      let a UDP GSO send cross the veth as one packet, so a drop takes the whole batch
                    (default: the veths segment GSO sends, so loss is per datagram, as on a wire)
  --no-build        use the existing builds
  --keep-logs       keep the temporary directory with every process's log
  -h, --help        this text
EOF
}

loss=5
both=0
paths=2
workload=stream
sessions=4
size=""
rate=4M
seconds=10
settle=3
interval=5ms
configuration=Release
build=1
keep_logs=0
batch_loss=0
die() { echo "echo-loss.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --loss) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -le 100 ]] || die "--loss needs a whole percent 0-100"; loss="$2"; shift ;;
        --both) both=1 ;;
        --paths) [[ $# -ge 2 && "$2" =~ ^[12]$ ]] || die "--paths is 1 or 2"; paths="$2"; shift ;;
        --workload) [[ $# -ge 2 && "$2" =~ ^(stream|rr)$ ]] || die "--workload is stream or rr"; workload="$2"; shift ;;
        --sessions) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--sessions needs a positive whole number"; sessions="$2"; shift ;;
        --size) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*[KkMm]?$ ]] || die "--size needs a byte count (K/M suffixes ok)"; size="$2"; shift ;;
        --rate) [[ $# -ge 2 && "$2" =~ ^[0-9]+[KkMmGg]?$ ]] || die "--rate needs a byte count per second (K/M/G suffixes ok)"; rate="$2"; shift ;;
        --seconds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--seconds needs a positive whole number"; seconds="$2"; shift ;;
        --settle) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--settle needs a whole number"; settle="$2"; shift ;;
        --interval) [[ $# -ge 2 && "$2" =~ ^[0-9]+(ms|s)$ ]] || die "--interval needs a duration such as 5ms"; interval="$2"; shift ;;
        --configuration) [[ $# -ge 2 && "$2" =~ ^(Release|Debug)$ ]] || die "--configuration is Release or Debug"; configuration="$2"; shift ;;
        --no-build) build=0 ;;
        --keep-logs) keep_logs=1 ;;
        --batch-loss) batch_loss=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ -n "$size" ]] || { [[ $workload == stream ]] && size=16K || size=1K; }
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces and nftables)"
for tool in ip nft curl nsenter; do command -v "$tool" >/dev/null || die "'$tool' is not installed"; done

id=$$
ns_a="rlyel-a-$id"
ns_b="rlyel-b-$id"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip netns del "$ns_a" 2>/dev/null || true
    ip netns del "$ns_b" 2>/dev/null || true
    if [[ $keep_logs -eq 1 ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
# nsenter execs the command itself (ip netns exec forks and waits); background processes are started
# with nsenter directly, not through these functions, so that $! is the process to stop.
in_a() { nsenter --net="/run/netns/$ns_a" "$@"; }
in_b() { nsenter --net="/run/netns/$ns_b" "$@"; }

relay_bin="$repo/artifacts/relay/relay"
loadgen_bin="$repo/perf/Relay.LoadGen/bin/$configuration/net10.0/relay-loadgen"
if [[ $build -eq 1 ]]; then
    log "building relay and relay-loadgen ($configuration)"
    "$repo/run-relay.sh" publish >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "relay does not publish"; }
    dotnet build -c "$configuration" "$repo/perf/Relay.LoadGen/Relay.LoadGen.csproj" >>"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "relay-loadgen does not build"; }
fi
[[ -x "$relay_bin" && -x "$loadgen_bin" ]] || die "relay or relay-loadgen missing (build them, or drop --no-build)"

# The lab: namespaces, veth pairs 10.232.i.1 (A) <-> 10.232.i.2 (B), nftables counters and loss.
log "namespaces $ns_a and $ns_b, $paths path(s), ${loss}% loss $([[ $both -eq 1 ]] && echo "both ways" || echo "relay -> agent") $([[ $batch_loss -eq 1 ]] && echo "per GSO batch" || echo "per datagram")"
ip netns add "$ns_a"
ip netns add "$ns_b"
in_a ip link set lo up
in_b ip link set lo up
veths_a=""; veths_b=""
for i in $(seq 0 $((paths - 1))); do
    va="ela$i-$id"; vb="elb$i-$id"
    ip link add "$va" netns "$ns_a" type veth peer name "$vb" netns "$ns_b"
    in_a ip addr add "10.232.$i.1/24" dev "$va"
    in_b ip addr add "10.232.$i.2/24" dev "$vb"
    if [[ $batch_loss -eq 0 ]]; then
        # A veth carries a UDP GSO send (one sendmsg, many datagrams) as one packet, and nftables
        # would drop or keep the whole batch: burst loss no wire has. One segment per packet makes
        # the kernel split the send before the veth, so each datagram is dropped on its own.
        in_a ip link set "$va" gso_max_segs 1
        in_b ip link set "$vb" gso_max_segs 1
    fi
    in_a ip link set "$va" up
    in_b ip link set "$vb" up
    veths_a+="${veths_a:+, }\"$va\""; veths_b+="${veths_b:+, }\"$vb\""
done

nft_rules() { # VETHS DROP(0|1): count what this side sends by echo datagram type (UDP payload byte 1), drop on input
    local veths=$1 drop=$2
    cat <<EOF
table inet echoloss {
  counter data {}
  counter ack {}
  counter other {}
  chain out {
    type filter hook output priority 0; policy accept;
    oifname { $veths } meta l4proto udp @th,72,8 1 counter name "data"
    oifname { $veths } meta l4proto udp @th,72,8 2 counter name "ack"
    oifname { $veths } meta l4proto udp @th,72,8 != { 1, 2 } counter name "other"
  }
  chain in {
    type filter hook input priority 0; policy accept;
EOF
    if [[ $drop -eq 1 && $loss -gt 0 ]]; then
        echo "    iifname { $veths } meta l4proto udp numgen random mod 100 < $loss drop"
    fi
    echo "  }"
    echo "}"
}
nft_rules "$veths_a" "$both" | in_a nft -f -
nft_rules "$veths_b" 1 | in_b nft -f -

# counters NS -> "data_packets data_bytes ack_packets ack_bytes other_packets other_bytes"
counters() {
    ip netns exec "$1" nft list counters table inet echoloss | awk '
        /counter / { name = $2 }
        /packets/ { for (i = 1; i <= NF; i++) { if ($i == "packets") p[name] = $(i + 1); if ($i == "bytes") b[name] = $(i + 1) } }
        END { printf "%d %d %d %d %d %d\n", p["data"], b["data"], p["ack"], b["ack"], p["other"], b["other"] }'
}

# Processes. Ports are per namespace, so fixed ones do not collide with anything outside.
p_a=7101; p_b=7102; c_a=7201; c_b=7202; p_route=7000; p_admin=7300
head -c 48 /dev/urandom | base64 >"$work/echo.psk"
head -c 24 /dev/urandom | base64 >"$work/admin.token"
chmod 600 "$work/echo.psk" "$work/admin.token"
token=$(cat "$work/admin.token")
export DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1

wait_listen() { # NS PORT PID WHAT
    for _ in $(seq 1 400); do
        if ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; then return 0; fi
        kill -0 "$3" 2>/dev/null || die "$4 exited (see $work)"
        sleep 0.05
    done
    die "$4 does not listen on $2 (see $work)"
}

serve_mode=sink; [[ $workload == rr ]] && serve_mode=echo
relay_paths=""; agent_b_paths=(); agent_a_paths=()
for i in $(seq 0 $((paths - 1))); do
    relay_paths+="${relay_paths:+, }\"10.232.$i.1\""
    agent_a_paths+=(--path "10.232.$i.1")
    agent_b_paths+=(--path "10.232.$i.2")
done
nsenter --net="/run/netns/$ns_a" "$loadgen_bin" --serve "127.0.0.1:$p_a" --serve-mode "$serve_mode" --duration 0 >"$work/backend-a.log" 2>&1 & pids+=($!); wait_listen "$ns_a" "$p_a" "$!" "backend a"
nsenter --net="/run/netns/$ns_b" "$loadgen_bin" --serve "0.0.0.0:$p_b" --serve-mode "$serve_mode" --duration 0 --allow-remote >"$work/backend-b.log" 2>&1 & pids+=($!); wait_listen "$ns_b" "$p_b" "$!" "backend b"
nsenter --net="/run/netns/$ns_a" "$relay_bin" agent --id a --control "127.0.0.1:$c_a" --backend "127.0.0.1:$p_a" "${agent_a_paths[@]}" --psk-file "$work/echo.psk" >"$work/agent-a.log" 2>&1 & pids+=($!); wait_listen "$ns_a" "$c_a" "$!" "agent a"
nsenter --net="/run/netns/$ns_b" "$relay_bin" agent --id b --control "10.232.0.2:$c_b" --backend "127.0.0.1:$p_b" "${agent_b_paths[@]}" --psk-file "$work/echo.psk" >"$work/agent-b.log" 2>&1 & pids+=($!); wait_listen "$ns_b" "$c_b" "$!" "agent b"

cat >"$work/relay.json" <<EOF
{
  "admin": { "listen": "127.0.0.1:$p_admin", "tokenFile": "$work/admin.token" },
  "echo": { "pskFile": "$work/echo.psk", "paths": [$relay_paths] },
  "routes": {
    "echoed": { "listen": "127.0.0.1:$p_route", "cluster": "c", "echo": { "codec": "raw", "shadows": 1, "interval": "$interval", "retention": "256MiB" } }
  },
  "clusters": { "c": {
    "healthCheck": { "active": { "enabled": false } },
    "endpoints": {
    "a": { "address": "127.0.0.1:$p_a", "agent": "127.0.0.1:$c_a", "zone": "z1" },
    "b": { "address": "10.232.0.2:$p_b", "agent": "10.232.0.2:$c_b", "zone": "z2" } } } }
}
EOF
nsenter --net="/run/netns/$ns_a" "$relay_bin" --config "$work/relay.json" --log-level warning >"$work/relay.log" 2>&1 & relay_pid=$!; pids+=($relay_pid)
wait_listen "$ns_a" "$p_route" "$relay_pid" "relay"
admin() { local path=$1; shift; in_a curl -fsS -m 10 -H "Authorization: Bearer $token" "$@" "http://127.0.0.1:$p_admin$path"; }
wait_for() { # WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s
    local what=$1 limit=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@"; do
        [[ $SECONDS -lt $deadline ]] || die "timed out after ${limit} s waiting until $what (see $work)"
        sleep 0.2
    done
}
agents_connected() { [[ $( (admin /api/endpoints || true) | grep -o '"connected":true' | wc -l) -ge 2 ]]; }
wait_for "both agents connect" 30 agents_connected

# Every session's primary is a and its shadow is b: b is drained while the sessions connect, then
# undrained, and the shadow top-up gives each session its shadow on b (replaying from offset 0; the
# measured window starts --settle seconds after every session has one).
admin /api/endpoints/b/drain -X POST >/dev/null
if [[ $workload == stream ]]; then
    nsenter --net="/run/netns/$ns_a" "$loadgen_bin" stream --target "127.0.0.1:$p_route" --sessions "$sessions" --size "$size" --direction up --rate "$rate" --payload random --duration 3600 --warmup 0 >"$work/loadgen.txt" 2>"$work/loadgen.err" & lg=$!
else
    nsenter --net="/run/netns/$ns_a" "$loadgen_bin" rr --target "127.0.0.1:$p_route" --sessions "$sessions" --size "$size" --duration 3600 --warmup 0 >"$work/loadgen.txt" 2>"$work/loadgen.err" & lg=$!
fi
pids+=($lg)
sessions_on_a() { [[ $( (admin /api/endpoints/a || true) | grep -o '"echoedSessionsHere":[0-9]*' | cut -d: -f2) -ge $sessions ]]; }
wait_for "$sessions sessions run on a" 30 sessions_on_a
admin /api/endpoints/b/undrain -X POST >/dev/null
shadows_on_b() { [[ $( (admin /api/sessions || true) | grep -o '"shadows":\[{"endpoint":"b"' | wc -l) -ge $sessions ]]; }
wait_for "every session has its shadow on b" 30 shadows_on_b
log "$workload: $sessions session(s) of $size$([[ $workload == stream ]] && echo " at $rate/s each") on a, shadows on b; settling ${settle} s, then measuring ${seconds} s"
sleep "$settle"

metric() { # NAME-REGEX -> sum of the matching /metrics samples
    admin /metrics | awk -v pat="$1" '$0 ~ pat { s += $NF } END { printf "%.0f\n", s + 0 }'
}
parity_samples=""
snapshot() {
    read -r a_dp a_db a_ap a_ab a_op a_ob <<<"$(counters "$ns_a")"
    read -r b_dp b_db b_ap b_ab b_op b_ob <<<"$(counters "$ns_b")"
    echo "$a_dp $a_db $a_ap $a_ab $a_op $a_ob $b_dp $b_db $b_ap $b_ab $b_op $b_ob $(metric '^relay_echo_bytes_total[{].*endpoint="b"') $(metric '^relay_bytes_total[{].*route="echoed".*direction="in"')"
}
read -r -a t0 <<<"$(snapshot)"
for _ in $(seq 1 "$seconds"); do
    sleep 1
    shape=$(admin /api/endpoints/b | grep -o '"dataShards":[0-9]*,"parityShards":[0-9]*' | sed -E 's/"dataShards":([0-9]+),"parityShards":([0-9]+)/\1+\2/' || true)
    parity_samples+="${shape:-?} "
done
read -r -a t1 <<<"$(snapshot)"
sessions_json=$(admin /api/sessions || echo '[]')
channel_json=$(admin /api/endpoints/b | python3 -c 'import json,sys; c=(json.load(sys.stdin).get("agent") or {}).get("channel"); print(json.dumps(c, separators=(",",":")) if c else "-")' 2>/dev/null || echo '-')
kill -TERM "$lg" 2>/dev/null || true # (SIGINT is ignored by background jobs of a script)
wait "$lg" || true
lg_line=$( (grep -v '^{' "$work/loadgen.txt" || tail -1 "$work/loadgen.err") | tail -1 || true)

d() { echo $(( ${t1[$1]} - ${t0[$1]} )); }
a2b_data_p=$(d 0); a2b_data_b=$(d 1); a2b_ack_p=$(d 2); a2b_ack_b=$(d 3); a2b_other_p=$(d 4); a2b_other_b=$(d 5)
b2a_data_p=$(d 6); b2a_data_b=$(d 7); b2a_ack_p=$(d 8); b2a_ack_b=$(d 9); b2a_other_p=$(d 10); b2a_other_b=$(d 11)
echo_b=$(d 12); input=$(d 13)
wire=$((a2b_data_b + a2b_ack_b + a2b_other_b + b2a_data_b + b2a_ack_b + b2a_other_b))
packets=$((a2b_data_p + a2b_ack_p + a2b_other_p + b2a_data_p + b2a_ack_p + b2a_other_p))
udp_payload=$((wire - 28 * packets)) # minus IPv4 (20) and UDP (8) headers
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }
ready=$(echo "$sessions_json" | grep -o '"state":"[A-Za-z]*"' | sort | uniq -c | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }' | tr -d '"' | sed 's/state://g' || true)

cat <<EOF

echo-loss: ${loss}% random loss $([[ $both -eq 1 ]] && echo "both ways" || echo "relay -> agent only"), $paths path(s), $workload $sessions x $size$([[ $workload == stream ]] && echo " at $rate/s"), echo interval $interval, ${seconds} s measured
session input (relay_bytes_total in):        $(mib "$input") MiB
input shipped to b (relay_echo_bytes_total): $(mib "$echo_b") MiB
echo on the wire (IP bytes, both ways):      $(mib "$wire") MiB in $packets sends (a GSO send counts once)
  relay -> agent: data $(mib "$a2b_data_b") MiB ($a2b_data_p), acks $(mib "$a2b_ack_b") MiB ($a2b_ack_p), nack/probe/other $(mib "$a2b_other_b") MiB ($a2b_other_p)
  agent -> relay: data $(mib "$b2a_data_b") MiB ($b2a_data_p), acks $(mib "$b2a_ack_b") MiB ($b2a_ack_p), nack/probe/other $(mib "$b2a_other_b") MiB ($b2a_other_p)
ratio wire / shipped input:                  $(ratio "$wire" "$echo_b")   (UDP payload only: $(ratio "$udp_payload" "$echo_b"))
ratio wire / session input:                  $(ratio "$wire" "$input")
FEC block shape (k+m) sampled each second:   $parity_samples
relay's channel to b at the end:             $channel_json
shadow states at the end:                    ${ready:-none}
loadgen:                                     ${lg_line:-no result}
$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git -C "$repo" rev-parse --short HEAD), $configuration build
EOF
