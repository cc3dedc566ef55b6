#!/usr/bin/env bash
# Independent check of linux.hidden_modules: a copy of the raw fixture gets one module ("dummy") unlinked from the
# kernel's `modules` list (prev->next and next->prev patched through the kernel page tables, walked here in Python
# from init_top_pgt_phys in truth.json). Then Volatility 3's linux.lsmod must no longer list it, its
# linux.check_modules (module list vs sysfs) must report it, and our linux.hidden_modules must flag it as hidden,
# while on the clean capture both report nothing.
#
# Usage: tests/peers/linux-hidden-modules-vol3-check.sh [VARIANT]    (default basic; uses .fixtures/VARIANT/memory.raw)
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3),
#        ISF (default: /work/shared/peers/linux-<the fixture's kernel release>.json.xz)
# Needs 256 MiB of space in TMPDIR for the mutated copy. Prints PASS or FAIL (exit 1), or "skipped: ..." (exit 0).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
python="${PYTHON:-/usr/bin/python3}"
isf="${ISF:-/work/shared/peers/linux-$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kernel_release'])" "$root/.fixtures/basic/manifest.json").json.xz}"
variant="${1:-basic}"
raw="$root/.fixtures/$variant/memory.raw"
truth="$root/.fixtures/$variant/truth.json"

if [ ! -f "$vol3/vol.py" ]; then echo "skipped: Volatility 3 not found at $vol3 (set VOL3_DIR)"; exit 0; fi
if ! command -v "$python" >/dev/null 2>&1; then echo "skipped: $python not found (set PYTHON)"; exit 0; fi
if [ ! -f "$isf" ]; then echo "skipped: ISF $isf is missing (set ISF)"; exit 0; fi
if [ ! -f "$raw" ] || [ ! -f "$truth" ]; then echo "skipped: fixture $variant is missing (tests/fixtures/make-fixture.sh builds it)"; exit 0; fi

work="$(mktemp -d "${TMPDIR:-/tmp}/hidden-modules-vol3.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache" "$work/symbols/linux"
ln -s "$isf" "$work/symbols/linux/"

# Where is dummy's struct module? Ask the clean capture.
module="$("$root/cloudmem" linux.lsmod "$raw" --output json | "$python" -c 'import json,sys; print([r["offset"] for r in json.load(sys.stdin)["rows"] if r["name"] == "dummy"][0])')"
cp "$raw" "$work/hidden.raw"
"$python" - "$work/hidden.raw" "$truth" "$module" <<'PY'
import json, struct, sys
path, truth, module = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
dtb = int(json.load(open(truth))["kernel"]["kaslr"]["init_top_pgt_phys"], 16)
f = open(path, "r+b")
def q(pa):
    f.seek(pa); return struct.unpack("<Q", f.read(8))[0]
def translate(va):  # 4-level x86-64 walk with 1 GiB / 2 MiB pages
    table = dtb
    for shift in (39, 30, 21, 12):
        e = q(table + ((va >> shift) & 511) * 8)
        assert e & 1, f"0x{va:X} not mapped"
        if shift in (30, 21) and e & 0x80:
            return (e & 0x000FFFFFFFFFF000 & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1))
        table = e & 0x000FFFFFFFFFF000
    return table | (va & 0xFFF)
entry = module + 8  # struct module: state (4 bytes, padded), then list
nxt, prv = q(translate(entry)), q(translate(entry + 8))
f.seek(translate(prv)); f.write(struct.pack("<Q", nxt))
f.seek(translate(nxt + 8)); f.write(struct.pack("<Q", prv))
PY

vol() { (cd "$vol3" && "$python" vol.py -q --offline --cache-path "$work/cache" -s "$work/symbols" -r json -f "$1" "$2") 2>"$work/vol.err" \
    || { echo "FAIL: volatility $2 failed:" >&2; cat "$work/vol.err" >&2; exit 1; }; }
vol "$raw" linux.check_modules.Check_modules >"$work/clean.check.json"
vol "$work/hidden.raw" linux.check_modules.Check_modules >"$work/hidden.check.json"
vol "$work/hidden.raw" linux.lsmod.Lsmod >"$work/hidden.lsmod.json"
"$root/cloudmem" linux.hidden_modules "$raw" --output json >"$work/clean.ours.json"
"$root/cloudmem" linux.hidden_modules "$work/hidden.raw" --output json >"$work/hidden.ours.json"

"$python" - "$work" <<'PY'
import json, sys
w = sys.argv[1]
load = lambda n: json.load(open(f"{w}/{n}"))
names = lambda rows, key: sorted(r[key] for r in rows)
clean_vol, hidden_vol, lsmod_vol = load("clean.check.json"), load("hidden.check.json"), load("hidden.lsmod.json")
clean_ours = [r["name"] for r in load("clean.ours.json")["rows"] if r["hidden"]]
hidden_ours = [r["name"] for r in load("hidden.ours.json")["rows"] if r["hidden"]]
print(f"volatility check_modules: clean {names(clean_vol, 'Module Name')}, mutated {names(hidden_vol, 'Module Name')}; "
      f"lsmod on mutated: {names(lsmod_vol, 'Name')}")
print(f"cloudmem hidden_modules: clean {sorted(clean_ours)}, mutated {sorted(hidden_ours)}")
ok = (clean_vol == [] and clean_ours == [] and names(hidden_vol, "Module Name") == ["dummy"] and hidden_ours == ["dummy"]
      and "dummy" not in names(lsmod_vol, "Name"))
print("PASS" if ok else "FAIL"); sys.exit(0 if ok else 1)
PY
