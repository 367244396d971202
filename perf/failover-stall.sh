#!/usr/bin/env bash
# perf/failover-stall.sh: the stall a client sees when its primary dies, measured N times on one live
# session. Two sample servers with an agent each and a relay echoing one route ("lines", stateScope
# connection); a client thread keeps one request in flight at all times and times every answer. Each
# round waits for a Ready shadow, kills the primary's backend with SIGKILL, waits for the failover
# splice, and starts the killed backend again (so the next round has a shadow there). Prints, over the
# kills, the relay's blackout (from seeing the primary close to resuming on the shadow) and the
# client-visible stall (the longest answer time around each kill), and checks the session's state.
# The restarted backend (a fresh process; a JIT-compiled one also compiles its code) is given --settle seconds
# (default 2) before the next kill, so that its start-up does not compete for the CPU with the next
# failover. The relay runs on CPU 1 and everything else (the backends the client restarts too) on
# CPU 0 (perf/pin.sh) unless --unpinned.
# Usage: perf/failover-stall.sh [--kills N] [--settle S] [--no-build] [--port-base P] [--keep-logs] [--unpinned]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; repo="$(cd "$here/.." && pwd)"
kills=50; build=1; base=23150; keep=0; settle=2; pin=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kills) kills="$2"; shift ;;
        --no-build) build=0 ;;
        --port-base) base="$2"; shift ;;
        --keep-logs) keep=1 ;;
        --settle) settle="$2"; shift ;;
        --unpinned) pin=0 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "failover-stall.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
relay="$repo/artifacts/relay/relay"
source "$here/pin.sh"; check_pinning failover-stall.sh
[[ $build -eq 0 ]] || "$repo/run-relay.sh" publish
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -f "$work/backends" ]] && while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/backends"; if [[ $keep -eq 1 ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi' EXIT
head -c 48 /dev/urandom | base64 >"$work/psk"; head -c 24 /dev/urandom | base64 >"$work/token"; chmod 600 "$work/psk" "$work/token"
$(on_cpu $load_cpu) "$relay" agent --id a --control "127.0.0.1:$((base + 11))" --backend "127.0.0.1:$((base + 1))" --path 127.0.0.1 --psk-file "$work/psk" --log-level ${AGENT_LOG_LEVEL:-information} >"$work/agent-a.log" 2>&1 & pids+=($!)
$(on_cpu $load_cpu) "$relay" agent --id b --control "127.0.0.1:$((base + 12))" --backend "127.0.0.1:$((base + 2))" --path 127.0.0.1 --psk-file "$work/psk" --log-level ${AGENT_LOG_LEVEL:-information} >"$work/agent-b.log" 2>&1 & pids+=($!)
cat >"$work/relay.json" <<JSON
{ "admin": { "listen": "127.0.0.1:$((base + 20))", "tokenFile": "$work/token" }, "echo": { "pskFile": "$work/psk" },
  "routes": { "g": { "listen": "127.0.0.1:$base", "cluster": "g", "echo": { "codec": "lines", "stateScope": "connection" } } },
  "clusters": { "g": { "healthCheck": { "passive": { "enabled": false } }, "endpoints": {
    "a": { "address": "127.0.0.1:$((base + 1))", "agent": "127.0.0.1:$((base + 11))" },
    "b": { "address": "127.0.0.1:$((base + 2))", "agent": "127.0.0.1:$((base + 12))" } } } } }
JSON
"$relay" --check-config "$work/relay.json" >/dev/null || { "$relay" --check-config "$work/relay.json"; exit 2; }
$(on_cpu $proxy_cpu) "$relay" --config "$work/relay.json" --log-level ${RELAY_LOG_LEVEL:-information} >"$work/relay.log" 2>&1 & pids+=($!)
: >"$work/backends"
$(on_cpu $load_cpu) python3 - "$base" "$(cat "$work/token")" "$kills" "$relay" "$work" "$settle" <<'PY'
import json, os, signal, socket, subprocess, sys, threading, time, urllib.error, urllib.request
base, token, kills, relay, work, settle = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6])
backends = {}
def start(eid):
    port = base + (1 if eid == "a" else 2)
    p = subprocess.Popen([relay, "sample-server", "--listen", f"127.0.0.1:{port}", "--id", eid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backends[eid] = p
    with open(os.path.join(work, "backends"), "a") as f: f.write(f"{p.pid}\n")
    for _ in range(200):
        try: socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); return
        except OSError: time.sleep(0.02)
    raise SystemExit(f"sample server {eid} did not listen")
def api(path, method="GET"):
    request = urllib.request.Request(f"http://127.0.0.1:{base + 20}{path}", method=method, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(request, timeout=5))
start("a"); start("b")
for _ in range(100):
    try: api("/api/endpoints"); break
    except OSError: time.sleep(0.1)
s = socket.create_connection(("127.0.0.1", base)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); f = s.makefile()
s.sendall(b"HELLO\n"); f.readline(); time.sleep(1)
sid = api("/api/sessions")[0]["id"]
answers = []          # (sent, latency) of every request, in order
sent_moves = [0]; stop = threading.Event(); failure = []
def client():
    try:
        while not stop.is_set():
            t0 = time.perf_counter(); s.sendall(b"MOVE 1 1\n"); line = f.readline()
            if not line: failure.append("the session closed"); return
            answers.append((t0, time.perf_counter() - t0)); sent_moves[0] += 1
    except OSError as e: failure.append(str(e))
worker = threading.Thread(target=client, daemon=True); worker.start()
blackouts, stalls = [], []
for i in range(kills):
    record = None
    for _ in range(1000):
        record = api(f"/api/sessions/{sid}")
        shadows = record["echo"]["shadows"]
        if shadows and any(x["state"] == "Ready" for x in shadows): break
        time.sleep(0.01)
    else: print(f"kill {i}: no Ready shadow within 10 s; stopping"); break
    # The record keeps the last 32 splices: a new one shows as a new last entry.
    primary, last = record["endpoint"], (record["echo"]["splices"] or [None])[-1]
    time.sleep(0.05)
    killed_at = time.perf_counter(); backends[primary].send_signal(signal.SIGKILL); backends[primary].wait()
    splice = None
    for _ in range(1000):
        try: echo = api(f"/api/sessions/{sid}")["echo"]
        except urllib.error.HTTPError as e: echo = None  # 404: the session is gone
        if echo is None: failure.append("the relay ended the session instead of failing it over (its log event 1329 says why)"); break
        splices = echo["splices"]
        if splices and splices[-1] != last: splice = splices[-1]; break
        time.sleep(0.005)
    if failure or splice is None or splice["result"] != "spliced":
        print(f"kill {i}: no failover ({failure or splice})"); break
    blackouts.append(splice["blackoutMs"])
    time.sleep(0.2)
    # The client-visible stall: the longest answer among requests sent from 5 ms before the kill on.
    window = [lat for (t0, lat) in list(answers) if killed_at - 0.005 <= t0 <= killed_at + 0.2]
    stalls.append(max(window) * 1000 if window else float("nan"))
    start(primary)
    time.sleep(settle)
stop.set(); worker.join(5)
moves = sent_moves[0]
s.sendall(b"STATE\n"); state = f.readline().strip()
def q(values, p):
    b = sorted(values); return b[min(len(b) - 1, int(len(b) * p))]
if blackouts:
    print(f"{len(blackouts)} of {kills} kills failed over")
    print(f"relay blackout (primary close seen -> resumed on the shadow): p50 {q(blackouts, .5):.3f} ms, p90 {q(blackouts, .9):.3f} ms, p99 {q(blackouts, .99):.3f} ms, max {max(blackouts):.3f} ms")
    print(f"first kill {blackouts[0]:.3f} ms; five longest: {', '.join(f'{b:.3f}' for b in sorted(blackouts)[-5:])} ms (kills {', '.join(str(i + 1) for i in sorted(range(len(blackouts)), key=lambda i: blackouts[i])[-5:])})")
    print(f"client-visible stall (longest answer around each kill):      p50 {q(stalls, .5):.3f} ms, p90 {q(stalls, .9):.3f} ms, p99 {q(stalls, .99):.3f} ms, max {max(stalls):.3f} ms")
    normal = [lat * 1000 for (_, lat) in answers]
    print(f"every answer ({len(normal)}):                                  p50 {q(normal, .5):.3f} ms, p99 {q(normal, .99):.3f} ms")
expected = f"{moves + 2} STATE {moves} {moves} 0 {moves + 2} "
print("session intact" if state.startswith(expected) and not failure else f"SESSION STATE WRONG: {state!r}, expected {expected!r}... {failure}")
PY
echo "$(date -u +%FT%H:%MZ), $(nproc) cores, $([[ $pin -eq 1 ]] && echo "relay on CPU $proxy_cpu, the rest on CPU $load_cpu" || echo unpinned), load $(cut -d' ' -f1-3 /proc/loadavg), $(git -C "$repo" rev-parse --short HEAD)"
