#!/usr/bin/env bash
# Independent reader check for windows.ssdt: the "registry" scenario's KiServiceTable (400 entries at the kernel's Nt*
# functions, one hooked into the unlinked rootkit.sys) for the real Windows 10 19041, Windows 7 SP1 and Windows 11
# 22000 ISFs. Volatility 3 prints one row per symbol at an entry's address (aliases folded by the linker give several)
# and leaves out entries whose address is in no module on PsLoadedModuleList; so the check is: for every index
# Volatility prints, the same address (48 bits), module ntoskrnl, and cloudmem's symbol among Volatility's; the indexes
# Volatility leaves out are exactly those cloudmem flags as hooked.
# Usage: tests/peers/windows-ssdt-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, hivexregedit or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! command -v hivexregedit >/dev/null; then echo "skipped: hivexregedit missing (apt-get install libwin-hivex-perl)"; exit 0; fi
status=0
for image in $(registry_images); do
    name="$(basename "$image" .raw)"
    vol "$image" windows.ssdt "$work/vol-ssdt.json" || { echo "$name: Volatility 3 windows.ssdt failed: $(tail -1 "$work/vol-ssdt.err")"; status=1; }
    ours "$image" windows.ssdt "$work/ours-ssdt.json"
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
from collections import defaultdict
work, name = sys.argv[1], sys.argv[2]
M48 = (1 << 48) - 1
vol = defaultdict(lambda: {"address": None, "modules": set(), "symbols": set()})
for r in json.load(open(os.path.join(work, "vol-ssdt.json"))):
    v = vol[r["Index"]]
    v["address"] = r["Address"] & M48
    v["modules"].add(r["Module"])
    v["symbols"].add(r["Symbol"])
ours = {r["index"]: r for r in json.load(open(os.path.join(work, "ours-ssdt.json")))["rows"]}
bad = []
for index, v in sorted(vol.items()):
    o = ours.get(index)
    h = lambda a: (int(a, 16) if isinstance(a, str) else a) & M48
    if o is None or h(o["address"]) != v["address"] or v["modules"] != {"ntoskrnl"} or o["symbol"] not in v["symbols"] or o["hooked"]:
        bad.append((index, v, o))
left_out = sorted(set(ours) - set(vol))
hooked = sorted(i for i, o in ours.items() if o["hooked"])
same = not bad and left_out == hooked
print(f"  {name} ssdt: Volatility {len(vol)} indexes ({sum(len(v['symbols']) for v in vol.values())} rows), cloudmem {len(ours)} rows, "
      f"{len(hooked)} hooked {hooked} (left out by Volatility: {left_out}): {'same' if same else 'DIFFERENT'}")
for row in bad[:20]: print(f"    differs: {row}")
sys.exit(0 if same else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
