#!/usr/bin/env bash
# Runs pcad on SoftHSM with demo credentials: installs what is missing, builds the release
# binary, creates ./demo (SoftHSM token, TLS material, config) once, and serves in the
# foreground. Ports: API 8443 (mutual TLS), public 8080 (CRL, OCSP). Ctrl-C stops it.
# PCAD_DEMO_DIR picks another folder (its ports are the ones its pcad.toml names).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bin pcad
pcad=$PWD/target/release/pcad
dir=${PCAD_DEMO_DIR:-$PWD/demo}
if [ ! -e "$dir/pcad.toml" ]; then
    "$pcad" quickstart --dir "$dir" >/dev/null
    echo "Created the demo in $dir (SoftHSM token, TLS material, pcad.toml)."
else
    echo "Using the existing demo in $dir."
fi
dir=$(cd "$dir" && pwd)
api_port=$(sed -n '/^\[api\]/,/^\[/s/^listen = "[^:]*:\([0-9]*\)"/\1/p' "$dir/pcad.toml")
public_port=$(sed -n '/^\[public\]/,/^\[/s/^listen = "[^:]*:\([0-9]*\)"/\1/p' "$dir/pcad.toml")

"$pcad" serve --config "$dir/pcad.toml" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$public_port/healthz" >/dev/null && break
    kill -0 $pid 2>/dev/null || { wait $pid; exit 1; }
    sleep 0.1
done
cat <<TEXT

pcad is running (pid $pid) on the demo's SoftHSM token:
  API (mutual TLS):    https://localhost:$api_port/v2.0/appkeys/demo/...
  public (CRL, OCSP):  http://127.0.0.1:$public_port
  logs:                this terminal.  Ctrl-C stops pcad.

Try, from another shell in $PWD:
  curl --cacert $dir/tls/ca.pem --cert $dir/tls/admin.pem --key $dir/tls/admin.key https://localhost:$api_port/v2.0/appkeys/demo/ca-stores
Then the README's "Trying it" block: a root, a template, a leaf, SIGN, revoke, OCSP and CRL.
Add an API user:  $pcad quickstart add-client NAME --role VIEWER --appkey demo --dir $dir
Manual: man -l packaging/pcad.8    Every config key: packaging/pcad.toml.example
TEXT
wait $pid
