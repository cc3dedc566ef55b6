#!/usr/bin/env bash
# Independent reader check for windows.handles, windows.modules and windows.modscan (and pslist/psscan on the same
# images): the test suite's WindowsHandlesTests lay out the attack scenario from the real Windows 10 19041, Windows 7 SP1
# and Windows 11 22000 ISFs (laid out by the image builder, windows-common.sh); Volatility 3 (its own kernel, DTB, object
# type, cookie and handle-table decoding) must report the same rows as cloudmem:
#   handles  pid, handle value, type, granted access, name, object offset (Volatility prints object addresses without
#            the upper 16 bits, and key names without the root "\REGISTRY\" that cloudmem shows)
#   modules  base, size, name, path in list order;  modscan  the same set (cloudmem also says OnList)
#   pslist   pid, ppid, name in list order;          psscan   the same set of pid, ppid, name
# Volatility's handles plugin needs capstone (python3-capstone) on Windows 8+ images.
#
# Usage: tests/peers/windows-handles-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#        ../../shared/symbols beside the repository)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, capstone or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! "$python" -c "import capstone" 2>/dev/null; then echo "skipped: capstone missing for $python (apt-get install python3-capstone)"; exit 0; fi
status=0
for image in $(attack_images); do
    name="$(basename "$image" .raw)"
    for plugin in handles modules modscan pslist psscan; do
        vol "$image" "windows.$plugin" "$work/vol-$plugin.json" || { echo "$name: Volatility 3 windows.$plugin failed: $(tail -1 "$work/vol-$plugin.err")"; status=1; }
        ours "$image" "windows.$plugin" "$work/ours-$plugin.json"
    done
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
work, name = sys.argv[1], sys.argv[2]
def load(kind, plugin):
    data = json.load(open(os.path.join(work, f"{kind}-{plugin}.json")))
    return data if kind == "vol" else data["rows"]
M48 = (1 << 48) - 1
h = lambda s: int(s, 16)
ok = True
def check(plugin, a, b, ordered=True):
    global ok
    same = a == b if ordered else sorted(a) == sorted(b)
    print(f"  {name} windows.{plugin}: {len(a)} Volatility rows, {len(b)} cloudmem rows: {'same' if same else 'DIFFERENT'}")
    for row in a:
        print(f"    {row}")
    if not same:
        for row in b:
            print(f"    ours {row}")
        ok = False
def key_name(row):
    n = row["name"]
    return n[len("\\REGISTRY\\"):] if row["type"] == "Key" and n.startswith("\\REGISTRY\\") else n
check("handles",
      [(r["PID"], r["HandleValue"], r["Type"], r["GrantedAccess"], r["Name"], r["Offset"] & M48) for r in load("vol", "handles")],
      [(r["pid"], h(r["handleValue"]), r["type"], h(r["grantedAccess"]), key_name(r), h(r["offset"]) & M48) for r in load("ours", "handles")])
check("modules",
      [(r["Base"] & M48, r["Size"], r["Name"], r["Path"]) for r in load("vol", "modules")],
      [(h(r["base"]) & M48, h(r["size"]), r["name"], r["path"]) for r in load("ours", "modules")])
check("modscan",
      [(r["Base"] & M48, r["Size"], r["Name"], r["Path"]) for r in load("vol", "modscan")],
      [(h(r["base"]) & M48, h(r["size"]), r["name"], r["path"]) for r in load("ours", "modscan")], ordered=False)
check("pslist",
      [(r["PID"], r["PPID"], r["ImageFileName"]) for r in load("vol", "pslist")],
      [(r["pid"], r["ppid"], r["imageFileName"]) for r in load("ours", "pslist")])
check("psscan",
      [(r["PID"], r["PPID"], r["ImageFileName"]) for r in load("vol", "psscan")],
      [(r["pid"], r["ppid"], r["imageFileName"]) for r in load("ours", "psscan")], ordered=False)
sys.exit(0 if ok else 1)
PY
    then echo "$name: same rows"; else echo "$name: Volatility 3 and cloudmem differ"; status=1; fi
done
if [ $status -eq 0 ]; then echo PASS; else echo FAIL; exit 1; fi
