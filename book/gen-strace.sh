#!/usr/bin/env bash
# Writes the system calls that example 3 and example 4 make for one request,
# as the chapter "One request under strace" shows them.
#
#   book/gen-strace.sh            # refresh book/src/strace/
#   book/gen-strace.sh DIR        # write them to DIR instead (the test does)
#
# Needs strace and curl (bash's /dev/tcp is the second client). The servers
# are the debug builds that `cargo run` makes; set BIN_DIR to use binaries
# already built elsewhere. tests/tests/book.rs runs this into a temporary
# directory and fails if the committed files differ: after changing what a
# server does for one request, run it and commit.
#
# What is normalised, so that the output depends on the programs only: the
# file descriptor numbers become names (EPFD, LISTENER, CONN), the client's
# port becomes PORT, and pointers (addresses in the server's memory) become
# ADDR. Only the calls from the epoll_wait that reports the client to the
# close(2) of its socket are kept: start-up and shut-down are left out.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/book/src/strace}"
mkdir -p "$out"

for tool in strace curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "gen-strace: $tool is not installed (apt-get install -y $tool)" >&2
        exit 2
    fi
done

if [ -z "${BIN_DIR:-}" ]; then
    cargo build --quiet --manifest-path "$root/Cargo.toml" \
        -p example03_epoll_level -p example04_epoll_edge
    target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    BIN_DIR="$target/debug"
fi

work=$(mktemp -d)
tracer="" server="" tailer=""
cleanup() {
    for pid in $tailer $server $tracer; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "gen-strace: $*" >&2
    for file in "$work/stderr" "$work/trace"; do
        if [ -s "$file" ]; then
            echo "--- the end of ${file##*/}:" >&2
            tail -n 20 "$file" >&2
        fi
    done
    exit 1
}

# await REGEX: reads the trace as strace writes it until a line matches
# (BASH_REMATCH holds the groups). strace writes each call's line when the
# call returns, so a line in the trace is a readiness signal: the server
# has done that much. Gives up after 30 s without a new line.
await() {
    local line
    while IFS= read -r -t 30 -u "$trace_fd" line; do
        [[ $line =~ $1 ]] && return 0
    done
    fail "no line matching '$1' in the trace"
}

# The two clients. Each sends the same request: curl's, without the two
# headers (User-Agent, Accept) whose text depends on curl's version. The
# split client sends it in two pieces, each with one write(2) by cat (bash's
# printf may write a line at a time).
printf 'GET / HTTP/1.0\r\n' >"$work/request-head"
printf 'Host: localhost\r\n\r\n' >"$work/request-rest"

# One request in one piece, as `curl http://127.0.0.1:PORT/` sends it.
client_curl() {
    curl -sS --http1.0 -H 'Host: localhost' -H 'User-Agent:' -H 'Accept:' \
        -o "$work/response" "http://127.0.0.1:$1/"
    await '^accept4\([0-9]+, .*\) += ([0-9]+)$'
    conn=${BASH_REMATCH[1]}
}

# The same request in two pieces: the request line, then (once the server
# has read it and found nothing more to read) the rest.
client_split() {
    local sock
    exec {sock}<>"/dev/tcp/127.0.0.1/$1"
    cat "$work/request-head" >&"$sock"
    await '^accept4\([0-9]+, .*\) += ([0-9]+)$'
    conn=${BASH_REMATCH[1]}
    await "^recvfrom\\($conn, .*= -1 EAGAIN"
    cat "$work/request-rest" >&"$sock"
    cat <&"$sock" >"$work/response"
    exec {sock}>&-
}

# trace SERVER CLIENT FILE: runs SERVER under strace, lets CLIENT make one
# request, and writes the normalised calls of that request to FILE.
trace() {
    local name=$1 client=$2 file=$3 line port
    rm -f "$work/trace" "$work/stdout" "$work/response" "$work/stderr"
    mkfifo "$work/stdout"
    # -s 256: print whole request and response strings, not 32 bytes.
    strace -s 256 -o "$work/trace" -- "$BIN_DIR/$name" --addr 127.0.0.1:0 --quiet \
        >"$work/stdout" 2>"$work/stderr" &
    tracer=$!
    exec {stdout_fd}<"$work/stdout"
    IFS= read -r -t 30 -u "$stdout_fd" line || fail "$name did not say it was listening"
    port=${line##*:}
    # strace's only child: the server.
    read -r server _ <"/proc/$tracer/task/$tracer/children" || [ -n "$server" ] ||
        fail "strace started no server"
    exec {trace_fd}< <(exec tail -n +1 -f "$work/trace")
    tailer=$!

    "$client" "$port"
    grep -q 'Hello, world!' "$work/response" || fail "$name did not answer"
    # The server closes the client's socket after the client has its
    # answer: wait for the close(2), so the trace holds the whole request.
    await "^close\\($conn\\) "

    # SIGTERM: the server leaves its loop and exits. Its end (and strace's)
    # of the stdout pipe then closes, which is the signal that it is done.
    kill -TERM "$server"
    local got=0
    while [ "$got" -eq 0 ]; do
        IFS= read -r -t 30 -u "$stdout_fd" line || got=$?
    done
    [ "$got" -le 128 ] || fail "$name did not exit after SIGTERM"
    wait "$tracer" || fail "strace or $name failed"
    kill "$tailer" 2>/dev/null || true
    exec {trace_fd}<&- {stdout_fd}<&-
    tracer="" server="" tailer=""

    normalise "$work/trace" >"$work/$file"
}

# normalise TRACE: the calls of the request, from the epoll_wait that
# reports the client (the first after the "listening on" line is written)
# to the close(2) of its socket, with the machine's noise replaced.
normalise() {
    local window epfd listener conn
    window=$(awk '
        /^write\(1, "listening on / { listening = 1; next }
        listening && !started && /^epoll_wait\(/ { started = 1 }
        started { print }
        started && /^accept4\(.*\) += [0-9]+$/ { conn = $NF }
        started && conn != "" && index($0, "close(" conn ")") == 1 { exit }
    ' "$1")
    epfd=$(sed -nE '1s/^epoll_wait\(([0-9]+), .*/\1/p' <<<"$window")
    listener=$(sed -nE 's/^accept4\(([0-9]+), .*\) += [0-9]+$/\1/p' <<<"$window")
    conn=$(sed -nE 's/^accept4\([0-9]+, .*\) += ([0-9]+)$/\1/p' <<<"$window")
    [ -n "$epfd" ] && [ -n "$listener" ] && [ -n "$conn" ] ||
        fail "the trace has no epoll_wait and accept4 after the listening line"

    # Each fd number is replaced only where strace prints an fd: as a
    # call's first argument, as the fd that epoll_ctl changes, in the
    # token (the examples' token is the fd number), and as accept4's
    # result. Numbers elsewhere (lengths, counts) stay.
    local sed_fds=() fd name
    for pair in "$epfd:EPFD" "$listener:LISTENER" "$conn:CONN"; do
        fd=${pair%%:*} name=${pair#*:}
        sed_fds+=(-e "s/^([a-z0-9_]+)\\($fd([,)])/\\1($name\\2/"
            -e "s/(EPOLL_CTL_[A-Z]+), $fd,/\\1, $name,/"
            -e "s/u32=$fd, u64=$fd\\}/u32=$name, u64=$name}/g")
    done
    printf '%s\n' "$window" |
        sed -E "${sed_fds[@]}" \
            -e "s/^(accept4\\(.*\\)) += $conn\$/\\1 = CONN/" \
            -e 's/htons\([0-9]+\)/htons(PORT)/g' \
            -e 's/0x[0-9a-f]{8,}/ADDR/g' |
        align
}

# align: strace pads each call to column 40 before "= result"; names are
# longer than numbers, so pad again, the same way.
align() {
    awk '{
        # The result follows the last ")" that is followed by spaces and "= ".
        last = 0; seen = 0; rest = $0
        while (match(rest, /\) += /)) {
            last = seen + RSTART; seen = last; rest = substr(rest, RSTART + 1)
        }
        if (!last) { print; next }
        call = substr($0, 1, last)
        result = substr($0, last + 1); sub(/^ +/, "", result)
        if (length(call) < 40) printf "%-40s%s\n", call, result
        else printf "%s %s\n", call, result
    }'
}

trace example03_epoll_level client_curl example03.txt
trace example04_epoll_edge client_curl example04.txt
trace example04_epoll_edge client_split example04-split.txt

# The book shows each trace with its lines numbered (the chapter's notes
# refer to them by number)...
for file in example03.txt example04.txt example04-split.txt; do
    awk '{ printf "%2d  %s\n", NR, $0 }' "$work/$file" >"$out/$file"
done
# ...and what edge-triggered changes, as a diff of the two traces.
status=0
(cd "$work" && LC_ALL=C diff -u --label example03.txt --label example04.txt \
    example03.txt example04.txt) >"$out/example03_to_example04.diff" || status=$?
[ "$status" -le 1 ] || fail "diff failed"
