#!/usr/bin/env bash
# Independent reader check for the synthetic Windows images and windows.pslist: the test suite's WindowsPsListTests
# lay out raw images from the real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs (kept on disk with
# CLOUDMEM_KEEP_WINDOWS_IMAGES); Volatility 3's windows.pslist (its own DTB, kernel and symbol discovery) must list the
# same pid, ppid, image name and create time (to the second) as `cloudmem windows.pslist`.
#
# Usage: tests/peers/windows-pslist-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#        ../../shared/symbols beside the repository)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the symbols are absent.
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

work="$(mktemp -d "${TMPDIR:-/tmp}/windows-pslist-vol3.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache"
dotnet build "$root/tests/CloudMem.Tests" -nologo -v q >/dev/null
CLOUDMEM_SHARED="$(dirname "$symbols")" CLOUDMEM_KEEP_WINDOWS_IMAGES="$work" \
    dotnet test "$root/tests/CloudMem.Tests" --no-build --filter "FullyQualifiedName~Discovers_the_kernel_and_lists_the_processes" >/dev/null
status=0
shopt -s nullglob
images=("$work"/win-*.raw)
if [ ${#images[@]} -eq 0 ]; then echo "FAIL: the tests kept no image"; exit 1; fi
for image in "${images[@]}"; do
    name="$(basename "$image")"
    "$python" "$vol3/vol.py" -q --offline --cache-path "$work/cache" -s "$symbols" -r json -f "$image" windows.pslist >"$work/vol.json"
    "$root/cloudmem" windows.pslist "$image" --symbols "$symbols" --output json >"$work/ours.json"
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
