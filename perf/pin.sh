# perf/pin.sh: sourced by the perf scripts that time a proxy. Pinned (the default), the proxy under
# test has CPU 1 to itself and every other process of the run (clients, backends, agents) shares
# CPU 0, as the proxy would have its own host's CPU in a deployment. Unpinned (the scripts'
# --unpinned), the kernel places everything. The sourcing script sets pin=1 or pin=0 first.
proxy_cpu=1
load_cpu=0

# on_cpu CPU: the taskset prefix for a CPU, or nothing when unpinned.
on_cpu() { if [[ $pin -eq 1 ]]; then echo "taskset -c $1"; fi; }

# check_pinning SCRIPT: a machine with one CPU runs unpinned, and the script says so.
check_pinning() {
    if [[ $pin -eq 1 && $(nproc) -lt 2 ]]; then
        echo "$1: only $(nproc) CPU: running unpinned" >&2
        pin=0
    fi
    if [[ $pin -eq 1 ]] && ! command -v taskset >/dev/null; then
        echo "$1: missing taskset (util-linux)" >&2
        exit 2
    fi
}
