#!/usr/bin/env bash
# Relay's two front-door commands (see README.md):
#   ./run-relay.sh          build and run the relay on the embedded default topology
#   ./run-relay.sh test     install what the tests need (when root), build, run every test
# and the one they share (the perf scripts use it too):
#   ./run-relay.sh publish  publish the relay to artifacts/relay/relay: a Native AOT binary when a C
#                           toolchain (clang) is there, else (or with RELAY_PUBLISH=jit) the
#                           framework-dependent build, and say which
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Debian packages the tests and the perf script use: real servers and clients, real packet loss.
TEST_PACKAGES=(redis-server redis-tools iperf3 haproxy nftables iproute2 procps libisal2)

install_packages() {
    local missing=()
    for package in "${TEST_PACKAGES[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    # clang links the Native AOT relay; any installed clang-N will do.
    [ -n "$(find_clang || true)" ] || missing+=(clang)
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "run-relay.sh: not root, so not installing: ${missing[*]} (tests that need them say so and skip)" >&2
        return 0
    fi
    echo "run-relay.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        echo "run-relay.sh: apt-get could not install ${missing[*]}; tests that need them say so and skip" >&2
    fi
    # Debian starts redis-server as a service on install; the tests start their own instances.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
}

# The C compiler and linker Native AOT needs: clang on the PATH, else Debian's newest clang-N.
find_clang() {
    if command -v clang >/dev/null 2>&1; then
        echo clang
        return 0
    fi
    local versioned
    versioned="$(compgen -c clang- | grep -E '^clang-[0-9]+$' | sort -t- -k2 -n | tail -n 1 || true)"
    [ -n "$versioned" ] && echo "$versioned"
}

# Publishes the relay into artifacts/relay and sets RELAY_BIN. Native AOT (docs/operations.md
# "The relay binary") needs clang; without it, or with RELAY_PUBLISH=jit in the environment, the
# framework-dependent build is published instead: the same behaviour, about 35 MiB more memory,
# and HTTP routes about 10-15% cheaper in CPU per request (the JIT's dynamic PGO).
publish_relay() {
    local out="$ROOT/artifacts/relay" clang=""
    [ "${RELAY_PUBLISH:-native}" = "jit" ] || clang="$(find_clang || true)"
    rm -rf "$out"
    if [ -n "$clang" ]; then
        echo "run-relay.sh: publishing the relay (Native AOT, linked with $clang)"
        dotnet publish src/Relay/Relay.csproj -c Release -r linux-x64 -o "$out" \
            -p:CppCompilerAndLinker="$clang" -nologo -clp:ErrorsOnly -v:q
        RELAY_BUILD="native"
    else
        if [ "${RELAY_PUBLISH:-native}" = "jit" ]; then
            echo "run-relay.sh: RELAY_PUBLISH=jit: publishing the relay framework-dependent (JIT)"
        else
            echo "run-relay.sh: no clang, so the relay is published framework-dependent, not Native AOT (apt-get install clang)" >&2
        fi
        dotnet publish src/Relay/Relay.csproj -c Release -r linux-x64 --self-contained false -p:PublishAot=false -o "$out" \
            -nologo -clp:ErrorsOnly -v:q
        RELAY_BUILD="framework-dependent"
    fi
    RELAY_BIN="$out/relay"
    export RELAY_BIN RELAY_BUILD
}

run_tests() {
    install_packages
    echo "run-relay.sh: building"
    dotnet build Relay.sln -c Release -nologo -clp:ErrorsOnly -v:q
    # The functional tests also run the published binary (NativeBinaryTests) as operators get it.
    publish_relay
    local passed=0 failed=0 skipped=0 crashed=0
    local log
    log="$(mktemp)"
    for project in tests/*/; do
        project="${project%/}"
        [ -f "$project/$(basename "$project").csproj" ] || continue
        echo "run-relay.sh: testing $(basename "$project")"
        set +e
        dotnet test "$project" -c Release --no-build -nologo --blame-hang-timeout 5m 2>&1 | tee "$log"
        set -e
        # VSTest's summary: "Passed!  - Failed: 0, Passed: 12, Skipped: 1, Total: 13, ..."
        local summary
        summary="$(grep -E '^(Passed|Failed)! +- Failed: ' "$log" | tail -n 1 || true)"
        if [ -z "$summary" ]; then
            echo "run-relay.sh: $(basename "$project") produced no test summary (crash or hang): counted as 1 failed" >&2
            crashed=$((crashed + 1))
            continue
        fi
        local f p s
        f="$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")"
        p="$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")"
        s="$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")"
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    done
    rm -f "$log"
    failed=$((failed + crashed))
    if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    [ "$failed" -eq 0 ]
}

run_default_topology() {
    publish_relay
    local relay="$RELAY_BIN"
    local state="$ROOT/.run"
    mkdir -p "$state"
    local token_file="$state/admin.token"
    if [ ! -s "$token_file" ]; then
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file"; echo >> "$token_file")
    fi
    local psk_file="$state/echo.psk"
    if [ ! -s "$psk_file" ]; then
        (umask 077; head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$psk_file")
    fi
    RELAY_ECHO_PSK="$(cat "$psk_file")"
    export RELAY_ECHO_PSK
    # Global, not local: the EXIT trap runs after this function has returned.
    SAMPLE_PIDS=()
    cleanup() {
        for pid in "${SAMPLE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
        for pid in "${SAMPLE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    }
    trap cleanup EXIT INT TERM
    "$relay" sample-server --listen 127.0.0.1:7101 --id game-a > "$state/game-a.log" 2>&1 &
    SAMPLE_PIDS+=($!)
    "$relay" sample-server --listen 127.0.0.1:7102 --id game-b > "$state/game-b.log" 2>&1 &
    SAMPLE_PIDS+=($!)
    # An agent beside each backend keeps shadow sessions warm for echo and splice (docs/agent.md).
    "$relay" agent --id game-a --control 127.0.0.1:7201 --backend 127.0.0.1:7101 --path 127.0.0.1 > "$state/agent-a.log" 2>&1 &
    SAMPLE_PIDS+=($!)
    "$relay" agent --id game-b --control 127.0.0.1:7202 --backend 127.0.0.1:7102 --path 127.0.0.1 > "$state/agent-b.log" 2>&1 &
    SAMPLE_PIDS+=($!)
    cat <<MSG

Relay's default topology (config/relay.json):
  clients -> relay 127.0.0.1:7000 (route "game") -> sample backends game-a 127.0.0.1:7101, game-b 127.0.0.1:7102
  an agent beside each backend (127.0.0.1:7201, :7202): every session is echoed to the other backend
  admin API -> http://127.0.0.1:9901, bearer token in $token_file

Try, in another terminal:
  python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",7000)); s.sendall(b"HELLO\nMOVE 1 2\nSCORE 5\nSTATE\nQUIT\n"); sys.stdout.write(s.makefile().read())'
  (or: telnet 127.0.0.1 7000, then type HELLO, MOVE 1 2, SCORE 5, ECHO hi, STATE, QUIT)
  Splice: keep a telnet session open, find its endpoint with the sessions call below, and kill -9
  that backend (game-a is pid ${SAMPLE_PIDS[0]}, game-b ${SAMPLE_PIDS[1]}): the session goes on, STATE
  keeps its history. Or move it: curl -X POST -H "Authorization: Bearer \$(cat $token_file)" http://127.0.0.1:9901/api/sessions/1/migrate
  (WHO names the backend, so a session that sends it has a Diverged shadow and cannot move.)
  curl -H "Authorization: Bearer \$(cat $token_file)" http://127.0.0.1:9901/api/endpoints
  curl -H "Authorization: Bearer \$(cat $token_file)" http://127.0.0.1:9901/api/sessions
  curl -H "Authorization: Bearer \$(cat $token_file)" http://127.0.0.1:9901/metrics
  curl -X POST -H "Authorization: Bearer \$(cat $token_file)" http://127.0.0.1:9901/api/endpoints/game-a/drain   # its sessions move to game-b
  edit config/relay.json: routes and clusters reload live
Stop with Ctrl+C: the relay drains live sessions, then exits.

MSG
    "$relay" --config "$ROOT/config/relay.json" --admin-token-file "$token_file" "$@"
}

case "${1:-}" in
    test) shift; run_tests "$@" ;;
    publish) publish_relay; echo "$RELAY_BIN ($RELAY_BUILD)" ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) run_default_topology "$@" ;;
esac
