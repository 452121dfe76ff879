#!/usr/bin/env bash
# Runs pcad on SoftHSM with demo credentials: installs what is missing, builds the release
# binary, creates ./demo (SoftHSM token, TLS material, config) once, and serves in the
# foreground. Ports: API 8443 (mutual TLS), public 8080 (CRL, OCSP). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bin pcad
dir=${PCAD_DEMO_DIR:-$PWD/demo}
if [ ! -e "$dir/pcad.toml" ]; then
    target/release/pcad quickstart --dir "$dir"
else
    echo "Using the existing demo in $dir. Try:"
    echo "  curl --cacert $dir/tls/ca.pem --cert $dir/tls/admin.pem --key $dir/tls/admin.key https://localhost:8443/v2.0/appkeys/demo/ca-stores"
fi
exec target/release/pcad serve --config "$dir/pcad.toml"
