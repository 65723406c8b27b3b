#!/usr/bin/env bash
# The minitls demo: build, serve server_public/, fetch hello.txt, verify its signature, and
# compare it with the original. Credentials are created in ca/ if there are none.
#
# Runs from anywhere (it works in the repository root), needs no terminal or stdin.
# MINITLS_DEMO_LISTEN sets the server address (default 127.0.0.1:4041; port 0 picks a free
# port, read back from the server's "serving ... on ADDR" line).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

listen="${MINITLS_DEMO_LISTEN:-127.0.0.1:4041}"
startup_timeout_secs=30

echo "== building (release)"
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/minitls"

log="$(mktemp)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT

echo "== starting: minitls serve server_public --listen $listen"
"$bin" serve server_public --listen "$listen" </dev/null 2>"$log" &
server_pid=$!

addr=""
deadline=$((SECONDS + startup_timeout_secs))
while [[ -z "$addr" ]]; do
    addr="$(sed -n 's/^minitls: serving .* on \([^ ]*\)$/\1/p' "$log" | head -n 1)"
    [[ -n "$addr" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "demo: the server exited before it was ready:" >&2
        cat "$log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "demo: the server did not start within ${startup_timeout_secs} s:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
cat "$log"
shown="$(wc -l <"$log")"

echo "== minitls fetch hello.txt --server $addr"
received="$("$bin" fetch hello.txt --server "$addr" </dev/null)"
echo "$received"

echo "== minitls verify $received"
"$bin" verify "$received" </dev/null

echo "== cmp $received server_public/hello.txt"
cmp "$received" server_public/hello.txt

echo "== server log since"
tail -n "+$((shown + 1))" "$log"

echo
echo "demo OK: fetched hello.txt from $addr over a mutually authenticated channel;"
echo "  $received is byte-identical to server_public/hello.txt and its signature"
echo "  ($received.minitls-sig) verifies against ca/ca.crt."
