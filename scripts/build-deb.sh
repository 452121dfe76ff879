#!/usr/bin/env bash
# Builds the Debian package of pcad and prints the path of the .deb (last line of stdout).
#   scripts/build-deb.sh              # release build + target/debian/pcad_<version>-1_<arch>.deb
# Needs: a Rust toolchain, dpkg-dev (dpkg-shlibdeps computes Depends: from the binary), libssl-dev.
# Installs cargo-deb with `cargo install cargo-deb --locked` when it is missing.
# The package metadata is [package.metadata.deb] in Cargo.toml; see packaging/ and systemd/.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb" >&2
    cargo install cargo-deb --locked >&2
fi
command -v dpkg-shlibdeps >/dev/null 2>&1 || {
    echo "build-deb: dpkg-shlibdeps is missing (Debian: apt install dpkg-dev)" >&2
    exit 2
}

echo "build-deb: cargo build --release --locked -p pcad" >&2
cargo build --release --locked -p pcad --bin pcad >&2

# Output goes to stderr except the package path: `deb=$(scripts/build-deb.sh)` works.
deb=$(cargo deb -p pcad --no-build --locked 2> >(cat >&2) | tail -n 1)
if [ ! -f "$deb" ]; then
    echo "build-deb: cargo deb did not report a package (got: $deb)" >&2
    exit 1
fi
echo "build-deb: built $deb" >&2
echo "$deb"
