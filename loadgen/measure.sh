#!/usr/bin/env bash
# Measure the servers side by side and print one JSON line per run on stdout
# (progress goes to stderr). Then turn the lines into tables and charts:
#
#   loadgen/measure.sh > run.jsonl
#   cargo run -p loadgen --bin report -- run.jsonl --out book/src/results
#
# What it runs, each measurement ROUNDS times (the report shows medians):
#   1. every concurrent example (03 and up), and nginx with one worker and
#      with two when it is installed (the CPU time of both workers summed):
#      loadgen -c 100 -n N, with no idle connection and
#      with IDLE idle connections held open; all servers run at once and the
#      rounds take them in turn;
#   2. loadgen and ab (apache2-utils) in alternating rounds on example04,
#      each with its own CPU time and the server's;
#   3. the listen-backlog experiment: example04 with --backlog 1, 50, 1024.
#
# Settings (environment): ROUNDS=3 AB_ROUNDS=2*ROUNDS N=20000 IDLE=10000
# BACKLOG_SECONDS=3 PAUSE=1. ONLY="example04_epoll_edge nginx" measures only
# the servers with those labels, and skips parts 2 and 3 (for a quick
# comparison of a new server with its neighbours). On a shared machine, requests/s move with
# whatever else runs: more rounds, and the CPU-per-request columns, help.
# Each run's connections leave the *server's* side in TIME_WAIT (the server
# closes first), not ours; PAUSE seconds between runs let the machine settle.
# Server CPU time comes from /proc/PID/stat in clock ticks (10 ms): with N =
# 20000 requests at ~20 µs each, one tick is ~2.5% of a figure.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
AB_ROUNDS=${AB_ROUNDS:-$((ROUNDS * 2))}
N=${N:-20000}
IDLE=${IDLE:-10000}
BACKLOG_SECONDS=${BACKLOG_SECONDS:-3}
PAUSE=${PAUSE:-1}
CONCURRENCY=100
BODY='Hello, world!'

say() { printf '%s\n' "$*" >&2; }

# The servers: "label binary arguments...". Steps 01 and 02 serve one
# client at a time (100 concurrent clients would measure only waiting);
# steps 07 and 08 take part once their packages are in the workspace.
mapfile -t PACKAGES < <(cargo metadata --no-deps --format-version 1 | jq -r '.packages[].name')
# (Not `printf | grep -q`: under pipefail, grep -q leaving early can kill
# printf with SIGPIPE and fail the test for a package that is there.)
has() { [[ " ${PACKAGES[*]} " == *" $1 "* ]]; }
SERVERS=(
    "example03_epoll_level example03_epoll_level"
    "example04_epoll_edge example04_epoll_edge"
    "example05_cork example05_cork"
    "example06_nodelay example06_nodelay"
)
build=(-p loadgen -p example03_epoll_level -p example04_epoll_edge -p example05_cork -p example06_nodelay)
if has example07_threads; then
    # One thread per connection, the idle ones too: allow enough threads.
    SERVERS+=("example07_threads example07_threads --max-threads $((IDLE + 1000))")
    build+=(-p example07_threads)
fi
if has example13_many_cores; then
    # One worker, to stand beside nginx's one; two, one per core; and the
    # floor: accept and close at once, the kernel's own work per
    # connection (its clients see resets: CPU per connection, see below).
    SERVERS+=("example13_many_cores example13_many_cores --workers 1"
        "example13_2_workers example13_many_cores --workers 2"
        "example13_accept_only example13_many_cores --workers 1 --accept-only")
    build+=(-p example13_many_cores)
fi
if has example08_select_poll; then
    # select cannot watch an fd of 1024 or more: no idle runs for it.
    SERVERS+=("example08_select example08_select_poll --poller select"
        "example08_poll example08_select_poll --poller poll")
    build+=(-p example08_select_poll)
fi
if has example11_timeouts; then
    # A request timeout longer than any run, so that the idle connections
    # stay: its idle rows are then CPU per request with IDLE deadlines
    # pending, beside example04's with none.
    SERVERS+=("example11_timeouts example11_timeouts --request-timeout 600")
    build+=(-p example11_timeouts)
fi
if has example14_mio; then
    SERVERS+=("example14_mio example14_mio")
    build+=(-p example14_mio)
fi
if has example15_tokio; then
    # Both runtimes: one thread, and one worker per CPU.
    SERVERS+=("example15_tokio example15_tokio --runtime current-thread"
        "example15_tokio_mt example15_tokio --runtime multi-thread")
    build+=(-p example15_tokio)
fi
if has example16_io_uring; then
    # io_uring: one multishot accept for every client, and the single-shot
    # fallback of kernels before 5.19 (one accept submission per client).
    SERVERS+=("example16_io_uring example16_io_uring"
        "example16_io_uring_single example16_io_uring --no-multishot")
    build+=(-p example16_io_uring)
fi
ONLY=${ONLY:-}
wanted() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }
if [[ -n $ONLY ]]; then
    kept=()
    for entry in "${SERVERS[@]}"; do
        if wanted "${entry%% *}"; then kept+=("$entry"); fi
    done
    SERVERS=("${kept[@]}")
fi
say "servers: $(printf '%s, ' "${SERVERS[@]%% *}")"
cargo build --release -q "${build[@]}" >&2
LOADGEN=target/release/loadgen

# The machine, for the report.
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
printf '{"machine": "%s cores, %s, Linux %s, somaxconn %s, load average at the start %s"}\n' \
    "$(nproc)" "$cpu" "$(uname -r)" "$(cat /proc/sys/net/core/somaxconn)" "$(cut -d' ' -f1-3 /proc/loadavg)"

# Each connection is a file descriptor here and at the server; the servers
# inherit this limit.
ulimit -n "$(ulimit -Hn)" || true
if (($(ulimit -n) < IDLE + 200)); then
    say "open-file limit $(ulimit -n) is below IDLE + 200: runs with $IDLE idle connections will fail (raise it as root: ulimit -Hn $((IDLE + 200)))"
fi

tmp=$(mktemp -d)
SPID=
EXTRA_PIDS=()
cleanup() {
    if [[ -n $SPID ]]; then kill "$SPID" 2>/dev/null || true; fi
    for pid in "${EXTRA_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pidfile in "$tmp"/nginx*/nginx.pid; do
        if [[ -f $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start_server BINARY ARGS...: starts it on a free port; sets SPID, SADDR.
STARTS=0
start_server() {
    # Each server its own output files: several run at once.
    STARTS=$((STARTS + 1))
    local out=$tmp/out.$STARTS err=$tmp/err.$STARTS
    : >"$out" # exists before the server has opened it
    "target/release/$1" --addr 127.0.0.1:0 --quiet "${@:2}" >"$out" 2>"$err" &
    SPID=$!
    for _ in $(seq 100); do
        SADDR=$(sed -n 's/^listening on //p' "$out")
        [[ -n $SADDR ]] && return 0
        sleep 0.1
    done
    say "$1 did not start: $(cat "$err")"
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
    return 1
}

stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

# run LABEL PID ARGS...: one loadgen run, one JSON line. PID may be
# several, comma-separated (nginx's workers): their CPU time is summed.
run() {
    local label=$1 pid=$2
    shift 2
    sleep "$PAUSE"
    if [[ $label == *_accept_only ]]; then
        floor_run "$label" "$pid" "$@"
    elif ! "$LOADGEN" --json --label "$label" --server-pid "$pid" --expect-body "$BODY" "$@"; then
        say "  $label $*: failed (see above), left out"
    fi
}

# floor_run LABEL PID ARGS...: a run against a server that closes every
# connection unanswered. Every request fails, so loadgen has no completed
# request to divide the server's CPU time by: divide it by the
# connections instead (completed + failed), from the clock ticks of
# /proc/PID/stat as ab_run does.
floor_run() {
    local label=$1 pid=$2 before after
    shift 2
    before=$(ticks "$pid")
    "$LOADGEN" --json --label "$label" "$@" >"$tmp/floor.json" || true
    after=$(ticks "$pid")
    jq -c --argjson ticks $((after - before)) --argjson hz "$(getconf CLK_TCK)" \
        '.server_cpu_us_per_request = $ticks * 1e6 / $hz / ([.completed + .failed, 1] | max)' \
        "$tmp/floor.json"
}

# ticks PID: the process's utime + stime in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ab_run LABEL PID URL: one ab run as a JSON line shaped like loadgen's.
ab_run() {
    local label=$1 pid=$2 url=$3
    sleep "$PAUSE"
    local before after hz=$(getconf CLK_TCK)
    before=$(ticks "$pid")
    /usr/bin/time -f '%U %S' -o "$tmp/abtime" ab -q -c "$CONCURRENCY" -n "$N" "$url" >"$tmp/ab" 2>&1 || true
    after=$(ticks "$pid")
    awk -v label="$label" -v url="$url" -v c="$CONCURRENCY" -v hz="$hz" \
        -v server_ticks=$((after - before)) -v cpu="$(cat "$tmp/abtime" | tail -1)" '
        /^Complete requests:/ { done = $3 }
        /^Failed requests:/ { failed = $3 }
        /^Time taken for tests:/ { secs = $5 }
        /^ +50%/ { p50 = $2 * 1000 } /^ +90%/ { p90 = $2 * 1000 }
        /^ +99%/ { p99 = $2 * 1000 } /^ +100%/ { pmax = $2 * 1000 }
        END {
            split(cpu, t, " "); ok = done - failed
            printf "{\"label\":\"%s\",\"url\":\"%s\",\"concurrency\":%d,\"threads\":1,\"idle_held\":0,", label, url, c
            printf "\"completed\":%d,\"failed\":%d,\"errors\":{},\"elapsed_s\":%f,\"requests_per_s\":%f,", ok, failed, secs, ok / secs
            printf "\"latency\":{\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"mean_us\":0},", p50, p90, p99, pmax
            printf "\"client_cpu_us_per_request\":%f,\"server_cpu_us_per_request\":%f,", (t[1] + t[2]) * 1e6 / ok, server_ticks * 1e6 / hz / ok
            printf "\"client\":\"ab\",\"kernel\":{}}\n"
        }' "$tmp/ab"
}

# 1. The servers side by side. Every server is started first, then each
# round runs once against each server in turn: whatever else the machine
# does during the measurement (a build, a browser) then falls on all of
# them alike, instead of on whichever server happened to be measured then.
LABELS=() PIDS=() ADDRS=() EXTRA_PIDS=()
for entry in "${SERVERS[@]}"; do
    read -r label binary args <<<"$entry"
    # shellcheck disable=SC2086 # the arguments split on purpose
    start_server "$binary" $args || continue
    LABELS+=("$label") PIDS+=("$SPID") ADDRS+=("$SADDR")
    EXTRA_PIDS+=("$SPID")
    SPID=
done

# start_nginx LABEL WORKERS: nginx with WORKERS worker processes on a free
# port, measured like the examples: its CPU time is its workers'.
start_nginx() {
    local label=$1 workers=$2 dir=$tmp/$1 port master pids
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
worker_rlimit_nofile $((IDLE + 200));
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log crit;
events { worker_connections $((IDLE + 200)); use epoll; }
http {
    access_log off;
    server_tokens off;
    server {
        listen 127.0.0.1:$port backlog=1024;
        location / { default_type text/plain; return 200 "$BODY"; }
    }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" &
    master=$!
    EXTRA_PIDS+=("$master")
    pids=
    for _ in $(seq 100); do
        pids=$(pgrep -P "$master" | paste -sd, || true)
        [[ $(tr ',' '\n' <<<"$pids" | grep -c .) -ge $workers ]] && break
        sleep 0.1
    done
    if [[ -n $pids ]]; then
        LABELS+=("$label") PIDS+=("$pids") ADDRS+=("127.0.0.1:$port")
    else
        say "nginx did not start: $(cat "$dir/logs/error.log" 2>/dev/null)"
    fi
}

if ! command -v nginx >/dev/null; then
    if wanted nginx; then say "nginx is not installed: no nginx rows (apt-get install -y nginx)"; fi
else
    if wanted nginx; then start_nginx nginx 1; fi
    if wanted nginx_2_workers; then start_nginx nginx_2_workers 2; fi
fi

for round in $(seq "$ROUNDS"); do
    say "== round $round of $ROUNDS, no idle connection: ${LABELS[*]}"
    for i in "${!LABELS[@]}"; do
        run "${LABELS[$i]}" "${PIDS[$i]}" -c "$CONCURRENCY" -n "$N" "http://${ADDRS[$i]}/"
    done
done
for round in $(seq "$ROUNDS"); do
    say "== round $round of $ROUNDS, $IDLE idle connections held"
    for i in "${!LABELS[@]}"; do
        # select cannot watch an fd of 1024 or more: no idle runs for it.
        [[ ${LABELS[$i]} == example08_select ]] && continue
        # The floor closes every connection, the idle ones too.
        [[ ${LABELS[$i]} == *_accept_only ]] && continue
        run "${LABELS[$i]}" "${PIDS[$i]}" -c "$CONCURRENCY" -n "$N" --idle "$IDLE" "http://${ADDRS[$i]}/"
    done
done
for pid in "${EXTRA_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
EXTRA_PIDS=()

# 2. loadgen against ab, on the same server, alternating.
if [[ -n $ONLY ]]; then
    say "ONLY is set: no ab comparison, no backlog runs"
elif command -v ab >/dev/null; then
    say "== loadgen against ab"
    start_server example04_epoll_edge
    for _ in $(seq "$AB_ROUNDS"); do
        run "ab comparison: example04_epoll_edge" "$SPID" -c "$CONCURRENCY" -n "$N" "http://$SADDR/"
        ab_run "ab comparison: example04_epoll_edge" "$SPID" "http://$SADDR/"
    done
    stop_server
else
    say "ab is not installed: no comparison (apt-get install -y apache2-utils)"
fi

# 3. The listen backlog. A run starts new requests for BACKLOG_SECONDS, then
# waits for the last ones: up to --timeout 30, since with backlog 1 some
# connections stall for tens of seconds (their handshake's last ACK was
# dropped while the accept queue was full).
backlogs=(1 50 1024)
[[ -n $ONLY ]] && backlogs=()
for backlog in "${backlogs[@]}"; do
    say "== backlog $backlog"
    start_server example04_epoll_edge --backlog "$backlog"
    for _ in $(seq "$ROUNDS"); do
        run "backlog $backlog" "$SPID" -c "$CONCURRENCY" --duration "$BACKLOG_SECONDS" --timeout 30 "http://$SADDR/"
    done
    stop_server
done

printf '{"machine": "load average at the end %s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
