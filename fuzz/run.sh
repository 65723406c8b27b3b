#!/usr/bin/env bash
# Runs the fuzz targets for a fixed time each, starting from the committed seeds.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (defaults: 120 s, every target)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The growing corpus
# goes to fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/ (both git-ignored);
# the seeds in fuzz/seeds/<target>/ are only read. Each run's log, ending with libFuzzer's
# final statistics, is kept in fuzz/target/fuzz-logs/<target>.log. Exits non-zero if any
# target found a crash.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wire_decode record_open server_handshake client_handshake)
fi

cargo +nightly fuzz build
mkdir -p target/fuzz-logs
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="target/fuzz-logs/$t.log"
    echo "== $t: ${secs}s (log: fuzz/$log)"
    # One job, no forking: the machine is small and shared.
    if ! cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 \
        >"$log" 2>&1; then
        echo "!! $t failed: see fuzz/$log and fuzz/artifacts/$t/"
        status=1
    fi
    # The last status line (execs, cov, ft, corpus) and the final counters.
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
    grep -E 'stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
    echo "corpus/$t: $(find "corpus/$t" -type f | wc -l) files"
done
exit $status
