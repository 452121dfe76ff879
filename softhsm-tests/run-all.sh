#!/usr/bin/env bash
# The one command that runs every test of pcad:
#   1. cargo build --release --locked   (the pcad binary the end-to-end tests start)
#   2. cargo test --locked              (unit tests), then clippy over the whole workspace
#   3. fuzz/run-short.sh                (a short libFuzzer run of every fuzz target)
#   4. pytest softhsm-tests             (the real daemon on a real SoftHSM token, in a temp dir)
# Needs (Debian): apt install softhsm2 opensc openssl python3-venv curl   (+ a Rust toolchain)
# Extra arguments go to pytest, e.g.  softhsm-tests/run-all.sh -k stores -x
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
tests=$repo/softhsm-tests
venv=$tests/.venv
module=${PCAD_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

missing=()
for tool in cargo python3 openssl softhsm2-util pkcs11-tool curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -e "$module" ] || missing+=("$module")
if [ ${#missing[@]} -gt 0 ]; then
    echo "run-all.sh: missing ${missing[*]}" >&2
    echo "  Debian: sudo apt install softhsm2 opensc openssl python3-venv curl (and rustup for cargo)" >&2
    exit 2
fi

echo "==> cargo build --release --locked"
cargo build --release --locked --bin pcad

echo "==> cargo test --locked"
cargo test --locked

# The whole workspace (the benchmark programs too) must build and stay lint-clean.
echo "==> cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Short libFuzzer runs of every fuzz target (OCSP request and GET path, CSR, JSON bodies,
# config); PCAD_FUZZ_SECONDS=0 skips them. The long runs are recorded in the notes.
fuzz_seconds=${PCAD_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ]; then
    echo "==> fuzz/run-short.sh ($fuzz_seconds s per target)"
    FUZZ_SECONDS=$fuzz_seconds FUZZ_SANITIZER=${FUZZ_SANITIZER:-none} "$repo/fuzz/run-short.sh"
fi

echo "==> python venv ($venv)"
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        echo "run-all.sh: python3 -m venv failed (Debian: sudo apt install python3-venv)" >&2
        exit 2
    fi
fi
stamp=$venv/.requirements-installed
if [ ! -e "$stamp" ] || [ "$tests/requirements.txt" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$tests/requirements.txt"
    touch "$stamp"
fi

echo "==> pytest softhsm-tests"
export PCAD_BIN=$repo/target/release/pcad
exec "$venv/bin/python" -m pytest -q "$tests" "$@"
