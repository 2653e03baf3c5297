#!/usr/bin/env bash
# The chat server (example 12) under load, measured: lines delivered per
# second and the server's CPU time per delivered line, for 2 to 1,000
# readers; its memory with a client that never reads. The chat speaks
# lines, not HTTP, so measure.sh's runs do not fit it; this is its own.
#
#   loadgen/chat.sh                       # the runs the chat chapter shows
#   loadgen/chat.sh --readers 50 --lines 20000   # one run (chatload's options)
#   STRACE=1 loadgen/chat.sh --readers 10 --lines 20000
#                                         # and system calls per delivered line
#
# Each run starts a fresh server (release build, --quiet) on a free port.
# One sender sends LINES lines of 100 bytes; every other reader gets each
# one. chatload keeps the senders at most 256 KiB ahead of the slowest
# reader (loadgen/src/chat.rs), so this measures delivery, not how soon
# the server cuts off readers that fall behind. Server CPU comes from
# /proc/PID/stat in 10 ms ticks. On a shared machine, CPU per line moves
# less than lines per second: compare that first.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p example12_chat -p loadgen >&2
tmp=$(mktemp -d)
SPID= STRACE_PID=
cleanup() {
    [[ -n $STRACE_PID ]] && kill "$STRACE_PID" 2>/dev/null || true
    [[ -n $SPID ]] && kill "$SPID" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# run CHATLOAD_ARGS...: one fresh server, one chatload run.
run() {
    target/release/example12_chat --quiet --addr 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    SPID=$!
    local addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$tmp/out")
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n $addr ]] || { echo "the chat did not start: $(cat "$tmp/err")" >&2; exit 1; }
    if [[ -n ${STRACE:-} ]]; then
        strace -f -c -p "$SPID" -o "$tmp/strace" 2>/dev/null &
        STRACE_PID=$!
        # strace says nothing once attached: wait for the tracer to show.
        for _ in $(seq 50); do
            grep -q "^TracerPid:[[:space:]]*[1-9]" /proc/"$SPID"/status && break
            sleep 0.1
        done
    fi
    target/release/chatload --server-pid "$SPID" "$@" "$addr" | tee "$tmp/report"
    if [[ -n $STRACE_PID ]]; then
        kill -INT "$STRACE_PID"
        wait "$STRACE_PID" 2>/dev/null || true
        STRACE_PID=
        delivered=$(sed -n 's/^delivered \([0-9]*\) lines.*/\1/p' "$tmp/report")
        # strace -c: "% time seconds usecs/call calls [errors] syscall".
        awk -v n="$delivered" '
            /^-/ || /^%/ || NF < 5 || $NF == "total" { next }
            { printf "  %-14s %10d calls %8.4f per delivered line\n", $NF, $4, $4 / n; total += $4 }
            END { printf "  %-14s %10d calls %8.4f per delivered line\n", "total", total, total / n }
        ' "$tmp/strace" | sort -k2 -n -r
    fi
    kill "$SPID"
    wait "$SPID" 2>/dev/null || true
    SPID=
    echo
}

if [[ $# -gt 0 ]]; then
    run "$@"
    exit
fi
# About 10 million deliveries a run, from 2 readers to 1,000.
run --readers 2 --lines 10000000
run --readers 10 --lines 1000000
run --readers 100 --lines 100000
run --readers 1000 --lines 10000
# A client that never reads, beside 10 that do: the server's peak memory.
run --readers 10 --stalled 1 --lines 1000000
