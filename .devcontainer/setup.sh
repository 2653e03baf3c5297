#!/usr/bin/env bash
# Everything the book's commands and the tests need, on Debian or Ubuntu:
# the one recipe behind the dev container (.devcontainer/Dockerfile runs
# it) and behind CI (.ci/run runs it), so the two cannot drift apart.
#
#   .devcontainer/setup.sh           # install what is missing (root, or sudo)
#   .devcontainer/setup.sh --check   # only say what is missing; exit 1 if any
#
# Rust itself comes from rustup (the container's base image has it).
set -euo pipefail

# Debian package, then the command that shows it is there.
PACKAGES=(
    "curl curl"
    "netcat-openbsd nc"
    "apache2-utils ab"
    "strace strace"
    "tcpdump tcpdump"
    "iproute2 ss"
    "iproute2 nstat"
    "python3 python3"
    "jq jq"
    "nginx nginx"
    "chromium chromium"
    "man-db man"
    "git git"
)
# cargo-installed tools: crate, version, command.
CRATES=(
    "mdbook 0.5.4 mdbook"
    "mdbook-linkcheck2 0.13.0 mdbook-linkcheck2"
)

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing_packages=()
for entry in "${PACKAGES[@]}"; do
    read -r package command <<<"$entry"
    if ! has "$command"; then missing_packages+=("$package"); fi
done
missing_crates=()
for entry in "${CRATES[@]}"; do
    read -r crate version command <<<"$entry"
    if ! has "$command"; then missing_crates+=("$crate@$version"); fi
done
has cargo || missing_crates+=("(rustup: https://rustup.rs)")

if [ "${1:-}" = --check ]; then
    if [ ${#missing_packages[@]} -eq 0 ] && [ ${#missing_crates[@]} -eq 0 ]; then
        echo "setup: every tool the book and the tests use is installed"
        exit 0
    fi
    echo "setup: missing: ${missing_packages[*]} ${missing_crates[*]}" >&2
    echo "setup: run .devcontainer/setup.sh to install them" >&2
    exit 1
fi

if [ ${#missing_packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # Unique package names (iproute2 gives two commands).
    mapfile -t unique < <(printf '%s\n' "${missing_packages[@]}" | sort -u)
    echo "setup: installing ${unique[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${unique[@]}"
fi
for entry in "${CRATES[@]}"; do
    read -r crate version command <<<"$entry"
    if ! has "$command"; then
        echo "setup: cargo install $crate $version (a few minutes)"
        cargo install "$crate" --locked --version "$version"
    fi
done
echo "setup: done"
