#!/usr/bin/env bash
# System calls per request: what a server asks of the kernel for each
# request, counted by strace, with the start-up left out.
#
#   loadgen/syscalls.sh example04_epoll_edge            # a workspace server
#   loadgen/syscalls.sh example13_many_cores --workers 1
#   loadgen/syscalls.sh --pid PID --addr 127.0.0.1:PORT # one already running
#                                                       # (an nginx worker)
#
# It starts the server (release build) on a free port, attaches
# `strace -f -c` to every thread of it once it is listening, sends N
# requests from loadgen (one connection each, C at a time), detaches, and
# prints one line per system call with its calls per request, then the
# total. strace slows each call down a lot: use it for counts, never for
# time. Settings (environment): N=5000 C=20.
#
# COUNTER=perf counts with the kernel's syscall tracepoints (perf stat)
# instead, which barely slow the server: where the counts depend on timing
# (is the request already there when accept(2) returns?), a server slowed
# down by strace takes other paths than at full speed. It counts the calls
# servers here make, by name, and every other call as "other".
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-5000}
C=${C:-20}
COUNTER=${COUNTER:-strace}
case $COUNTER in
strace) command -v strace >/dev/null || { echo "syscalls.sh needs strace (apt-get install strace)" >&2; exit 2; } ;;
perf) command -v perf >/dev/null || { echo "COUNTER=perf needs perf (apt-get install linux-perf)" >&2; exit 2; } ;;
*) echo "COUNTER is strace or perf, not $COUNTER" >&2; exit 2 ;;
esac

tmp=$(mktemp -d)
SPID= STRACE=
cleanup() {
    [[ -n $STRACE ]] && kill "$STRACE" 2>/dev/null || true
    [[ -n $SPID ]] && kill "$SPID" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --release -q -p loadgen >&2
if [[ ${1:-} == --pid ]]; then
    pid=$2 addr=${4:?--pid PID --addr IP:PORT}
else
    binary=${1:?usage: syscalls.sh BINARY [ARGS...] | --pid PID --addr IP:PORT}
    shift
    cargo build --release -q -p "$binary" >&2
    : >"$tmp/out" # exists before the server has opened it
    "target/release/$binary" --addr 127.0.0.1:0 --quiet "$@" >"$tmp/out" 2>"$tmp/err" &
    SPID=$!
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$tmp/out")
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n ${addr:-} ]] || { echo "$binary did not start: $(cat "$tmp/err")" >&2; exit 1; }
    pid=$SPID
fi

# One request first, so that whatever a server does once (a first
# allocation, a lazily created thread) stays out of the count.
target/release/loadgen -c 1 -n 1 "http://$addr/" >/dev/null

if [[ $COUNTER == perf ]]; then
    # raw_syscalls:sys_enter counts every system call; the others, one each.
    names=(accept accept4 ioctl fcntl setsockopt epoll_wait epoll_pwait epoll_ctl
        read recvfrom write writev sendto sendmsg shutdown close getrusage futex)
    events=raw_syscalls:sys_enter
    for name in "${names[@]}"; do events+=",syscalls:sys_enter_$name"; done
    # -p counts every thread the process has when perf starts.
    perf stat -x, -e "$events" -p "$pid" -o "$tmp/perf" 2>"$tmp/perf.err" &
    STRACE=$!
    # perf says nothing when it is counting; give it a moment to open its
    # events (the load below would otherwise start uncounted).
    sleep 1
    target/release/loadgen -c "$C" -n "$N" "http://$addr/" >&2
    kill -INT "$STRACE"
    wait "$STRACE" 2>/dev/null || true
    STRACE=
    # perf stat -x,: "count,unit,event,...", one line per event.
    awk -F, -v n="$N" '
        $3 == "raw_syscalls:sys_enter" { total = $1; next }
        $3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 {
            name = substr($3, length("syscalls:sys_enter_") + 1)
            named += $1; printf "%-16s %8.2f\n", name, $1 / n
        }
        END {
            if (total > named) printf "%-16s %8.2f\n", "other", (total - named) / n
            printf "%-16s %8.2f\n", "total", total / n
        }' "$tmp/perf" | sort -k2 -n -r
    exit 0
fi

# -f with -p attaches to every thread of the process, not only the first.
strace -f -c -p "$pid" -o "$tmp/strace" 2>"$tmp/strace.err" &
STRACE=$!
# strace says nothing when it is attached; wait until every thread of the
# server shows a tracer in /proc (TracerPid), at most 5 s.
for _ in $(seq 50); do
    untraced=0
    for status in /proc/"$pid"/task/*/status; do
        tracer=$(awk '/^TracerPid:/ { print $2 }' "$status" 2>/dev/null || echo 0)
        [[ $tracer == 0 ]] && untraced=$((untraced + 1))
    done
    ((untraced == 0)) && break
    sleep 0.1
done
target/release/loadgen -c "$C" -n "$N" "http://$addr/" >&2
kill -INT "$STRACE"
wait "$STRACE" 2>/dev/null || true
STRACE=

# strace -c: "% time seconds usecs/call calls [errors] syscall", one line
# per call, then a total line.
awk -v n="$N" '
    /^-/ || /^%/ || NF < 5 { next }
    $NF == "total" { next }
    { calls[$NF] = $4 }
    END {
        for (name in calls) { total += calls[name]; printf "%-16s %8.2f\n", name, calls[name] / n }
        printf "%-16s %8.2f\n", "total", total / n
    }' "$tmp/strace" | sort -k2 -n -r
