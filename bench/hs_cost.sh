#!/usr/bin/env bash
# bench/hs_cost.sh - what one handshake costs, release build, 127.0.0.1 only, for an RSA client
# and for an ECDSA P-256 client (SPEC §2.9) against the same RSA server, and for a returning
# RSA client resuming with a session ticket (SPEC §2.12: no RSA operation on either side):
#   - median wall time of connect + handshake + one request ("not found") + close, one client
#     thread (latency);
#   - the server's CPU per handshake (utime + stime of `minitls serve`, from /proc), with
#     THREADS client threads keeping it busy for SECONDS.
# The EC client's key and certificate are made with the openssl CLI and signed by the CA
# `minitls ca init` made, as an organisation would. Runs alternate RSA / EC, RUNS times each;
# medians are printed.
#
# Knobs: RUNS=3 SECONDS=5 THREADS=2 KEY_BITS=2048 KEEP_TMP=0
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS:-5}
THREADS=${THREADS:-2}
KEY_BITS=${KEY_BITS:-2048}
BIN=$REPO/target/release/minitls
HS=$REPO/target/release/examples/handshakes
HZ=$(getconf CLK_TCK)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime of one process

log "building minitls and examples/handshakes (release)"
(cd "$REPO" && cargo build --release --quiet --bin minitls --example handshakes)
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

"$BIN" -q ca init --dir ca --key-bits "$KEY_BITS" >/dev/null
# An ECDSA P-256 client certificate from the same CA, made with openssl.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key 2>/dev/null
openssl req -new -key ec.key -subj /CN=ec-client -out ec.csr 2>/dev/null
printf 'basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n' > ec.ext
openssl x509 -req -in ec.csr -CA ca/ca.crt -CAkey ca/ca.key -CAcreateserial -days 30 \
    -sha256 -extfile ec.ext -out ec.crt 2>/dev/null

mkdir -p pub
"$BIN" serve pub --listen 127.0.0.1:0 --ca-dir ca --max-clients 64 2> server.log &
SERVER_PID=$!
for _ in $(seq 300); do grep -q 'serving .* on ' server.log 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' server.log | head -1)
[ -n "$ADDR" ] || { cat server.log; exit 1; }
SPID=$(pgrep -P $$ -f "minitls serve" | head -1 || true)
SPID=${SPID:-$SERVER_PID}

run_kind() {   # KIND THREADS -> prints "median_ms server_cpu_ms rate"
    local kind=$1 threads=$2 env=() t0 t1 out n rate med
    [ "$kind" = ec ] && env=(MINITLS_HS_CERT=ec.crt MINITLS_HS_KEY=ec.key)
    [ "$kind" = resumed ] && env=(MINITLS_HS_RESUME=1)
    t0=$(ticks "$SPID")
    out=$(env "${env[@]}" "$HS" "$ADDR" ca "$threads" "$SECONDS_PER_RUN" 2>hs.err) || { cat hs.err >&2; exit 1; }
    sleep 0.2
    t1=$(ticks "$SPID")
    read -r _ n _ _ _ _ _ rate _ med <<<"$out"
    awk -v d=$((t1 - t0)) -v n="$n" -v hz="$HZ" -v m="$med" -v r="$rate" \
        'BEGIN { printf "%s %.2f %s\n", m, 1000 * d / hz / n, r }'
}

declare -A LAT CPU RATE
for ((r = 1; r <= RUNS; r++)); do
    for kind in rsa ec resumed; do
        read -r m _ _ <<<"$(run_kind "$kind" 1)"
        read -r _ c rate <<<"$(run_kind "$kind" "$THREADS")"
        LAT[$kind]+="$m "; CPU[$kind]+="$c "; RATE[$kind]+="$rate "
        log "run $r $kind: median ${m} ms (1 thread), server CPU ${c} ms per handshake, ${rate}/s ($THREADS threads)"
    done
done
grep -q 'handshake failed' server.log && { log "server log has failed handshakes:"; grep 'handshake failed' server.log | head -3 >&2; }

med_of() { tr ' ' '\n' <<<"$1" | grep . | median; }
cat <<EOF
minitls handshake cost ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release, RSA-$KEY_BITS server and CA, $RUNS runs of ${SECONDS_PER_RUN} s each, medians)
| client key | connect + handshake + one request + close, 1 thread (ms) | server CPU per handshake (ms) | handshakes/s, $THREADS threads |
|---|---|---|---|
| RSA-$KEY_BITS | $(med_of "${LAT[rsa]}") | $(med_of "${CPU[rsa]}") | $(med_of "${RATE[rsa]}") |
| ECDSA P-256 | $(med_of "${LAT[ec]}") | $(med_of "${CPU[ec]}") | $(med_of "${RATE[ec]}") |
| RSA-$KEY_BITS, returning (session ticket) | $(med_of "${LAT[resumed]}") | $(med_of "${CPU[resumed]}") | $(med_of "${RATE[resumed]}") |
EOF
