#!/usr/bin/env bash
# bench/crowd.sh - the server under a crowd (issue 4): 64 clients fetching a 16 MiB file at once
# while 1,000 connections send garbage and 100 more trickle a ClientHello one byte every 500 ms.
# Builds release, makes RSA-2048 credentials, starts `minitls serve` on a free 127.0.0.1 port,
# runs examples/crowd.rs against it and prints what held: fetches with the right bytes, how the
# garbage connections ended, when the tricklers were cut off, the server's peak memory and
# threads, and one more fetch afterwards. Exit status 1 if anything legitimate failed.
#
# The server runs with --handshake-timeout 5 (the tricklers are cut after 5 s) and
# --max-clients 400: 64 fetches + 100 tricklers + up to 16 garbage connections in flight must fit,
# or legitimate clients would be refused as busy (which is --max-clients doing its job, but not
# what this test measures).
#
# Knobs: LEGIT=64 GARBAGE=1000 TRICKLE=100 FILE_MIB=16 KEEP_TMP=0
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LEGIT=${LEGIT:-64}
GARBAGE=${GARBAGE:-1000}
TRICKLE=${TRICKLE:-100}
FILE_MIB=${FILE_MIB:-16}

(cd "$REPO" && cargo build --release --quiet --bin minitls --example crowd)
BIN=$REPO/target/release/minitls
CROWD=$REPO/target/release/examples/crowd

T=$(mktemp -d /tmp/minitls-crowd.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

"$BIN" -q ca init --dir "$T/ca" --key-bits 2048 >/dev/null
mkdir -p "$T/pub" "$T/out"
head -c $((FILE_MIB * 1024 * 1024)) /dev/urandom > "$T/pub/file.bin"
SHA=$(sha256sum "$T/pub/file.bin" | cut -d' ' -f1)

"$BIN" serve "$T/pub" --listen 127.0.0.1:0 --ca-dir "$T/ca" --handshake-timeout 5 \
    --max-clients 400 2> "$T/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q 'serving .* on ' "$T/server.log" && break; sleep 0.1; done
ADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' "$T/server.log" | head -1)
[ -n "$ADDR" ] || { cat "$T/server.log"; exit 1; }

echo "minitls under a crowd ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores): $LEGIT x ${FILE_MIB} MiB fetches, $GARBAGE garbage connections, $TRICKLE tricklers"
rc=0
"$CROWD" "$ADDR" "$T/ca" file.bin "$SHA" "$SERVER_PID" "$T/out" "$LEGIT" "$GARBAGE" "$TRICKLE" || rc=$?

# The server's own account: a line per connection outcome; it must not have panicked.
if grep -q 'panicked' "$T/server.log"; then echo "server log shows a panic"; rc=1; fi
echo "server log: $(grep -c 'authenticated' "$T/server.log") authenticated clients, $(grep -c -i 'timed out\|deadline' "$T/server.log") timed out, $(grep -c -i 'malformed\|protocol\|truncated' "$T/server.log") malformed or cut"
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then echo "server stopped cleanly on SIGTERM"; else echo "server exit status $?"; rc=1; fi
SERVER_PID=
exit $rc
