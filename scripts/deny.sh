#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licenses, security advisories, banned and
# duplicate crates, crate sources.
#
#   scripts/deny.sh                 all checks
#   scripts/deny.sh advisories      one check (licenses, bans, sources, advisories)
#
# No machine here reaches the online RustSec database, so the advisories come from the
# snapshot in ../shared/data/advisory-db.tar.gz (MINITLS_ADVISORY_DB_TARBALL overrides),
# unpacked into a temporary directory for this run only. Installs cargo-deny if it is
# missing (a few minutes of compiling, once per machine).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

deny_version="0.20.2"
if ! cargo deny --version 2>/dev/null | grep -qF "$deny_version"; then
    echo "== installing cargo-deny $deny_version"
    cargo install cargo-deny --locked --version "$deny_version"
fi

tarball="${MINITLS_ADVISORY_DB_TARBALL:-../shared/data/advisory-db.tar.gz}"
if [[ ! -f "$tarball" ]]; then
    echo "scripts/deny.sh: no advisory database snapshot at $tarball (set MINITLS_ADVISORY_DB_TARBALL)" >&2
    exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# cargo-deny looks for the default database in <db-path>/advisory-db-<hash of its URL>.
mkdir -p "$tmp/deny-db"
tar -xzf "$tarball" -C "$tmp/deny-db"
mv "$tmp/deny-db/advisory-db" "$tmp/deny-db/advisory-db-3157b0e258782691"
export MINITLS_DENY_DB_PATH="$tmp/deny-db"

# The license and source checks read the crates' manifests: make sure they are downloaded.
cargo fetch --quiet

echo "== cargo deny --offline check $*"
cargo deny --offline check "$@"
