#!/usr/bin/env bash
# perf/splice-blackout.sh: the blackout of a planned splice to a Ready shadow, measured N times on
# one live session. Two sample servers with an agent each and a relay echoing one route ("lines",
# stateScope connection, so the session can go back and forth); a client keeps one session open,
# sends a command between moves, waits for a Ready shadow, and migrates it through the admin API.
# Prints the blackout distribution the relay measured (pause to resume) for every move, the relay's
# garbage collections and their pauses during the moves (a splice that meets one has it in its
# blackout), and checks the session's state survived them all. The relay runs on CPU 1 and
# everything else on CPU 0 (perf/pin.sh) unless --unpinned.
# Usage: perf/splice-blackout.sh [--moves N] [--no-build] [--port-base P] [--unpinned]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; repo="$(cd "$here/.." && pwd)"
moves=200; build=1; base=23100; pin=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --moves) moves="$2"; shift ;;
        --no-build) build=0 ;;
        --port-base) base="$2"; shift ;;
        --unpinned) pin=0 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "splice-blackout.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
relay="$repo/artifacts/relay/relay"
source "$here/pin.sh"; check_pinning splice-blackout.sh
[[ $build -eq 0 ]] || "$repo/run-relay.sh" publish
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
head -c 48 /dev/urandom | base64 >"$work/psk"; head -c 24 /dev/urandom | base64 >"$work/token"; chmod 600 "$work/psk" "$work/token"
$(on_cpu $load_cpu) "$relay" sample-server --listen "127.0.0.1:$((base + 1))" --id a >/dev/null 2>&1 & pids+=($!)
$(on_cpu $load_cpu) "$relay" sample-server --listen "127.0.0.1:$((base + 2))" --id b >/dev/null 2>&1 & pids+=($!)
$(on_cpu $load_cpu) "$relay" agent --id a --control "127.0.0.1:$((base + 11))" --backend "127.0.0.1:$((base + 1))" --path 127.0.0.1 --psk-file "$work/psk" >/dev/null 2>&1 & pids+=($!)
$(on_cpu $load_cpu) "$relay" agent --id b --control "127.0.0.1:$((base + 12))" --backend "127.0.0.1:$((base + 2))" --path 127.0.0.1 --psk-file "$work/psk" >/dev/null 2>&1 & pids+=($!)
cat >"$work/relay.json" <<JSON
{ "admin": { "listen": "127.0.0.1:$((base + 20))", "tokenFile": "$work/token" }, "echo": { "pskFile": "$work/psk" },
  "routes": { "g": { "listen": "127.0.0.1:$base", "cluster": "g", "echo": { "codec": "lines", "stateScope": "connection" } } },
  "clusters": { "g": { "endpoints": {
    "a": { "address": "127.0.0.1:$((base + 1))", "agent": "127.0.0.1:$((base + 11))" },
    "b": { "address": "127.0.0.1:$((base + 2))", "agent": "127.0.0.1:$((base + 12))" } } } } }
JSON
$(on_cpu $proxy_cpu) "$relay" --config "$work/relay.json" --log-level warning >"$work/relay.log" 2>&1 & pids+=($!)
sleep 4
$(on_cpu $load_cpu) python3 - "$base" "$(cat "$work/token")" "$moves" <<'PY'
import http.client, json, socket, sys, time
base, token, moves = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
# One kept-alive admin connection, as any polling client should use: a new connection per request
# costs the relay about 9 KiB more in Kestrel's per-connection objects, which the moves would then pay
# for in collections (see docs/benchmarks.md, issue 5, session 18).
conn = http.client.HTTPConnection("127.0.0.1", base + 20)
def admin(path, method="GET"):
    conn.request(method, path, headers={"Authorization": "Bearer " + token})
    answer = conn.getresponse(); body = answer.read()
    if answer.status != 200: sys.exit(f"{method} {path}: HTTP {answer.status}: {body.decode(errors='replace')}")
    return body
def api(path, method="GET"): return json.loads(admin(path, method))
s = socket.create_connection(("127.0.0.1", base)); f = s.makefile()
s.sendall(b"HELLO\n"); f.readline(); time.sleep(1)
sid = api("/api/sessions")[0]["id"]; blackouts = []
def gc():  # the relay's collections (the gen0 count counts every one) and seconds paused so far, from /metrics
    lines = admin("/metrics").decode().splitlines()
    total = lambda name: sum(float(l.split()[-1]) for l in lines if l.startswith(name))
    return total('dotnet_collection_count_total{generation="0"}'), total('dotnet_collection_count_total{generation="1"}'), total('dotnet_collection_count_total{generation="2"}'), total("relay_gc_pause_seconds_total"), total("relay_gc_allocated_bytes_total")
gc_before = gc()
for i in range(moves):
    s.sendall(b"MOVE 1 1\n"); f.readline()
    for _ in range(400):
        shadows = api(f"/api/sessions/{sid}")["echo"]["shadows"]
        if shadows and shadows[0]["state"] == "Ready": break
        time.sleep(0.005)
    answer = api(f"/api/sessions/{sid}/migrate", "POST")
    if answer["moved"]: blackouts.append(answer["blackoutMs"])
s.sendall(b"STATE\n"); state = f.readline().strip()
collections, gen1, gen2, paused, allocated = (after - before for after, before in zip(gc(), gc_before))
b = sorted(blackouts); q = lambda p: b[min(len(b) - 1, int(len(b) * p))]
print(f"{len(b)} of {moves} moves; blackout p50 {q(0.5):.3f} ms, p90 {q(0.9):.3f} ms, p99 {q(0.99):.3f} ms, max {b[-1]:.3f} ms")
print(f"relay GC during the moves: {allocated / moves / 1024:.0f} KiB allocated per move, {collections:.0f} collection(s), {gen1:.0f} of them of gen1 or gen2 ({gen2:.0f} of gen2), {paused * 1000:.1f} ms paused" + (f" ({paused * 1000 / collections:.2f} ms each)" if collections else ""))
expected = f"{moves + 2} STATE {moves} {moves} 0 {moves + 2} "
print("session intact" if state.startswith(expected) else f"SESSION STATE WRONG: {state!r}, expected {expected!r}...")
PY
echo "$(date -u +%FT%H:%MZ), $(nproc) cores, $([[ $pin -eq 1 ]] && echo "relay on CPU $proxy_cpu, the rest on CPU $load_cpu" || echo unpinned), load $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$repo" rev-parse --short HEAD)"
