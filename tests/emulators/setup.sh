#!/usr/bin/env bash
# Installs the local emulators the connector tests run against, into a cache outside git
# (CLOUDMEM_EMULATORS, default ~/.cache/cloudmem/emulators). Idempotent: a part already installed at the pinned
# version is left alone. Tests find the emulators there and skip with the reason when they are absent (fail when
# CLOUDMEM_REQUIRE_FIXTURES=1). Each connector appends its own part below; a part that cannot be installed here
# prints why and the script goes on (the tests then say what is missing).
set -uo pipefail
root="${CLOUDMEM_EMULATORS:-$HOME/.cache/cloudmem/emulators}"
mkdir -p "$root"

# npm_part NAME VERSION: installs the npm package NAME@VERSION into $root/NAME (bin at $root/NAME/node_modules/.bin).
npm_part() {
    local name="$1" version="$2" dir="$root/$1"
    if [ -f "$dir/.installed-$version" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "emulators: npm not found; $name not installed (its tests will skip)" >&2
        return 0
    fi
    # Installed beside the target and moved into place whole: several worktrees share this cache, and a run that
    # installs into the live directory while another removes it leaves a half-installed package behind a marker.
    local stage
    stage="$(mktemp -d "$root/.$name.XXXXXX")"
    printf '{ "name": "cloudmem-emulator-%s", "private": true }\n' "$name" > "$stage/package.json"
    if (cd "$stage" && npm install --no-audit --no-fund --loglevel=error "$name@$version" >&2); then
        touch "$stage/.installed-$version"
        rm -rf "$dir.old.$$"
        [ -e "$dir" ] && mv "$dir" "$dir.old.$$"
        mv "$stage" "$dir" && rm -rf "$dir.old.$$"
        echo "emulators: $name $version installed in $dir" >&2
    else
        rm -rf "$stage"
        echo "emulators: npm install $name@$version failed (its tests will skip)" >&2
    fi
}

# --- AWS: s3rver (S3 over its real wire protocol; EC2/SSM are stubs inside the tests) ---
npm_part s3rver 3.7.1

# --- vSphere: cloudmem-vcsim (govmomi 0.24 simulator from Debian packages, our main in tests/emulators/vcsim) ---
"$(dirname "${BASH_SOURCE[0]}")/vcsim/build.sh" "$root/vcsim"
# --- Azure: azurite (Blob service over its real wire protocol; ARM is a local HTTPS fake inside the tests) ---
# azurite 3.37 declares node >= 22 but its Blob service runs on the node 20 Debian ships (npm only warns).
npm_part azurite 3.37.0
# --- AWS: dynalite (DynamoDB over its real wire protocol, LevelDB in memory; the dedupe/lock table and step state) ---
npm_part dynalite 4.0.0
# --- Fleet Parquet: hyparquet (a pure-JavaScript Parquet reader), the independent reader of the case Parquet files ---
npm_part hyparquet 1.31.5

exit 0
