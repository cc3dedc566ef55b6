#!/usr/bin/env bash
# Independent reader check for windows.dlllist (the issue's "must show": the same DLLs), windows.cmdline,
# windows.envars, windows.getsids and windows.threads, on the attack scenario laid out with the
# real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs by the image builder (windows-common.sh);
# Volatility 3 (its own kernel, DTB and symbol discovery) must report the same rows as cloudmem:
#   dlllist  pid, process, base, size, name, path, in load order
#   cmdline  pid, process, args (a process without a PEB: both say so; Volatility "Required memory at ...")
#   envars   pid, process, variable, value (Volatility's Block is the address of the Environment field, ours the block's)
#   getsids  pid, process, SID; the name wherever Volatility gives one
#   threads  offset, pid, tid, start address (48-bit, as Volatility prints them), create time to the second
#
# Usage: tests/peers/windows-dlllist-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#        ../../shared/symbols beside the repository)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
status=0
for image in $(attack_images); do
    name="$(basename "$image")"
    for plugin in dlllist cmdline envars getsids threads; do
        vol "$image" "windows.$plugin" "$work/vol.json" || true
        ours "$image" "windows.$plugin" "$work/ours.json"
        if "$python" - "$plugin" "$work/vol.json" "$work/ours.json" <<'PY'
import json, sys
plugin, vol_file, ours_file = sys.argv[1:]
text = open(vol_file).read()
vol = json.loads(text[text.index("["):]) if "[" in text else []
ours = json.load(open(ours_file))["rows"]
mask = (1 << 48) - 1
h = lambda s: int(s, 16)
if plugin == "dlllist":
    a = [(r["PID"], r["Process"], r["Base"], r["Size"], r["Name"], r["Path"]) for r in vol]
    b = [(r["pid"], r["process"], h(r["base"]), h(r["size"]), r["name"], r["path"]) for r in ours]
    shown = [f"{r[0]} {r[1]} 0x{r[2]:x} {r[4]}" for r in a]
elif plugin == "cmdline":
    a = [(r["PID"], r["Process"], r["Args"] if not str(r["Args"]).startswith("Required memory at") else None) for r in vol]
    b = [(r["pid"], r["process"], r.get("args")) for r in ours]
    shown = [f"{r['PID']} {r['Process']}: {r['Args']}" for r in vol]
elif plugin == "envars":
    a = [(r["PID"], r["Process"], r["Variable"], r["Value"]) for r in vol]
    b = [(r["pid"], r["process"], r["variable"], r["value"]) for r in ours]
    shown = [f"{r[0]} {r[1]} {r[2]}={r[3]}" for r in a if r[2] in ("STAGE2", "USERNAME")]
elif plugin == "getsids":
    a = [(r["PID"], r["Process"], r["SID"]) for r in vol]
    b = [(r["pid"], r["process"], r["sid"]) for r in ours]
    names = {(r["PID"], r["SID"]): r["Name"] for r in vol if r["Name"]}
    ours_names = {(r["pid"], r["sid"]): r.get("name") for r in ours}
    bad = [k for k, v in names.items() if ours_names.get(k) != v]
    if bad:
        print(f"  names differ: {bad}")
        a = None
    shown = [f"{r['PID']} {r['SID']} {r['Name']}" for r in vol if r["PID"] == 6044]
else:
    a = [(r["Offset"] & mask, r["PID"], r["TID"], r["StartAddress"] & mask, str(r["CreateTime"])[:19]) for r in vol]
    b = [(h(r["offset"]) & mask, r["pid"], r["tid"], h(r["startAddress"]) & mask, (r.get("createTime") or "")[:19]) for r in ours]
    flagged = {(r["pid"], r["tid"]) for r in ours if r.get("suspicious")}
    shown = [f"{r[1]}/{r[2]} 0x{r[0]:x} start 0x{r[3]:x} {r[4]}" + ("  <- ours: " + next(o["suspicious"] for o in ours if (o["pid"], o["tid"]) == (r[1], r[2])) if (r[1], r[2]) in flagged else "") for r in a]
print("\n".join(f"    {s}" for s in shown))
if a != b:
    print(f"  Volatility: {len(a or [])} rows, cloudmem: {len(b)} rows")
    for x, y in zip(a or [], b):
        if x != y:
            print(f"  first difference: vol {x} / ours {y}")
            break
sys.exit(0 if a == b and len(b) > 0 else 1)
PY
        then echo "$name windows.$plugin: same rows"; else echo "$name windows.$plugin: Volatility 3 and cloudmem differ"; tail -3 "$work/vol.err" || true; status=1; fi
    done
done
if [ $status -eq 0 ]; then echo PASS; else echo FAIL; exit 1; fi
