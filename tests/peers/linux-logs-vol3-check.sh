#!/usr/bin/env bash
# linux-logs-vol3-check.sh: Volatility 3 as an independent reader for linux.dmesg, linux.envars and linux.bash.
#
# Runs `vol linux.kmsg.Kmsg`, `linux.envars.Envars` and `linux.bash.Bash` (with the kernel's ISF, which Volatility
# needs; cloudmem does not) and `./cloudmem linux.dmesg|linux.envars|linux.bash --output json` on the same capture,
# and compares: every kmsg record (timestamp, level, caller, text) in order; every (pid, comm, key, value) of the
# environments; the bash rows (both empty on the busybox fixture). Prints PASS/FAIL per plugin and a summary.
#
# Usage: tests/peers/linux-logs-vol3-check.sh [capture]   (default .fixtures/basic/memory.lime)
# Env: VOL3_DIR (default /work/vol3), VOL3_ISF (default /work/shared/peers/linux-<the fixture kernel release>.json.xz), VOL3_CACHE
# Exit: 0 all pass or skipped (no Volatility 3 / ISF / fixture), 1 a comparison failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
isf="${VOL3_ISF:-/work/shared/peers/linux-$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kernel_release'])" "$root/.fixtures/basic/manifest.json").json.xz}"
capture="${1:-$root/.fixtures/basic/memory.lime}"
python=/usr/bin/python3
name="linux-logs-vol3-check"

if [ ! -f "$vol3/vol.py" ] || [ ! -x "$python" ]; then
    echo "$name: skipped (Volatility 3 not found at $vol3; set VOL3_DIR)"; exit 0
fi
if [ ! -f "$isf" ]; then
    echo "$name: skipped (no ISF for the fixture kernel at $isf; set VOL3_ISF)"; exit 0
fi
if [ ! -f "$capture" ]; then
    echo "$name: skipped (fixture $capture not built: tests/fixtures/make-fixture.sh)"; exit 0
fi
cache="${VOL3_CACHE:-/tmp/vol3-cache-$name-$(id -u)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache" "$work/symbols/linux"
ln -s "$isf" "$work/symbols/linux/"

vol() { (cd "$vol3" && "$python" vol.py -q --offline --cache-path "$cache" -s "$work/symbols" -r json -f "$capture" "$1") > "$work/vol-$2.json" 2> "$work/vol-$2.err"; }
vol linux.kmsg.Kmsg dmesg
vol linux.envars.Envars envars
vol linux.bash.Bash bash
for p in dmesg envars bash; do
    "$root/cloudmem" "linux.$p" "$capture" --output json > "$work/ours-$p.json"
done

"$python" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
load = lambda n: json.load(open(f"{work}/{n}.json"))
levels = ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"]  # Volatility's names
failed = 0

def report(plugin, ok, detail):
    global failed
    print(f"{'PASS' if ok else 'FAIL'} {plugin}: {detail}")
    failed += 0 if ok else 1

# Volatility prints a dev_printk record's device as extra " SUBSYSTEM=..." / " DEVICE=..." lines (as /dev/kmsg does);
# cloudmem has them as columns: fold them back into the record.
vol = []
for r in load("vol-dmesg"):
    if r["line"].startswith((" SUBSYSTEM=", " DEVICE=")) and vol:
        vol[-1] = vol[-1] + (r["line"].strip(),)
    else:
        vol.append((r["timestamp"], r["level"], r["caller"], r["line"]))
ours = []
for r in load("ours-dmesg")["rows"]:
    c = r["caller"]
    caller = f"Task({c[1:]})" if c.startswith("T") else f"CPU({c[1:]})"
    row = (f"{r['timestampSeconds']:.6f}", levels[r["level"]], caller, r["text"])
    row += ((f"SUBSYSTEM={r['subsystem']}",) if r.get("subsystem") else ()) + ((f"DEVICE={r['device']}",) if r.get("device") else ())
    ours.append(row)
# Volatility 2.11's kmsg loop stops when it reaches head_id, so it never prints the newest record (the one at
# head_id); the guest's console (boot.log) shows that record. Accept exactly that one extra record at the end.
diff = next((i for i, (a, b) in enumerate(zip(vol, ours)) if a != b), None)
if diff is None and len(ours) == len(vol) + 1:
    print(f"note: cloudmem's last record (the head descriptor) is not in Volatility's output: {ours[-1]}")
    ours = ours[:-1]
report("linux.dmesg", vol == ours, f"{len(vol)} kmsg records from Volatility, {len(ours)} from cloudmem"
       + ("" if diff is None else f"; first difference at {diff}: vol {vol[diff]} / ours {ours[diff]}"))

vol = [(r["PID"], r["COMM"], r["KEY"], r["VALUE"]) for r in load("vol-envars")]
ours = [(r["pid"], r["comm"], r["key"], r["value"]) for r in load("ours-envars")["rows"]]
report("linux.envars", vol == ours, f"{len(vol)} variables from Volatility, {len(ours)} from cloudmem"
       + ("" if vol == ours else f"; only vol: {sorted(set(vol) - set(ours))[:5]}, only ours: {sorted(set(ours) - set(vol))[:5]}"))

vol = [(r["PID"], r["Command"]) for r in load("vol-bash")]
ours = [(r["pid"], r["command"]) for r in load("ours-bash")["rows"]]
report("linux.bash", vol == ours, f"{len(vol)} commands from Volatility, {len(ours)} from cloudmem")
print("linux-logs-vol3-check: " + ("all passed" if failed == 0 else f"{failed} failed"))
sys.exit(1 if failed else 0)
PY
