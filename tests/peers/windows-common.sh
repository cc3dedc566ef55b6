# Sourced by the tests/peers/windows-*-vol3-check.sh scripts: finds Volatility 3, python and the Windows symbol tables
# (printing "skipped: ..." and exiting 0 when one is absent), makes a work directory, and lays out the attack scenario
# with the image builder's command line for the three shipped kernels (Windows 10 19041, 7 SP1, 11 22000):
# $work/attack-<GUID>.raw and .manifest.json. The same builder and scenario the test suite uses.
# Env: VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#      ../../shared/symbols beside the repository).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
python="${PYTHON:-/usr/bin/python3}"
symbols="${SYMBOLS:-}"
if [ -z "$symbols" ]; then
    for candidate in "$root/../shared/symbols" "$root/../../shared/symbols"; do
        if [ -d "$candidate/windows/ntkrnlmp.pdb" ]; then symbols="$(cd "$candidate" && pwd)"; break; fi
    done
fi
if [ ! -f "$vol3/vol.py" ]; then echo "skipped: Volatility 3 not found at $vol3 (set VOL3_DIR)"; exit 0; fi
if ! command -v "$python" >/dev/null 2>&1; then echo "skipped: $python not found (set PYTHON)"; exit 0; fi
if [ -z "$symbols" ] || [ ! -d "$symbols/windows/ntkrnlmp.pdb" ]; then echo "skipped: no Windows symbols (set SYMBOLS)"; exit 0; fi

work="$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache"
windows_builds=(606FF669409B00F7FC8C61A9C1670129 339E74133576439CBCDF7E0229DA3773 0CE4A95C0CD782A7596B034D8648E585)

# attack_images: lays out the attack scenario for every shipped build; prints the image paths.
attack_images() {
    dotnet build "$root/tests/CloudMem.ImageBuilder" -nologo -v q >/dev/null
    local builder="$root/tests/CloudMem.ImageBuilder/bin/Debug/net10.0/cloudmem-imagebuilder.dll" guid isf
    for guid in "${windows_builds[@]}"; do
        isf="$symbols/windows/ntkrnlmp.pdb/$guid-1.json.xz"
        if [ ! -f "$isf" ]; then echo "$guid: no ISF, skipped" >&2; continue; fi
        dotnet "$builder" --isf "$isf" --out "$work/attack-$guid.raw" --scenario attack >/dev/null
        echo "$work/attack-$guid.raw"
    done
}

# registry_images: the "registry" scenario (attack + SYSTEM/SOFTWARE/SAM/NTUSER.DAT hives written by hivexregedit) for
# every shipped build; prints the image paths (the hive files are written beside each image as IMAGE.<name>.hive).
registry_images() {
    dotnet build "$root/tests/CloudMem.ImageBuilder" -nologo -v q >/dev/null
    local builder="$root/tests/CloudMem.ImageBuilder/bin/Debug/net10.0/cloudmem-imagebuilder.dll" guid isf
    for guid in "${windows_builds[@]}"; do
        isf="$symbols/windows/ntkrnlmp.pdb/$guid-1.json.xz"
        if [ ! -f "$isf" ]; then echo "$guid: no ISF, skipped" >&2; continue; fi
        dotnet "$builder" --isf "$isf" --out "$work/registry-$guid.raw" --scenario registry >/dev/null
        echo "$work/registry-$guid.raw"
    done
}

# vol IMAGE PLUGIN OUT.json: Volatility 3 offline with our symbol directory, JSON renderer; stderr into OUT.err.
vol() {
    "$python" "$vol3/vol.py" -q --offline --cache-path "$work/cache" -s "$symbols" -r json -f "$1" "$2" >"$3" 2>"${3%.json}.err"
}

# ours IMAGE PLUGIN OUT.json: cloudmem's rows as JSON.
ours() {
    "$root/cloudmem" "$2" "$1" --symbols "$symbols" --output json >"$3"
}
