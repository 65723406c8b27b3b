#!/usr/bin/env bash
# bench/compare.sh - minitls against what a user would set up instead, in one interleaved run on
# 127.0.0.1, RSA-2048 everywhere:
#
#   1-4. ../shared/bench/anchors.sh (the shared, reviewed harness): nginx + curl with client
#        certificates (TLS 1.3, AES-256-GCM), `openssl s_server -WWW` + curl, OpenSSH scp/sftp
#        with certificates, and minitls, round-robin: a 1 GiB file to disk (wall, MB/s, CPU and
#        peak RSS of client and server, sha256 checked), a 1 KiB file end to end as a fresh
#        process, a tree of 10,000 x 1 KiB files (scp -r, sftp, minitls fetch -r), 50 clients x
#        100 MiB at once.
#   5.   server handshakes per second with many short connections (this script): minitls
#        (`examples/handshakes.rs`: HS_THREADS client threads, each a full mutually authenticated
#        handshake and a clean close, again and again) against nginx with `ssl_verify_client on`
#        (HS_THREADS parallel `openssl s_time -new` clients with the client certificate: a full
#        TLS 1.3 handshake each, no resumption). Clients run on the same two cores as the server
#        in both cases.
#
# Then prints the issue's targets with MET / NOT MET, computed from the medians of this run.
# Installs nginx, openssh-server/-client, curl, openssl and time from Debian if missing (root).
# Takes ~10 minutes on a 2-core machine. The full report (markdown) goes to
# target/bench/compare-<UTC time>.md and is printed at the end.
#
# Knobs: ONLY=minitls,nginx,sserver,scp,sftp (anchors.sh entries), BIG_MIB=1024 (shorter debug
#        runs), HS_THREADS=4 HS_SECONDS=8 HS_RUNS=3, ANCHORS_SH=../shared/bench/anchors.sh, and
#        every knob anchors.sh documents (BIG_RUNS, SMALL_RUNS, CONC_N, TREE_FILES, ...);
#        REUSE_ANCHORS_MD=FILE reuses an earlier anchors.sh report instead of running it.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ANCHORS_SH=${ANCHORS_SH:-$REPO/../shared/bench/anchors.sh}
export ONLY=${ONLY:-minitls,nginx,sserver,scp,sftp}
HS_THREADS=${HS_THREADS:-4}
HS_SECONDS=${HS_SECONDS:-8}
HS_RUNS=${HS_RUNS:-3}
STAMP=$(date -u +%Y%m%dT%H%MZ)
OUTDIR=$REPO/target/bench
REPORT=$OUTDIR/compare-$STAMP.md

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ -f "$ANCHORS_SH" ] || die "no $ANCHORS_SH (set ANCHORS_SH)"

# --- packages -------------------------------------------------------------------------------
# What this script and anchors.sh run; installed only when missing. The packages' own services
# (nginx on *:80, sshd on *:22) are kept from starting by a temporary policy-rc.d.
install_deps() {
    local need=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v scp >/dev/null 2>&1 && command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    [ -x /usr/bin/time ] || need+=(time)
    command -v ss >/dev/null 2>&1 || need+=(iproute2)
    [ ${#need[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages (${need[*]}); install them first (needs root)"
    log "installing: ${need[*]}"
    local policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${need[@]}"; } > /tmp/minitls-compare-apt.log 2>&1 || rc=$?
    [ $policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc -eq 0 ] || { tail -20 /tmp/minitls-compare-apt.log >&2; die "apt-get failed"; }
}
install_deps

# --- build ----------------------------------------------------------------------------------
log "building minitls (release) and the handshake client"
(cd "$REPO" && cargo build --release --quiet --bin minitls --example handshakes)
BIN=$REPO/target/release/minitls
HS=$REPO/target/release/examples/handshakes
mkdir -p "$OUTDIR"

# --- 1-4: the shared harness (installs its packages if missing) -------------------------------
# REUSE_ANCHORS_MD=FILE skips this part and reads an earlier anchors.sh report (debugging).
if [ -n "${REUSE_ANCHORS_MD:-}" ]; then
    ANCHORS_MD=$REUSE_ANCHORS_MD
else
    log "running $ANCHORS_SH (ONLY=$ONLY)"
    ANCHORS_MD=$OUTDIR/anchors-$STAMP.md
    MINITLS_REPO=$REPO MINITLS_BIN=$BIN RESULTS_MD=$ANCHORS_MD bash "$ANCHORS_SH" >&2
fi
[ -s "$ANCHORS_MD" ] || die "no anchors.sh results in $ANCHORS_MD"

# --- 5: handshakes per second -----------------------------------------------------------------
T=$(mktemp -d /tmp/minitls-compare.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "NA"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

"$BIN" -q ca init --dir "$T/ca" --key-bits 2048 >/dev/null
mkdir -p "$T/pub" "$T/ngx"

# minitls server
"$BIN" -q serve "$T/pub" --listen 127.0.0.1:0 --ca-dir "$T/ca" --max-clients 256 2>"$T/minitls.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'serving .* on ' "$T/minitls.log" && break; sleep 0.1; done
MADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' "$T/minitls.log" | head -1)
[ -n "$MADDR" ] || die "minitls serve did not start: $(cat "$T/minitls.log")"

# nginx with client certificates, the same RSA-2048 credentials
NPORT=$(free_port)
cat > "$T/ngx/nginx.conf" <<EOF
worker_processes 2;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $T/ngx/body;
    proxy_temp_path $T/ngx/proxy;
    fastcgi_temp_path $T/ngx/fastcgi;
    uwsgi_temp_path $T/ngx/uwsgi;
    scgi_temp_path $T/ngx/scgi;
    server {
        listen 127.0.0.1:$NPORT ssl;
        ssl_certificate $T/ca/server.crt;
        ssl_certificate_key $T/ca/server.key;
        ssl_client_certificate $T/ca/ca.crt;
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
        ssl_session_tickets off;
        ssl_session_cache off;
        location / { return 200 "ok\n"; }
    }
}
EOF
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX" -e "$T/ngx/error.log" -c "$T/ngx/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
for _ in $(seq 100); do ss -Hltn "sport = :$NPORT" | grep -q . && break; sleep 0.1; done
ss -Hltn "sport = :$NPORT" | grep -q . || die "nginx did not start: $(cat "$T/ngx/error.log")"

wait_clients() {   # wait for the s_time clients only, not for the servers in PIDS
    local j
    for j in $(jobs -p); do
        [[ " ${PIDS[*]} " == *" $j "* ]] || wait "$j" || true
    done
}
hs_minitls() {
    "$HS" "$MADDR" "$T/ca" "$HS_THREADS" "$HS_SECONDS" | awk '{print $NF}'
}
hs_nginx() {
    local i
    for ((i = 0; i < HS_THREADS; i++)); do
        openssl s_time -connect "127.0.0.1:$NPORT" -new -time "$HS_SECONDS" \
            -cert "$T/ca/client.crt" -key "$T/ca/client.key" -CAfile "$T/ca/ca.crt" \
            > "$T/stime.$i" 2>&1 &
    done
    wait_clients
    # "N connections in T real seconds" per client; the rate is their sum over the window
    cat "$T"/stime.* | awk '/connections in [0-9.]+ real seconds/ {n += $1; if ($4 > t) t = $4}
        END { if (t > 0) printf "%.1f\n", n / t; else print "NA" }'
}
# One s_time must succeed with the client certificate before we count anything.
openssl s_time -connect "127.0.0.1:$NPORT" -new -time 1 -cert "$T/ca/client.crt" \
    -key "$T/ca/client.key" -CAfile "$T/ca/ca.crt" 2>&1 | grep -q 'connections in' \
    || die "openssl s_time could not complete a handshake with nginx"

MT_HS=(); NG_HS=()
for ((r = 1; r <= HS_RUNS; r++)); do
    log "handshake rate, run $r/$HS_RUNS: minitls"
    MT_HS+=("$(hs_minitls)")
    log "handshake rate, run $r/$HS_RUNS: nginx"
    NG_HS+=("$(hs_nginx)")
done
MT_HS_MED=$(median "${MT_HS[@]}")
NG_HS_MED=$(median "${NG_HS[@]}")

# --- report -----------------------------------------------------------------------------------
# ratio_of FIGURE [NTH] : the ratio column of that row of anchors.sh's "minitls compared" table
row() { awk -F'|' -v f="$1" -v n="${2:-1}" 'index($2, f) > 0 && ++k == n {print}' "$ANCHORS_MD"; }
col() { row "$1" "${3:-1}" | awk -F'|' -v c="$2" '{gsub(/[ *]/, "", $c); print $c}'; }
verdict() {  # verdict VALUE OP LIMIT
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v !~ /^[0-9.]+$/) { print "NOT MEASURED"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "MET" : "NOT MET" }'
}
R_BIG=$(col "1 GiB throughput" 6)
R_SMALL=$(col "1 KiB end-to-end" 6)
R_TREE=$(col "tree of" 6)
R_CONC_DISK=$(col "x 100 MiB aggregate" 6 1)
R_CONC_NULL=$(col "x 100 MiB aggregate" 6 2)
C_RSS=$(col "client peak RSS" 3)
S_RSS=$(col "server peak RSS (VmHWM), MiB, after the 1 GiB" 3)
R_HS=$(awk -v a="$MT_HS_MED" -v b="$NG_HS_MED" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')

{
    cat "$ANCHORS_MD"
    echo
    echo "## Handshakes per second (bench/compare.sh)"
    echo
    echo "$HS_THREADS client threads or processes, ${HS_SECONDS} s per run, $HS_RUNS runs interleaved; full handshakes with client certificates, RSA-2048, no resumption; clients share the machine's $(nproc) cores with the server."
    echo
    echo "| server | handshakes/s (median) | runs |"
    echo "|---|---|---|"
    echo "| minitls serve (examples/handshakes.rs: handshake + authenticated close) | $MT_HS_MED | ${MT_HS[*]} |"
    echo "| nginx, ssl_verify_client on, TLS 1.3 (openssl s_time -new) | $NG_HS_MED | ${NG_HS[*]} |"
    echo
    echo "## Targets (issue 5), from the medians of this run"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    echo "| 1 GiB throughput >= 1.25 x nginx+curl | ${R_BIG:--} x | $(verdict "$R_BIG" '>=' 1.25) |"
    echo "| 1 KiB end to end <= 0.5 x nginx+curl | ${R_SMALL:--} x | $(verdict "$R_SMALL" '<=' 0.5) |"
    echo "| 10,000 x 1 KiB tree >= 10 x faster than scp -r (time ratio <= 0.1) | ${R_TREE:--} x | $(verdict "$R_TREE" '<=' 0.1) |"
    echo "| 50 x 100 MiB total time <= nginx+curl writing to disk (MB/s ratio >= 1) | ${R_CONC_DISK:--} x | $(verdict "$R_CONC_DISK" '>=' 1) |"
    echo "| (same, against nginx+curl to /dev/null) | ${R_CONC_NULL:--} x | $(verdict "$R_CONC_NULL" '>=' 1) |"
    echo "| client peak RSS for 1 GiB <= 16 MiB | ${C_RSS:--} MiB | $(verdict "$C_RSS" '<=' 16) |"
    echo "| server peak RSS for 1 GiB <= 16 MiB | ${S_RSS:--} MiB | $(verdict "$S_RSS" '<=' 16) |"
    echo "| handshakes/s, minitls / nginx (no target; figure 5) | ${R_HS} x | - |"
} > "$REPORT"

cat "$REPORT"
log "report: $REPORT"
