#!/usr/bin/env bash
# Writes the diffs the book shows between two steps, from the sources.
#
#   book/gen-diffs.sh            # refresh book/src/diffs/
#   book/gen-diffs.sh DIR        # write them to DIR instead (the test does)
#
# tests/tests/book.rs runs this into a temporary directory and fails if the
# committed diffs differ: after editing an example, run it and commit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/book/src/diffs}"
mkdir -p "$out"
cd "$root"

# diff FROM TO [FILE]: the unified diff of FROM/FILE against TO/FILE, with
# fixed labels (no timestamps) so the output depends on the sources only.
pair() {
    local from=$1 to=$2 file=${3:-src/main.rs}
    local name="${from%%_*}_to_${to%%_*}.diff"
    local status=0
    LC_ALL=C diff -u --label "$from/$file" --label "$to/$file" \
        "$from/$file" "$to/$file" >"$out/$name" || status=$?
    # diff exits 1 when the files differ (the point), 2 on trouble.
    if [ "$status" -gt 1 ]; then
        echo "gen-diffs: diff $from $to failed" >&2
        exit 1
    fi
}

pair example01_blocking example02_loop
pair example02_loop example03_epoll_level
pair example03_epoll_level example04_epoll_edge
pair example03_epoll_level example05_cork
pair example03_epoll_level example06_nodelay
pair example02_loop example07_threads
pair example03_epoll_level example08_select_poll
pair example04_epoll_edge example11_timeouts
pair example04_epoll_edge example12_chat
pair example04_epoll_edge example13_many_cores
pair example04_epoll_edge example14_mio
pair example04_epoll_edge example15_tokio
pair example04_epoll_edge example16_io_uring
