#!/usr/bin/env bash
# bench/flood.sh - honest fetches under a handshake flood (issue 10): 1,000 connections that
# trickle ClientHello bytes from one address and 200 from 200 other loopback addresses,
# reconnecting whenever they are cut, while one client fetches a small file again and again.
# Builds release, makes RSA-2048 credentials, starts `minitls serve` with its default budgets
# (--max-clients 64, --max-handshakes 512, --max-handshakes-per-source 32, first flight 3 s),
# runs examples/flood.rs and prints, for the attacker on 127.0.0.3 and then on the honest
# client's own 127.0.0.1: success rate and median/p90 latency without and during the attack,
# the server's peak memory and threads, and the server's own summary of what it cut.
# Stops by itself (about a minute); kills everything it started. Exit 1 if a fetch failed.
#
# Knobs: HONEST=50 ONE_ADDR=1000 OTHERS=200 KEEP_TMP=0
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HONEST=${HONEST:-50}
ONE_ADDR=${ONE_ADDR:-1000}
OTHERS=${OTHERS:-200}

(cd "$REPO" && cargo build --release --quiet --bin minitls --example flood)
BIN=$REPO/target/release/minitls
FLOOD=$REPO/target/release/examples/flood

T=$(mktemp -d /tmp/minitls-flood.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

"$BIN" -q ca init --dir "$T/ca" --key-bits 2048 >/dev/null
mkdir -p "$T/pub"
head -c 1024 /dev/urandom > "$T/pub/small.bin"
SHA=$(sha256sum "$T/pub/small.bin" | cut -d' ' -f1)

# Every cut handshake is an audit line (SPEC 1.3), so the log itself is part of the load.
"$BIN" serve "$T/pub" --listen 127.0.0.1:0 --ca-dir "$T/ca" 2> "$T/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q 'serving .* on ' "$T/server.log" && break; sleep 0.1; done
ADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' "$T/server.log" | head -1)
[ -n "$ADDR" ] || { cat "$T/server.log"; exit 1; }

echo "minitls under a handshake flood ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release build)"
rc=0
"$FLOOD" "$ADDR" "$T/ca" small.bin "$SHA" "$SERVER_PID" "$HONEST" "$ONE_ADDR" "$OTHERS" || rc=$?

if grep -q 'panicked' "$T/server.log"; then echo "server log shows a panic"; rc=1; fi
echo "server log: $(grep -c 'op=handshake' "$T/server.log") failed handshakes logged; its summaries of what it cut:"
grep -E 'handshake budget full|ClientHello within' "$T/server.log" | sed 's/^/  /' | tail -6 || true
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then echo "server stopped cleanly on SIGTERM"; else echo "server exit status $?"; fi
SERVER_PID=
exit $rc
