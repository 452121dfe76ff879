#!/usr/bin/env bash
# Installs what pcad needs to run and to be tested on Debian: SoftHSM2 (the HSM of tests and
# demos), pkcs11-tool, openssl, curl, Python venv (pytest, cryptography, pkilint), gnutls'
# ocsptool, nginx + wrk for the benchmarks, redis-server (scale-out tests), certbot, lego and
# pebble's challenge server (ACME tests), jq (the README's examples). Installs only what is missing; uses sudo when
# not root. A Rust toolchain (rustup) is expected to be there already.
set -euo pipefail

packages=(softhsm2 opensc openssl curl python3 python3-venv gnutls-bin nginx-light wrk util-linux jq
          redis-server certbot lego pebble)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx-light starts a server on port 80 when installed; the benchmarks start their own.
$sudo systemctl disable --now nginx >/dev/null 2>&1 || $sudo service nginx stop >/dev/null 2>&1 || true
# redis-server likewise starts a server on 6379; the tests start their own.
$sudo systemctl disable --now redis-server >/dev/null 2>&1 || $sudo service redis-server stop >/dev/null 2>&1 || true
