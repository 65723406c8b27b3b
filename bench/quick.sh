#!/usr/bin/env bash
# bench/quick.sh - minitls on its own, release build, 127.0.0.1 only: `ca init` time, a 1 KiB
# fetch end to end (fresh process each, median of N), a 1 GiB fetch (MB/s, CPU seconds and peak
# RSS of client and server), a tree of small files (time, signatures made), and a resume of
# the big fetch killed half way (bytes that crossed the network again).
# For the comparison with nginx+curl, scp and openssl s_server see bench/compare.sh.
#
# Knobs: BIG_MIB=1024 SMALL_RUNS=11 TREE_FILES=10000 KEY_BITS=2048 KEEP_TMP=0
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIG_MIB=${BIG_MIB:-1024}
SMALL_RUNS=${SMALL_RUNS:-11}
TREE_FILES=${TREE_FILES:-10000}
KEY_BITS=${KEY_BITS:-2048}
BIN=$REPO/target/release/minitls

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

(cd "$REPO" && cargo build --release --quiet)
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# 1. ca init (default key size 3072, and the KEY_BITS used below)
t0=$(now); "$BIN" -q ca init --dir ca3072 >/dev/null; t1=$(now)
CA_INIT_3072=$(elapsed "$t0" "$t1")
t0=$(now); "$BIN" -q ca init --dir ca --key-bits "$KEY_BITS" >/dev/null; t1=$(now)
CA_INIT_SMALL=$(elapsed "$t0" "$t1")

# Served files
mkdir -p pub/tree
head -c 1024 /dev/urandom > pub/small.bin
log "writing a ${BIG_MIB} MiB file"
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom > pub/big.bin
# One process for the whole tree: a shell loop of 10,000 `head` calls takes minutes.
python3 - "$TREE_FILES" <<'PY'
import os, sys
for i in range(int(sys.argv[1])):
    d = f"pub/tree/d{i // 100:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}.bin", "wb") as f:
        f.write(os.urandom(1024))
PY

# Server under /usr/bin/time for its CPU and peak RSS (printed when it exits on SIGTERM).
/usr/bin/time -f '%e %U %S %M' -o server.time "$BIN" serve pub --listen 127.0.0.1:0 --ca-dir ca 2> server.log &
SERVER_PID=$!
for _ in $(seq 300); do grep -q 'serving .* on ' server.log 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' server.log | head -1)
[ -n "$ADDR" ] || { cat server.log; exit 1; }
FETCH=("$BIN" -q fetch --server "$ADDR" --ca-dir ca --out out)

# 2. 1 KiB end to end, fresh process each time
for ((i = 0; i < SMALL_RUNS; i++)); do
    t0=$(now); "${FETCH[@]}" small.bin >/dev/null; t1=$(now)
    elapsed "$t0" "$t1"; echo
done > small.times
cmp pub/small.bin out/small.bin
SMALL_MED=$(median < small.times)

# 3. 1 GiB to disk
rm -f out/big.bin
t0=$(now)
/usr/bin/time -f '%e %U %S %M' -o client.time "${FETCH[@]}" big.bin >/dev/null
t1=$(now)
BIG_S=$(elapsed "$t0" "$t1")
cmp pub/big.bin out/big.bin
"$BIN" verify --ca-dir ca out/big.bin >/dev/null
read -r _ CU CS CRSS < client.time
BIG_MBS=$(awk -v s="$BIG_S" -v m="$BIG_MIB" 'BEGIN { printf "%.0f", m * 1048576 / s / 1e6 }')

# 4. tree of small files
t0=$(now); "${FETCH[@]}" -r tree >/dev/null; t1=$(now)
TREE_S=$(elapsed "$t0" "$t1")
diff -r pub/tree out/tree >/dev/null
TREE_SIGS=$(grep -c 'one signature' server.log || true)

# 5. resume: a fetch of the big file killed half way, then `fetch --resume`
rm -f out/big.bin out/.big.bin.minitls-partial
"${FETCH[@]}" big.bin >/dev/null &
CLIENT_PID=$!
HALF=$((BIG_MIB * 1024 * 1024 / 2))
while kill -0 "$CLIENT_PID" 2>/dev/null; do
    s=$(stat -c %s out/.big.bin.minitls-partial 2>/dev/null || echo 0)
    [ "$s" -ge "$HALF" ] && break
    sleep 0.01
done
kill -KILL "$CLIENT_PID" 2>/dev/null || true; wait "$CLIENT_PID" 2>/dev/null || true
KEPT=$(stat -c %s out/.big.bin.minitls-partial)
t0=$(now); RESUME_LINE=$("$BIN" -v fetch --resume --server "$ADDR" --ca-dir ca --out out big.bin 2>&1 | grep 'resumed:' || true); t1=$(now)
RESUME_S=$(elapsed "$t0" "$t1")
cmp pub/big.bin out/big.bin

# /usr/bin/time exits when its child does: stop the minitls child (SIGTERM is a clean stop).
kill -TERM "$(pgrep -P "$SERVER_PID")"; wait "$SERVER_PID" || true; SERVER_PID=
read -r _ SU SS SRSS < server.time

cat <<EOF
minitls quick figures ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m), RSA-$KEY_BITS unless noted)
  ca init (3072-bit default)         ${CA_INIT_3072} s
  ca init (--key-bits $KEY_BITS)           ${CA_INIT_SMALL} s
  1 KiB fetch, fresh process         median ${SMALL_MED} s of ${SMALL_RUNS}
  ${BIG_MIB} MiB fetch to disk           ${BIG_S} s = ${BIG_MBS} MB/s (bytes compared, signature verified)
    client: ${CU} s user, ${CS} s sys, peak RSS $((CRSS / 1024)) MiB
    server: ${SU} s user, ${SS} s sys over the whole run, peak RSS $((SRSS / 1024)) MiB
  tree of ${TREE_FILES} x 1 KiB (fetch -r)  ${TREE_S} s, ${TREE_SIGS} tree signature(s)
  resume of ${BIG_MIB} MiB killed at ${KEPT} bytes  ${RESUME_S} s; ${RESUME_LINE#minitls: }
EOF
