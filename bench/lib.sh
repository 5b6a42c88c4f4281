# Shared helpers for the bench drivers (sourced, not run).

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (up to 20 s) until the server on port $1 answers /health/ready.
wait_ready() {
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null && return 0
        sleep 0.2
    done
    echo "server on port $1 did not become ready" >&2
    return 1
}

# User + system CPU clock ticks spent so far by process $1.
proc_cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# "steal total" jiffies of the whole host so far (from /proc/stat).
host_steal() {
    awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}
