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
#   5.   server handshakes per second with many short connections (this script), minitls and
#        nginx interleaved, HS_THREADS concurrent clients on the same cores as the server:
#        - minitls: examples/handshakes.rs, HS_THREADS threads, each a loop of connect + full
#          mutually authenticated handshake + one request (a file that does not exist, answered
#          "not found") + Close. Counted: connections whose answer arrived (it follows the
#          server's Finished, which the server sends after verifying the client's certificate
#          and signature, and which the client verifies first). Rate = that count / the
#          example's own clock. Then the same loop as returning clients (MINITLS_HS_RESUME=1:
#          each connection resumes the previous one's session ticket, no RSA on either side).
#        - nginx (ssl_verify_client on, TLS 1.3 only, TLS_AES_256_GCM_SHA384, no session cache or
#          tickets): HS_THREADS parallel `openssl s_time -new -www /`, i.e. a new connection, a
#          full handshake with the client certificate, `GET /` answered by `return 200`, close.
#          Counted: lines "200 SUCCESS" ($status $ssl_client_verify) in nginx's access log, i.e.
#          requests nginx answered after verifying the client certificate. Rate = that count / the
#          wall time from starting the s_time processes to the last one's exit.
#          Not `s_time -new` alone, nor s_time's own count: in TLS 1.3 the client's side of the
#          handshake is done before the server has read the client's certificate, and s_time
#          counts a connection with a certificate from another CA, or with none, just the same
#          (checked below); its "N connections in T real seconds" is also in whole seconds.
#        Also reported per handshake: the server's CPU (minitls serve / nginx workers, utime +
#        stime from /proc) and the clients' CPU (reaped children of this script).
#
# Then prints the issue's targets with the minitls and reference medians, the ratio and MET /
# NOT MET, all from this run. Installs what anchors.sh and this script run from Debian if missing
# (needs root): nginx openssh-server openssh-client curl openssl time iproute2.
# Takes ~10-12 minutes on a 2-core machine. The full report (markdown) goes to
# target/bench/compare-<UTC time>.md (git-ignored) and is printed at the end, path last.
#
# Knobs: ONLY=minitls,nginx,sserver,scp,sftp (anchors.sh entries; the targets need minitls,
#        nginx and scp), BIG_MIB=1024 (shorter debug runs), HS_THREADS=4 HS_SECONDS=8 HS_RUNS=3
#        (HS_RUNS=0 skips figure 5), ANCHORS_SH=../shared/bench/anchors.sh, REPORT_DIR=target/bench,
#        REUSE_ANCHORS_MD=FILE (reuse an earlier anchors.sh report instead of running it), and
#        NATIVE=1 (build minitls with -C target-cpu=native, see below), and
#        every knob anchors.sh documents (BIG_RUNS, SMALL_RUNS, CONC_N, CONC_RUNS, TREE_FILES, ...).
# Example of a quick debugging run (~1 minute):
#   BIG_MIB=64 BIG_RUNS=1 SMALL_RUNS=3 CONC_N=4 CONC_RUNS=1 TREE_FILES=200 TREE_RUNS=1 \
#   HS_SECONDS=2 HS_RUNS=1 ONLY=minitls,nginx,scp bash bench/compare.sh
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ANCHORS_SH=${ANCHORS_SH:-$REPO/../shared/bench/anchors.sh}
export ONLY=${ONLY:-minitls,nginx,sserver,scp,sftp}
HS_THREADS=${HS_THREADS:-4}
HS_SECONDS=${HS_SECONDS:-8}
HS_RUNS=${HS_RUNS:-3}
STAMP=$(date -u +%Y%m%dT%H%MZ)
OUTDIR=${REPORT_DIR:-$REPO/target/bench}
REPORT=$OUTDIR/compare-$STAMP.md

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[ -f "$ANCHORS_SH" ] || die "no $ANCHORS_SH (set ANCHORS_SH)"

# --- processes we start, stopped by PID on any exit ------------------------------------------
ANCHORS_PID=""     # anchors.sh (stops its own servers when it gets TERM)
SERVER_PIDS=()     # minitls serve, nginx master (for figure 5)
CLIENT_PIDS=()     # handshake clients of the run in progress
T=""
stop_pid() {       # stop_pid PID : TERM, up to 5 s, then KILL; only PIDs this script started
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]] && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? p
    set +e
    trap - EXIT INT TERM
    for p in "${CLIENT_PIDS[@]}"; do stop_pid "$p"; done
    [ -n "$ANCHORS_PID" ] && { log "stopping anchors.sh (pid $ANCHORS_PID)"; stop_pid "$ANCHORS_PID"; }
    for p in "${SERVER_PIDS[@]}"; do stop_pid "$p"; done
    [ -n "$T" ] && rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- packages -------------------------------------------------------------------------------
# What this script and anchors.sh run; installed only when missing. The packages' own services
# (nginx on *:80, sshd on *:22) are kept from starting by a temporary policy-rc.d.
install_deps() {
    local need=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ssh >/dev/null 2>&1 && command -v scp >/dev/null 2>&1 && command -v sftp >/dev/null 2>&1 \
        || need+=(openssh-client)
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
# NATIVE=1: build for this machine's CPU (-C target-cpu=native, in target-native/), which lets
# aes-gcm's GHASH and AES use the CPU's wide instructions at compile time (OpenSSL picks them at
# run time); the binary may then not run on another CPU. The default build is portable.
if [ "${NATIVE:-0}" = 1 ]; then
    BUILD_DIR=$REPO/target-native; BUILD_NOTE="release build with -C target-cpu=native"
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-cpu=native"
else
    BUILD_DIR=$REPO/target; BUILD_NOTE="portable release build"
fi
log "building minitls and the handshake client ($BUILD_NOTE)"
(cd "$REPO" && CARGO_TARGET_DIR=$BUILD_DIR cargo build --release --quiet --bin minitls --example handshakes)
BIN=$BUILD_DIR/release/minitls
HS=$BUILD_DIR/release/examples/handshakes
mkdir -p "$OUTDIR"

# --- 1-4: the shared harness ------------------------------------------------------------------
# Run in the background and waited for, so that INT/TERM reach our trap at once; cleanup then
# sends anchors.sh TERM and it stops its own servers.
if [ -n "${REUSE_ANCHORS_MD:-}" ]; then
    ANCHORS_MD=$REUSE_ANCHORS_MD
else
    log "running $ANCHORS_SH (ONLY=$ONLY)"
    ANCHORS_MD=$OUTDIR/anchors-$STAMP.md
    MINITLS_REPO=$REPO MINITLS_BIN=$BIN RESULTS_MD=$ANCHORS_MD bash "$ANCHORS_SH" >&2 &
    ANCHORS_PID=$!
    rc=0; wait "$ANCHORS_PID" || rc=$?
    ANCHORS_PID=""
    [ $rc -eq 0 ] || die "anchors.sh failed (exit $rc)"
fi
[ -s "$ANCHORS_MD" ] || die "no anchors.sh results in $ANCHORS_MD"

# --- 5: handshakes per second -----------------------------------------------------------------
T=$(mktemp -d /tmp/minitls-compare.XXXXXX)
chmod 755 "$T"      # nginx workers (nobody) write nothing here, but must reach nothing either
HZ=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
median() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "NA"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x ~ /^[0-9.]+$/ && y ~ /^[0-9.]+$/ && x + 0 > 0 && y + 0 > 0) printf "%.2f", x / y; else print "-" }'; }
ticks() {          # ticks PID self|children : utime+stime, or cutime+cstime of reaped children
    local f
    f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    if [ "$2" = self ]; then awk '{print $12 + $13}' <<<"$f"; else awk '{print $14 + $15}' <<<"$f"; fi
}
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        ss -Htan "( sport = :$p or dport = :$p )" | grep -q . || { echo "$p"; return; }
    done
}
MT_HS=(); NG_HS=(); MT_SCPU=(); NG_SCPU=(); MT_CCPU=(); NG_CCPU=(); HS_NOTES=()
MR_HS=(); MR_SCPU=(); MR_CCPU=(); MR_HS_MED=
MT_HS_MED=NA; NG_HS_MED=NA
if [ "$HS_RUNS" -gt 0 ]; then
    "$BIN" -q ca init --dir "$T/ca" --key-bits 2048 >/dev/null
    mkdir -p "$T/pub" "$T/ngx"

    # minitls server
    "$BIN" -q serve "$T/pub" --listen 127.0.0.1:0 --ca-dir "$T/ca" --max-clients 256 2>"$T/minitls.log" &
    MT_PID=$!; SERVER_PIDS+=("$MT_PID")
    for _ in $(seq 100); do grep -q 'serving .* on ' "$T/minitls.log" && break; kill -0 "$MT_PID" 2>/dev/null || break; sleep 0.1; done
    MADDR=$(sed -n 's/.*serving .* on \([0-9.:]*\).*/\1/p' "$T/minitls.log" | head -1)
    [ -n "$MADDR" ] || die "minitls serve did not start: $(cat "$T/minitls.log")"

    # nginx with client certificates, the same RSA-2048 credentials; one access-log line per
    # request: status and nginx's verdict on the client certificate
    NPORT=$(free_port)
    cat > "$T/ngx/nginx.conf" <<EOF
worker_processes 2;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
events { worker_connections 4096; }
http {
    log_format hs '\$status \$ssl_client_verify \$ssl_protocol \$ssl_cipher';
    access_log $T/ngx/access.log hs;
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
    "$NGINX" -e "$T/ngx/error.log" -p "$T/ngx" -c "$T/ngx/nginx.conf" -g 'daemon off;' 2>"$T/ngx/stderr" &
    NG_PID=$!; SERVER_PIDS+=("$NG_PID")
    for _ in $(seq 100); do ss -Hltn "sport = :$NPORT" | grep -q . && break; kill -0 "$NG_PID" 2>/dev/null || break; sleep 0.1; done
    ss -Hltn "sport = :$NPORT" | grep -q . || die "nginx did not start: $(cat "$T/ngx/error.log" "$T/ngx/stderr")"
    ngx_ticks() { local t=0 p; for p in $(ps -o pid= --ppid "$NG_PID"); do t=$((t + $(ticks "$p" self))); done; echo "$t"; }

    STIME=(openssl s_time -connect "127.0.0.1:$NPORT" -new -www / -cert "$T/ca/client.crt"
        -key "$T/ca/client.key" -CAfile "$T/ca/ca.crt")
    # Both must work, and nginx must refuse a client certificate from another CA, before we count.
    "$HS" "$MADDR" "$T/ca" 1 1 >/dev/null 2>"$T/hs.check" || die "examples/handshakes failed: $(cat "$T/hs.check")"
    "${STIME[@]}" -time 1 >/dev/null 2>&1 || true
    sleep 0.3
    grep -q '^200 SUCCESS TLSv1.3 TLS_AES_256_GCM_SHA384$' "$T/ngx/access.log" \
        || die "openssl s_time got no verified 200 from nginx: $(tail -3 "$T/ngx/access.log" "$T/ngx/error.log")"
    "$BIN" -q ca init --dir "$T/rogue" --key-bits 2048 >/dev/null
    : > "$T/ngx/access.log"
    openssl s_time -connect "127.0.0.1:$NPORT" -new -www / -cert "$T/rogue/client.crt" \
        -key "$T/rogue/client.key" -CAfile "$T/ca/ca.crt" -time 1 >/dev/null 2>&1 || true
    sleep 0.3
    ! grep -q '^200 ' "$T/ngx/access.log" || die "nginx answered 200 to a client certificate from another CA"
    ROGUE_COUNTED=$(grep -c . "$T/ngx/access.log" || true)

    hs_minitls() {     # one run; appends to MT_HS, MT_SCPU, MT_CCPU
        local s0 s1 c0 c1 n failed secs out
        s0=$(ticks "$MT_PID" self); c0=$(ticks $$ children)
        MINITLS_HS_RESUME=${HS_RESUME:-0} "$HS" "$MADDR" "$T/ca" "$HS_THREADS" "$HS_SECONDS" >"$T/hs.out" 2>"$T/hs.err" &
        CLIENT_PIDS=($!)
        wait "${CLIENT_PIDS[0]}" || true
        CLIENT_PIDS=()
        sleep 0.2
        s1=$(ticks "$MT_PID" self); c1=$(ticks $$ children)
        out=$(cat "$T/hs.out")   # "handshakes N failed F seconds S rate R"
        read -r _ n _ failed _ secs _ _ <<<"$out" || true
        if ! [[ ${n:-} =~ ^[0-9]+$ ]] || [ "$n" -eq 0 ]; then
            HS_NOTES+=("minitls run failed: $(head -c 300 "$T/hs.out" "$T/hs.err" | tr '\n' ' ')"); return
        fi
        [ "$failed" -gt 0 ] && HS_NOTES+=("minitls: $failed failed connection(s) in one run: $(head -3 "$T/hs.err" | tr '\n' ' ')")
        MT_HS+=("$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')")
        MT_SCPU+=("$(awk -v d=$((s1 - s0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", 1000 * d / hz / n }')")
        MT_CCPU+=("$(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", 1000 * d / hz / n }')")
        log "handshakes minitls: $n in ${secs}s = ${MT_HS[-1]}/s, server CPU ${MT_SCPU[-1]} ms, clients CPU ${MT_CCPU[-1]} ms per handshake"
    }
    hs_nginx() {       # one run; appends to NG_HS, NG_SCPU, NG_CCPU
        local s0 s1 c0 c1 t0 t1 i p n bad secs
        : > "$T/ngx/access.log"
        s0=$(ngx_ticks); c0=$(ticks $$ children)
        CLIENT_PIDS=()
        t0=$(now_ns)
        for ((i = 0; i < HS_THREADS; i++)); do
            "${STIME[@]}" -time "$HS_SECONDS" >"$T/stime.$i" 2>&1 &
            CLIENT_PIDS+=($!)
        done
        for p in "${CLIENT_PIDS[@]}"; do wait "$p" || true; done
        t1=$(now_ns)
        CLIENT_PIDS=()
        sleep 0.2
        s1=$(ngx_ticks); c1=$(ticks $$ children)
        n=$(grep -c '^200 SUCCESS ' "$T/ngx/access.log" || true)
        bad=$(grep -vc '^200 SUCCESS ' "$T/ngx/access.log" || true)
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
        if [ "$n" -eq 0 ]; then HS_NOTES+=("nginx run failed: $(head -c 300 "$T/stime.0" | tr '\n' ' ')"); return; fi
        [ "$bad" -gt 0 ] && HS_NOTES+=("nginx: $bad request(s) not answered '200 SUCCESS' in one run (not counted)")
        NG_HS+=("$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')")
        NG_SCPU+=("$(awk -v d=$((s1 - s0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", 1000 * d / hz / n }')")
        NG_CCPU+=("$(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.2f", 1000 * d / hz / n }')")
        log "handshakes nginx: $n verified in ${secs}s = ${NG_HS[-1]}/s, server CPU ${NG_SCPU[-1]} ms, clients CPU ${NG_CCPU[-1]} ms per handshake (s_time itself counted $(cat "$T"/stime.* | awk '/connections in [0-9.]+ real/ {n += $1} END {print n + 0}'))"
    }
    for ((r = 1; r <= HS_RUNS; r++)); do
        log "handshake rate, run $r/$HS_RUNS"
        hs_minitls
        hs_nginx
        # A returning client (session ticket, no RSA): the same loop resuming each time.
        keep_hs=("${MT_HS[@]}"); keep_s=("${MT_SCPU[@]}"); keep_c=("${MT_CCPU[@]}")
        HS_RESUME=1 hs_minitls
        if [ "${#MT_HS[@]}" -gt "${#keep_hs[@]}" ]; then
            MR_HS+=("${MT_HS[-1]}"); MR_SCPU+=("${MT_SCPU[-1]}"); MR_CCPU+=("${MT_CCPU[-1]}")
        fi
        MT_HS=("${keep_hs[@]}"); MT_SCPU=("${keep_s[@]}"); MT_CCPU=("${keep_c[@]}")
    done
    MT_HS_MED=$(median "${MT_HS[@]}"); NG_HS_MED=$(median "${NG_HS[@]}")
    MR_HS_MED=$(median "${MR_HS[@]}")
    for p in "${SERVER_PIDS[@]}"; do stop_pid "$p"; done
    SERVER_PIDS=()
fi

# --- report -----------------------------------------------------------------------------------
# cell FIGURE COLUMN [REF] : a cell of the first row of anchors.sh's "minitls compared" table
# (| figure | minitls | reference | reference value | ratio | better |) whose figure contains
# FIGURE (and whose reference contains REF)
cell() { awk -F'|' -v f="$1" -v r="${3:-}" 'index($2, f) > 0 && index($4, r) > 0 { gsub(/[ *]/, "", $'"$2"'); print $'"$2"'; exit }' "$ANCHORS_MD"; }
verdict() {  # verdict VALUE OP LIMIT
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v !~ /^[0-9.]+$/) { print "NOT MEASURED"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "MET" : "NOT MET" }'
}
TGT_ROWS=()
BIGL="1 GiB"; [ "${BIG_MIB:-1024}" = 1024 ] || BIGL="${BIG_MIB} MiB (BIG_MIB, shortened run)"
target() {   # target TEXT MINITLS REFERENCE RATIO OP LIMIT UNIT
    local v; v=$(verdict "${4:--}" "$5" "$6")
    TGT_ROWS+=("$1|${2:--}|${3:--}|${4:--}|$5 $6|$v")
}
B_MT=$(cell "1 GiB throughput" 3); B_NG=$(cell "1 GiB throughput" 5); B_R=$(cell "1 GiB throughput" 6)
target "$BIGL to disk, MB/s, vs nginx+curl" "$B_MT" "$B_NG" "$B_R" '>=' 1.25
S_MT=$(cell "1 KiB end-to-end" 3); S_NG=$(cell "1 KiB end-to-end" 5); S_R=$(cell "1 KiB end-to-end" 6)
target "1 KiB end to end, ms, vs nginx+curl" "$S_MT" "$S_NG" "$S_R" '<=' 0.5
T_MT=$(cell "tree of" 3 "scp -r"); T_SC=$(cell "tree of" 5 "scp -r"); T_R=$(cell "tree of" 6 "scp -r")
target "${TREE_FILES:-10000} x 1 KiB tree, s, vs scp -r (ratio of times)" "$T_MT" "$T_SC" "$T_R" '<=' 0.1
# total wall of CONC_N x 100 MiB at once, from anchors.sh's concurrency lines
conc_wall() { awk -v l="- $1: total wall **" 'index($0, l) == 1 { s = substr($0, length(l) + 1); sub(/ s\*\*.*/, "", s); print s; exit }' "$ANCHORS_MD"; }
C_MT=$(conc_wall "minitls fetch (RSA-2048 credentials)")
C_NGD=$(conc_wall "nginx + curl (mTLS), bodies to disk")
C_NGN=$(conc_wall "nginx + curl (mTLS, default cipher)")
target "${CONC_N:-50} x 100 MiB at once, total s, vs nginx+curl bodies to disk" "$C_MT" "$C_NGD" "$(ratio "$C_MT" "$C_NGD")" '<=' 1
target "(same, vs nginx+curl bodies to /dev/null)" "$C_MT" "$C_NGN" "$(ratio "$C_MT" "$C_NGN")" '<=' 1
CR_MT=$(cell "client peak RSS" 3); CR_NG=$(cell "client peak RSS" 5)
SR_MT=$(cell "server peak RSS (VmHWM), MiB, after the 1 GiB" 3); SR_NG=$(cell "server peak RSS (VmHWM), MiB, after the 1 GiB" 5)
TGT_ROWS+=("$BIGL: client peak RSS, MiB (reference: curl)|${CR_MT:--}|${CR_NG:--}|$(ratio "$CR_MT" "$CR_NG")|minitls <= 16 MiB|$(verdict "${CR_MT:--}" '<=' 16)")
TGT_ROWS+=("$BIGL: server peak RSS, MiB (reference: largest nginx worker)|${SR_MT:--}|${SR_NG:--}|$(ratio "$SR_MT" "$SR_NG")|minitls <= 16 MiB|$(verdict "${SR_MT:--}" '<=' 16)")
HS_R=$(ratio "$MT_HS_MED" "$NG_HS_MED")
TGT_ROWS+=("server handshakes/s, $HS_THREADS clients on the same cores, vs nginx (figure 5)|$MT_HS_MED|$NG_HS_MED|$HS_R|no target|-")
HR_R=$(ratio "${MR_HS_MED:-}" "$NG_HS_MED")
target "returning-client handshakes/s (session ticket) vs nginx full handshakes (figure 5)" "${MR_HS_MED:-}" "$NG_HS_MED" "$HR_R" '>=' 1.5

{
    cat "$ANCHORS_MD"
    echo
    echo "## Handshakes per second (bench/compare.sh)"
    echo
    if [ "$HS_RUNS" -gt 0 ]; then
        echo "$HS_THREADS concurrent clients, ${HS_SECONDS} s per run, $HS_RUNS runs alternating minitls / nginx; every connection a full handshake with client certificates (RSA-2048) followed by one request/response exchange, then closed; the clients share the machine's $(nproc) cores with the server, so their CPU cost lowers the rate too (hence the per-handshake CPU columns). minitls: \`examples/handshakes.rs\` (threads; counted = connect + handshake + one request answered after the server's Finished); its second row is the same loop as returning clients, each connection resuming the previous one's session ticket (no RSA on either side, X25519 still fresh), against nginx's full handshakes. nginx: \`ssl_verify_client on\`, TLS 1.3 AES-256-GCM, no session cache or tickets, \`openssl s_time -new -www /\` (processes; counted = \`200 SUCCESS\` lines in nginx's access log, i.e. requests answered after the client certificate verified; wall = first s_time start to last exit). A client certificate from another CA got no 200 from nginx ($ROGUE_COUNTED request(s) logged with an error status in 1 s; s_time counts those as connections)."
        echo
        echo "| server | handshakes/s (median) | server CPU ms / handshake (median) | clients' CPU ms / handshake (median) | runs, handshakes/s |"
        echo "|---|---|---|---|---|"
        echo "| minitls serve | $MT_HS_MED | $(median "${MT_SCPU[@]}") | $(median "${MT_CCPU[@]}") | ${MT_HS[*]} |"
        echo "| minitls serve, returning clients (tickets, no RSA) | $MR_HS_MED | $(median "${MR_SCPU[@]}") | $(median "${MR_CCPU[@]}") | ${MR_HS[*]} |"
        echo "| nginx (mTLS) | $NG_HS_MED | $(median "${NG_SCPU[@]}") | $(median "${NG_CCPU[@]}") | ${NG_HS[*]} |"
        echo
        echo "Ratio minitls / nginx: handshakes/s **$HS_R**, server CPU per handshake **$(ratio "$(median "${MT_SCPU[@]}")" "$(median "${NG_SCPU[@]}")")**. Server CPU from /proc (minitls serve: all threads; nginx: its workers), clients' CPU = reaped children of this script (clock ticks of 1/${HZ} s)."
        for n in "${HS_NOTES[@]}"; do echo "- $n"; done
    else
        echo "Not measured (HS_RUNS=0)."
    fi
    echo
    echo "## Targets (issue 5), medians of this run"
    echo
    echo "| figure | minitls | reference | ratio minitls / reference | target | verdict |"
    echo "|---|---|---|---|---|---|"
    for row in "${TGT_ROWS[@]}"; do echo "| ${row//|/ | } |"; done
    echo
    echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), minitls $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') ($BUILD_NOTE)$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (+ uncommitted changes)'); anchors report: $ANCHORS_MD."
} > "$REPORT"

cat "$REPORT"
echo
echo "report: $REPORT"
