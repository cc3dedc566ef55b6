#!/usr/bin/env bash
# Independent reader check for the synthetic Windows images and windows.pslist: the attack scenario laid out by the
# image builder with the real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs (windows-common.sh);
# Volatility 3's windows.pslist (its own DTB, kernel and symbol discovery) must list the
# same pid, ppid, image name and create time (to the second) as `cloudmem windows.pslist`.
#
# Usage: tests/peers/windows-pslist-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#        ../../shared/symbols beside the repository)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
status=0
for image in $(attack_images); do
    name="$(basename "$image")"
    vol "$image" windows.pslist "$work/vol.json"
    ours "$image" windows.pslist "$work/ours.json"
    if "$python" - "$work/vol.json" "$work/ours.json" <<'PY'
import json, sys
vol = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))["rows"]
a = [(r["PID"], r["PPID"], r["ImageFileName"], str(r["CreateTime"])[:19].replace("T", " ")) for r in vol]
b = [(r["pid"], r["ppid"], r["imageFileName"], r["createTime"][:19].replace("T", " ")) for r in ours]
print("\n".join(f"  {x}" for x in a))
sys.exit(0 if a == b else 1)
PY
    then echo "$name: same process list"; else echo "$name: Volatility 3 and cloudmem differ"; status=1; fi
done
if [ $status -eq 0 ]; then echo PASS; else echo FAIL; exit 1; fi
