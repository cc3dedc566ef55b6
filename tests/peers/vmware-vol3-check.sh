#!/usr/bin/env bash
# vmware-vol3-check.sh: Volatility 3 as an independent reader of our VMware writers.
#
# Converts the real fixture (.fixtures/basic/memory.raw) with ./cloudmem convert to
#   snap/guest.vmsn + snap/guest.vmem   (--to vmsn)
#   susp/guest.vmss + susp/guest.vmem   (--to vmss)
#   split/guest.vmsn + split/guest.vmem (--to vmsn from a LiME copy whose upper half is moved to 4 GiB: two regions)
# then runs `vol banners.Banners` on memory.raw and on each .vmem (Volatility 3 opens a .vmem and takes the layout
# from the sibling .vmss, else .vmsn; it does not read memory inline in a .vmss), checks from its log that it stacked
# its VmwareLayer on our files, and compares every (physical offset, banner) pair with memory.raw's (for the split
# layout: memory.raw's offsets moved by the same relocation). Prints PASS/FAIL per output and a summary.
#
# Usage: tests/peers/vmware-vol3-check.sh [memory.raw]     Env: VOL3_DIR (default /work/vol3), VOL3_CACHE, KEEP=1
# Exit: 0 all pass or skipped (no Volatility 3 / no fixture), 1 a check failed, 2 a conversion failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
raw="${1:-$root/.fixtures/basic/memory.raw}"
python=/usr/bin/python3
name="vmware-vol3-check"

if [ ! -f "$vol3/vol.py" ] || [ ! -x "$python" ]; then
    echo "$name: skipped (Volatility 3 not found at $vol3; set VOL3_DIR)"
    exit 0
fi
if [ ! -f "$raw" ]; then
    echo "$name: skipped (fixture $raw not built: tests/fixtures/make-fixture.sh)"
    exit 0
fi
cache="${VOL3_CACHE:-/tmp/vol3-cache-$name-$(id -u)}"
mkdir -p "$cache"
work="$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")"
if [ "${KEEP:-0}" != 1 ]; then
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/snap" "$work/susp" "$work/split"

# Upper half of the guest moved to 4 GiB: what a VM above the PCI hole looks like (a region map is then required).
half=$(( $(stat -c %s "$raw") / 2 ))
high=$(( 1 << 32 ))
"$python" - "$raw" "$work/split.lime" "$half" "$high" <<'PY'
import struct, sys
src, dst, half, high = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(src, "rb") as f, open(dst, "wb") as out:
    for start, length in ((0, half), (high, half)):
        out.write(struct.pack("<IIQQQ", 0x4C694D45, 1, start, start + length - 1, 0))
        left = length
        while left:
            chunk = f.read(min(left, 1 << 24))
            out.write(chunk)
            left -= len(chunk)
PY

convert() {
    if ! "$root/cloudmem" convert "$1" --to "$2" --out "$3" >"$work/convert.log" 2>&1; then
        echo "$name: FAIL: cloudmem convert $1 --to $2 failed:"; cat "$work/convert.log"
        exit 2
    fi
    echo "converted $(basename "$1") -> $3 ($2, verified by our reader)"
}
convert "$raw" vmsn "$work/snap/guest.vmsn"
convert "$raw" vmss "$work/susp/guest.vmss"
convert "$work/split.lime" vmsn "$work/split/guest.vmsn"

banners() {   # FILE OUT.json LOG
    (cd "$vol3" && "$python" vol.py -vvvvvv --offline --cache-path "$cache" -r json -f "$1" banners.Banners >"$2" 2>"$3")
}
banners "$raw" "$work/raw.json" "$work/raw.log"
banners "$work/snap/guest.vmem" "$work/snap.json" "$work/snap.log"
banners "$work/susp/guest.vmem" "$work/susp.json" "$work/susp.log"
banners "$work/split/guest.vmem" "$work/split.json" "$work/split.log"

"$python" - "$work" "$half" "$high" <<'PY'
import json, re, sys
work, half, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(tag):
    with open(f"{work}/{tag}.json") as f:
        return sorted((row["Offset"], row["Banner"]) for row in json.load(f))

def stacked(tag, state):
    log = open(f"{work}/{tag}.log").read()
    used = "Stacked VmwareLayer using VmwareStacker" in log
    meta = re.search(r"Metadata found: VMSS \((\w+)\) or VMSN \((\w+)\)", log)
    found = meta and meta.group(1 if state == "vmss" else 2) == "True"
    return used and bool(found)

raw = load("raw")
relocated = sorted((o if o < half else o - half + high, b) for o, b in raw)
print(f"memory.raw: {len(raw)} banners: " + ", ".join(f"0x{o:X}" for o, _ in raw))
checks = [
    ("vmsn + vmem", "snap", "vmsn", raw),
    ("vmss + vmem", "susp", "vmss", raw),
    ("vmsn + vmem, upper half at 4 GiB (2 regions)", "split", "vmsn", relocated),
]
failed = 0
for label, tag, state, expected in checks:
    got = load(tag)
    layer = stacked(tag, state)
    ok = layer and got == expected and len(got) > 0
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'}  {label}: vol3 {'stacked VmwareLayer from the .' + state if layer else 'did NOT stack VmwareLayer'}; "
          f"{len(got)} banners at " + ", ".join(f"0x{o:X}" for o, _ in got)
          + ("" if got == expected else "; expected " + ", ".join(f"0x{o:X}" for o, _ in expected)))
linux = [o for o, b in raw if "#1 SMP" in b]
print(f"summary: {len(checks) - failed}/{len(checks)} PASS"
      + (f"; linux_banner at 0x{linux[0]:X} in memory.raw" if linux else ""))
sys.exit(1 if failed else 0)
PY
