#!/usr/bin/env bash
# Independent reader check for the dmp writer: Volatility 3 (layers/crash.py) must open our Windows crash dumps
# (full, DumpType 1, and bitmap, DumpType 5) of the real fixture and find the same Linux banners at the same physical
# offsets as in the raw capture. A dump read as a plain file instead of through the crash layer would shift every
# offset by the header size, so equal offsets also show that Volatility used the dump's run list / bitmap.
#
# Usage: tests/peers/crashdump-vol3-check.sh [RAW]    (default .fixtures/basic/memory.raw)
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the fixture is absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
python="${PYTHON:-/usr/bin/python3}"
raw="${1:-$root/.fixtures/basic/memory.raw}"

if [ ! -f "$vol3/vol.py" ]; then
    echo "skipped: Volatility 3 not found at $vol3 (set VOL3_DIR)"
    exit 0
fi
if ! command -v "$python" >/dev/null 2>&1; then
    echo "skipped: $python not found (set PYTHON)"
    exit 0
fi
if [ ! -f "$raw" ]; then
    echo "skipped: fixture $raw is missing (tests/fixtures/make-fixture.sh builds it)"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/crashdump-vol3.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cache="$work/vol3-cache"
mkdir -p "$cache"

"$root/cloudmem" convert "$raw" --to dmp --out "$work/full.dmp" --output json >"$work/full.convert.json"
"$root/cloudmem" convert "$raw" --to dmp --variant bitmap --out "$work/bitmap.dmp" --output json >"$work/bitmap.convert.json"

banners() {
    (cd "$vol3" && "$python" vol.py -q -vvvv --offline --cache-path "$cache" -r json -f "$1" banners.Banners) >"$2" 2>"$2.err" || {
        echo "volatility failed on $1:"; cat "$2.err"; return 1; }
}
banners "$raw" "$work/raw.json"
banners "$work/full.dmp" "$work/full.json"
banners "$work/bitmap.dmp" "$work/bitmap.json"
for name in full bitmap; do
    if grep -q "Stacked WindowsCrashDump64Layer" "$work/$name.json.err"; then
        echo "$name.dmp: Volatility stacked WindowsCrashDump64Layer (its crash-dump reader) on the file"
    else
        echo "$name.dmp: Volatility did NOT stack its crash-dump layer"; echo FAIL; exit 1
    fi
done

"$python" - "$work" <<'PY'
import json, sys, os
work = sys.argv[1]
def load(name):
    with open(os.path.join(work, name + ".json")) as f:
        text = f.read()
    start = text.find("[")              # vol3 may print a version line before the JSON
    rows = json.loads(text[start:]) if start >= 0 else []
    return sorted((r["Offset"], r["Banner"]) for r in rows)
raw = load("raw")
ok = bool(raw)
print(f"raw:        {len(raw)} banners")
for offset, banner in raw:
    print(f"  {offset} (0x{offset:X}): {banner[:100]}...")
for name in ("full", "bitmap"):
    got = load(name)
    same = got == raw
    ok = ok and same
    print(f"{name + '.dmp:':11} {len(got)} banners, same offsets and text as raw: {'yes' if same else 'NO'}")
    if not same:
        for row in sorted(set(raw) ^ set(got)):
            print(f"  differs: {row[0]} (0x{row[0]:X}) {'raw only' if row in raw else name + ' only'}: {row[1][:80]}")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
