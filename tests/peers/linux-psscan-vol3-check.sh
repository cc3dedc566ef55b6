#!/usr/bin/env bash
# Independent check of linux.psscan: Volatility 3's linux.psscan (with the kernel's ISF) and ours must find the same
# task_structs at the same physical offsets with the same pid, ppid, comm and exit state. Volatility rows whose comm is
# not printable (its scan also accepts some non-task bytes) are ignored; our idle task (swapper/0, pid 0) is not
# required from Volatility, which does not report it.
#
# Usage: tests/peers/linux-psscan-vol3-check.sh [CAPTURE]    (default .fixtures/basic/memory.lime)
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3),
#        ISF (default: /work/shared/peers/linux-<the fixture's kernel release>.json.xz)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, the ISF or the fixture is absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
python="${PYTHON:-/usr/bin/python3}"
isf="${ISF:-/work/shared/peers/linux-$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kernel_release'])" "$root/.fixtures/basic/manifest.json").json.xz}"
capture="${1:-$root/.fixtures/basic/memory.lime}"
[ -f "$capture" ] && capture="$(realpath "$capture")"

if [ ! -f "$vol3/vol.py" ]; then echo "skipped: Volatility 3 not found at $vol3 (set VOL3_DIR)"; exit 0; fi
if ! command -v "$python" >/dev/null 2>&1; then echo "skipped: $python not found (set PYTHON)"; exit 0; fi
if [ ! -f "$isf" ]; then echo "skipped: ISF $isf is missing (set ISF)"; exit 0; fi
if [ ! -f "$capture" ]; then echo "skipped: fixture $capture is missing (tests/fixtures/make-fixture.sh builds it)"; exit 0; fi

work="$(mktemp -d "${TMPDIR:-/tmp}/psscan-vol3.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache" "$work/symbols/linux"
ln -s "$isf" "$work/symbols/linux/"

(cd "$vol3" && "$python" vol.py -q --offline --cache-path "$work/cache" -s "$work/symbols" -r json -f "$capture" linux.psscan.PsScan) \
    >"$work/vol3.json" 2>"$work/vol3.err" || { echo "FAIL: volatility failed:"; cat "$work/vol3.err"; exit 1; }
"$root/cloudmem" linux.psscan "$capture" --output json >"$work/ours.json"

"$python" - "$work/vol3.json" "$work/ours.json" <<'PY'
import json, sys
vol = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))["rows"]
def printable(s): return 0 < len(s) < 16 and all(0x20 <= ord(c) < 0x7f for c in s)
theirs = {r["OFFSET (P)"]: (r["TID"], r["PPID"], r["COMM"], r["EXIT_STATE"] == "EXIT_DEAD")
          for r in vol if printable(r["COMM"]) and r["TID"] > 0}
mine = {int(r["physicalOffset"], 16): (r["pid"], r["ppid"], r["comm"], r.get("exitState") == "EXIT_DEAD")
        for r in ours if r["pid"] > 0}
ignored = len(vol) - len(theirs)
bad = []
for pa in sorted(set(theirs) | set(mine)):
    if theirs.get(pa) != mine.get(pa):
        bad.append(f"  0x{pa:X}: volatility {theirs.get(pa)} cloudmem {mine.get(pa)}")
print(f"volatility: {len(vol)} rows ({ignored} non-task rows ignored); cloudmem: {len(ours)} rows "
      f"({sum(1 for r in ours if r['state'] == 'listed')} listed, {sum(1 for r in ours if r['state'] != 'listed')} not listed)")
if bad:
    print("FAIL: rows differ:"); print("\n".join(bad)); sys.exit(1)
print(f"PASS: {len(mine)} task_structs agree (physical offset, pid, ppid, comm, EXIT_DEAD)")
PY
