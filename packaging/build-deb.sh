#!/usr/bin/env bash
# Builds the smswire Debian package from a checkout with cargo-deb (release profile) and
# prints the path of the .deb on its last line of output.
#
# Everything the package holds comes from [package.metadata.deb] in Cargo.toml and from
# packaging/. Nothing is generated beforehand: cargo-deb itself gzips the man page
# (usr/share/man/...), turns packaging/debian/changelog into changelog.Debian.gz, writes
# the copyright file from LICENSE, and inserts its systemd fragments at the DEBHELPER
# token of the maintainer scripts.
#
# Environment: CARGO_DEB_VERSION (default below) selects the cargo-deb to install when
# the one on PATH is another version or missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"

if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "== installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi

# Splitting the debug info off the binary takes GNU objcopy (binutils).
if ! command -v objcopy >/dev/null 2>&1; then
    echo "build-deb: objcopy is missing: apt-get install binutils" >&2
    exit 1
fi

# cargo-deb prints the paths of what it wrote: the .deb, and the smswire-dbgsym .ddeb
# holding the debug line tables (dbgsym = true in Cargo.toml).
echo "== cargo deb (release build)" >&2
out="$(cargo deb --locked --output target/debian/)"
printf '%s\n' "$out" | grep '\.ddeb$' >&2 || true
deb="$(printf '%s\n' "$out" | grep '\.deb$' | tail -n 1)"
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "build-deb: cargo deb did not report a .deb (its output: $out)" >&2
    exit 1
fi
echo "$deb"
