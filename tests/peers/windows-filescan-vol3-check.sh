#!/usr/bin/env bash
# Independent reader check for windows.filescan: the attack scenario's file objects ('File' pool allocations) for the
# real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs. Volatility 3 2.11 prints each _FILE_OBJECT's
# FileName and its address in the kernel's virtual layer; cloudmem prints the physical address and the name with its
# device. Compared: the FileName and the offset within the page (the low 12 bits, the same in both address spaces).
# Usage: tests/peers/windows-filescan-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
status=0
for image in $(attack_images); do
    name="$(basename "$image" .raw)"
    vol "$image" windows.filescan "$work/vol-filescan.json" || { echo "$name: Volatility 3 windows.filescan failed: $(tail -1 "$work/vol-filescan.err")"; status=1; }
    ours "$image" windows.filescan "$work/ours-filescan.json"
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
work, name = sys.argv[1], sys.argv[2]
h = lambda a: int(a, 16) if isinstance(a, str) else a
vol = sorted((r["Offset"] & 0xFFF, r["Name"]) for r in json.load(open(os.path.join(work, "vol-filescan.json"))))
ours = sorted((h(r["offset"]) & 0xFFF, r["fileName"]) for r in json.load(open(os.path.join(work, "ours-filescan.json")))["rows"])
same = vol == ours
print(f"  {name} filescan: {len(vol)} Volatility rows, {len(ours)} cloudmem rows: {'same' if same else 'DIFFERENT'}")
if not same:
    for row in vol: print(f"    vol  {row}")
    for row in ours: print(f"    ours {row}")
sys.exit(0 if same else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
