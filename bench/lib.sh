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
