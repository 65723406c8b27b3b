#!/usr/bin/env bash
# bench/rtt.sh - round trips after the TCP connect, counted through a delay proxy on 127.0.0.1
# (../shared/bench/delay_proxy.py: D ms each way), for a 1 KiB fetch: minitls on first contact
# (full handshake) and as a returning client (session ticket, early data), against curl +
# `openssl s_server -tls1_3 -WWW` with client certificates (the same RSA-2048 PKI), and
# minitls fetching FILES small files in one command (first contact).
#   round trips = (median time through the proxy - median time direct) / (2 D)
# The proxy accepts the TCP connection itself, so the connect is not delayed: what is counted
# is what the protocol adds after it. Release build, fresh process per fetch.
#
# Knobs: DELAYS="25 50" RUNS=5 FILES=100 KEEP_TMP=0
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROXY=${PROXY:-$REPO/../shared/bench/delay_proxy.py}
DELAYS=${DELAYS:-25 50}
RUNS=${RUNS:-5}
FILES=${FILES:-100}
BIN=$REPO/target/release/minitls

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
[ -f "$PROXY" ] || { echo "bench/rtt.sh: no delay proxy at $PROXY (set PROXY=)" >&2; exit 1; }
command -v openssl >/dev/null && command -v curl >/dev/null \
    || { echo "bench/rtt.sh: needs openssl and curl (apt-get install openssl curl)" >&2; exit 1; }

(cd "$REPO" && cargo build --release --quiet)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
export XDG_CACHE_HOME=$WORK/.cache   # never the user's own session cache

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2; exit 1
}
now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.5f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

"$BIN" -q ca init --key-bits 2048 >/dev/null
mkdir -p pub/many www
head -c 1024 /dev/urandom > pub/small.bin
cp pub/small.bin www/small.bin
for i in $(seq "$FILES"); do head -c 1024 /dev/urandom > "pub/many/f$i.bin"; done
MANY=()
for i in $(seq "$FILES"); do MANY+=("many/f$i.bin"); done

MPORT=$(free_port)
"$BIN" -q serve pub --listen "127.0.0.1:$MPORT" 2> serve.log &
PIDS+=($!)
SPORT=$(free_port)
( cd www && exec openssl s_server -accept "127.0.0.1:$SPORT" -tls1_3 -cert ../ca/server.crt \
    -key ../ca/server.key -CAfile ../ca/ca.crt -Verify 1 -verify_return_error -WWW -quiet ) \
    > s_server.log 2>&1 &
PIDS+=($!)
wait_port "$MPORT"; wait_port "$SPORT"

minitls_fetch() { rm -rf out; "$BIN" -q fetch small.bin --no-session-cache --out out --server "127.0.0.1:$1" --server-name localhost; }
# Each fetch takes the ticket the previous one (to the same address) left in the cache.
minitls_returning() { rm -rf out; "$BIN" -q fetch small.bin --session-cache "sessions.$1" --out out --server "127.0.0.1:$1" --server-name localhost; }
minitls_many() { rm -rf out; "$BIN" -q fetch "${MANY[@]}" --no-session-cache --out out --server "127.0.0.1:$1" --server-name localhost; }
curl_fetch() {
    curl -sS --fail --http1.1 --cacert ca/ca.crt --cert ca/client.crt --key ca/client.key \
        --resolve "localhost:$1:127.0.0.1" -o /dev/null "https://localhost:$1/small.bin"
}
MANY_OK=1
minitls_many "$MPORT" >/dev/null 2>&1 || { MANY_OK=0; log "minitls cannot fetch several paths in one command yet: left out"; }

echo "bench/rtt.sh: minitls $(git -C "$REPO" rev-parse --short HEAD), $(date -u +%FT%TZ), median of $RUNS, 1 KiB files"
echo "(direct and proxied runs alternate, so both see the same machine load)"
printf '%-44s %8s %10s %12s %8s\n' "what" "D (ms)" "direct ms" "proxied ms" "RTTs"
once() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'; }
for D in $DELAYS; do
    for what in minitls returning curl many; do
        [ "$what" = many ] && [ "$MANY_OK" = 0 ] && continue
        case $what in
            minitls) target=$MPORT; fn=minitls_fetch; label="minitls fetch (first contact)" ;;
            returning) target=$MPORT; fn=minitls_returning; label="minitls fetch (returning client, ticket)" ;;
            curl) target=$SPORT; fn=curl_fetch; label="curl + openssl s_server -tls1_3 (mTLS)" ;;
            many) target=$MPORT; fn=minitls_many; label="minitls fetch of $FILES files, one command" ;;
        esac
        PPORT=$(free_port)
        python3 "$PROXY" "$PPORT" "127.0.0.1:$target" "$D" > "proxy.$what.$D.log" 2>&1 &
        PP=$!
        PIDS+=("$PP")
        wait_port "$PPORT"
        "$fn" "$target" >/dev/null 2>&1 || { echo "failed: $fn" >&2; "$fn" "$target"; exit 1; }
        "$fn" "$PPORT" >/dev/null 2>&1
        : > direct.t; : > proxied.t
        for _ in $(seq "$RUNS"); do
            once "$fn" "$target" >> direct.t
            once "$fn" "$PPORT" >> proxied.t
        done
        kill "$PP" 2>/dev/null || true; wait "$PP" 2>/dev/null || true
        a=$(median < direct.t); b=$(median < proxied.t)
        awk -v l="$label" -v d="$D" -v a="$a" -v b="$b" \
            'BEGIN { printf "%-44s %8d %10.1f %12.1f %8.2f\n", l, d, a * 1000, b * 1000, (b - a) * 1000 / (2 * d) }'
    done
done
