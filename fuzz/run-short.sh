#!/usr/bin/env bash
# Short libFuzzer run of every pcad fuzz target (CI smoke fuzzing).
#
#   fuzz/run-short.sh                 # each target for 30 s
#   FUZZ_SECONDS=60 fuzz/run-short.sh # each target for 60 s
#   FUZZ_TARGETS="csr config" fuzz/run-short.sh
#
# Works from any directory. Needs cargo; installs cargo-fuzz if missing. cargo-fuzz needs
# nightly-only rustc flags (-Zsanitizer, sanitizer-coverage passes): on a stable toolchain they
# are unlocked with RUSTC_BOOTSTRAP=1, which this script sets.
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_TARGETS    space-separated subset (default: every target in fuzz/fuzz_targets)
#   FUZZ_SANITIZER  address (default) or none (about twice as fast, still catches panics)
#   CARGO_BUILD_JOBS  (cargo's own) limits build parallelism
#
# Corpus: fuzz/corpus/<target> (generated, git-ignored, kept between runs) seeded from the
# committed fuzz/seeds/<target>; dictionaries from fuzz/dicts/<target>.dict when present.
# Crash inputs land in fuzz/artifacts/<target>/; logs in fuzz/target/fuzz-logs/.
# Exit status: 0 when every target ran clean, 1 if any target crashed, panicked, leaked, timed
# out or failed to build.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
    echo "run-short.sh: FUZZ_SECONDS must be a positive integer, got '$SECONDS_PER_TARGET'" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-short.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi

cd "$ROOT"

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    targets=()
    for f in "$FUZZ_DIR"/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

build_args=(--sanitizer "$SANITIZER")

echo "run-short.sh: building ${#targets[@]} targets (sanitizer $SANITIZER)" >&2
if ! cargo fuzz build "${build_args[@]}"; then
    echo "run-short.sh: FAILED: fuzz targets do not build" >&2
    exit 1
fi

log_dir="$FUZZ_DIR/target/fuzz-logs"
mkdir -p "$log_dir"
failed=()
for t in "${targets[@]}"; do
    corpus="$FUZZ_DIR/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus")
    [[ -d "$FUZZ_DIR/seeds/$t" ]] && dirs+=("$FUZZ_DIR/seeds/$t")
    fuzz_args=(
        "-max_total_time=$SECONDS_PER_TARGET"
        -timeout=25
        -print_final_stats=1
        "-artifact_prefix=$artifacts/"
    )
    [[ -f "$FUZZ_DIR/dicts/$t.dict" ]] && fuzz_args+=("-dict=$FUZZ_DIR/dicts/$t.dict")
    log="$log_dir/$t.log"
    echo "run-short.sh: $t for ${SECONDS_PER_TARGET}s (log $log)" >&2
    if cargo fuzz run "${build_args[@]}" "$t" "${dirs[@]}" -- "${fuzz_args[@]}" >"$log" 2>&1; then
        stats="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
        echo "run-short.sh: $t ok: $stats" >&2
    else
        echo "run-short.sh: $t FAILED; last lines of $log:" >&2
        tail -n 60 "$log" >&2
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "run-short.sh: FAILED: ${failed[*]} (inputs in $FUZZ_DIR/artifacts/<target>/)" >&2
    exit 1
fi
echo "run-short.sh: all ${#targets[@]} targets clean" >&2
