# perf/procs.sh: sourced by perf scripts that start their own servers and proxies. Makes the run's
# scratch directory ($work) and the list of started processes ($pids), ends those processes (only
# those) and removes $work on exit, and waits for a process to listen. The sourcing script defines
# die first.
work="$(mktemp -d)"; pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# wait_listen PORT PID: until something listens on 127.0.0.1:PORT; dies if PID exits first or after 10 s.
wait_listen() {
    for _ in $(seq 1 200); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "process $2 exited before listening on $1"
        sleep 0.05
    done
    die "nothing listens on $1 after 10 s"
}
