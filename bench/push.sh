#!/usr/bin/env bash
# bench/push.sh - a big `push` next to a big `fetch` of the same file, release build, 127.0.0.1,
# in one run: wall time, MB/s, CPU seconds and peak RSS of client and server for each
# direction. Each run starts its own server (so each server's peak RSS is one direction's);
# runs alternate push and fetch so both see the same machine load. Prints medians.
#
# Knobs: BIG_MIB=1024 RUNS=3 KEY_BITS=2048 KEEP_TMP=0
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIG_MIB=${BIG_MIB:-1024}
RUNS=${RUNS:-3}
KEY_BITS=${KEY_BITS:-2048}
BIN=$REPO/target/release/minitls

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

(cd "$REPO" && cargo build --release --quiet)
WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        # SIGTERM to the server under /usr/bin/time (not to time itself, which would then
        # not write its figures); the server finishes and exits, time writes and exits.
        pkill -TERM -P "$SERVER_PID" 2>/dev/null || kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

"$BIN" -q ca init --dir ca --key-bits "$KEY_BITS" >/dev/null
mkdir -p pub/uploads
cat > policy.toml <<'TOML'
[[grant]]
clients = ["*"]
read = ["."]
write = ["uploads"]
TOML
log "writing a ${BIG_MIB} MiB file"
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom > big.bin
cp big.bin pub/big.bin
BYTES=$(stat -c %s big.bin)

start_server() {
    /usr/bin/time -f '%e %U %S %M' -o server.time "$BIN" serve pub --listen 127.0.0.1:0 \
        --ca-dir ca --policy policy.toml --max-upload-size 64G 2> server.log &
    SERVER_PID=$!
    for _ in $(seq 300); do grep -q 'serving .* on ' server.log 2>/dev/null && break; sleep 0.1; done
    ADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' server.log | head -1)
    [ -n "$ADDR" ] || { cat server.log; exit 1; }
}

# One transfer: prints "wall user sys rss_kib server_user server_sys server_rss_kib".
one() {
    local what=$1
    start_server
    if [ "$what" = push ]; then
        rm -f pub/uploads/big.bin pub/uploads/big.bin.minitls-sig
        /usr/bin/time -f '%e %U %S %M' -o client.time \
            "$BIN" -q push big.bin --to uploads --force --server "$ADDR" --ca-dir ca >/dev/null
        cmp -s big.bin pub/uploads/big.bin || { echo "push: stored file differs" >&2; exit 1; }
    else
        rm -rf out
        /usr/bin/time -f '%e %U %S %M' -o client.time \
            "$BIN" -q fetch big.bin --out out --server "$ADDR" --ca-dir ca >/dev/null
        cmp -s big.bin out/big.bin || { echo "fetch: received file differs" >&2; exit 1; }
    fi
    stop_server
    # /usr/bin/time puts "Command exited with non-zero status N" first when that happens.
    read -r cw cu cs cr < <(tail -n 1 client.time)
    read -r _ su ss sr < <(tail -n 1 server.time)
    echo "$cw $cu $cs $cr $su $ss $sr"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

: > push.runs; : > fetch.runs
for i in $(seq "$RUNS"); do
    log "run $i/$RUNS: push"; one push >> push.runs
    log "run $i/$RUNS: fetch"; one fetch >> fetch.runs
done
"$BIN" verify pub/uploads/big.bin --ca-dir ca >&2

report() {
    local name=$1 file=$2
    col() { awk -v c="$1" '{ print $c }' "$file" | median; }
    local wall; wall=$(col 1)
    printf '%-6s %8.2f s %9.1f MB/s   client: %5.2f s user %5.2f s sys %6.1f MiB   server: %5.2f s user %5.2f s sys %6.1f MiB\n' \
        "$name" "$wall" "$(awk -v b="$BYTES" -v w="$wall" 'BEGIN { print b / w / 1e6 }')" \
        "$(col 2)" "$(col 3)" "$(awk '{ print $4 / 1024 }' "$file" | median)" \
        "$(col 5)" "$(col 6)" "$(awk '{ print $7 / 1024 }' "$file" | median)"
}
echo "minitls $(git -C "$REPO" rev-parse --short HEAD), ${BIG_MIB} MiB, median of $RUNS runs each ($(date -u +%FT%TZ), $(nproc) cores)"
report push push.runs
report fetch fetch.runs
