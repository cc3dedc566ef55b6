#!/usr/bin/env bash
# Independent reader check for windows.callbacks: the "registry" scenario's notification callbacks (process creation in
# the kernel and in the unlinked rootkit.sys, thread creation in tcpip.sys, image load in rootkit.sys) and its registry
# callback (CallbackListHead, Volatility's CmRegisterCallbackEx rows) in rootkit.sys for the real
# Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs. Volatility 3 walks the same three arrays (and also prints
# each block again as GenericKernelCallback from its pool scan of 'Cbrb' allocations, which is left out here); per
# array the same callback addresses (48 bits, one row per address: Volatility repeats a callback once per symbol
# alias there) with the same module, except that Volatility names no module for the
# hidden driver (it only looks at PsLoadedModuleList) where cloudmem names rootkit.sys, found by the pool scan.
# Usage: tests/peers/windows-callbacks-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, hivexregedit or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! command -v hivexregedit >/dev/null; then echo "skipped: hivexregedit missing (apt-get install libwin-hivex-perl)"; exit 0; fi
status=0
for image in $(registry_images); do
    name="$(basename "$image" .raw)"
    vol "$image" windows.callbacks "$work/vol-callbacks.json" || { echo "$name: Volatility 3 windows.callbacks failed: $(tail -1 "$work/vol-callbacks.err")"; status=1; }
    ours "$image" windows.callbacks "$work/ours-callbacks.json"
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
work, name = sys.argv[1], sys.argv[2]
M48 = (1 << 48) - 1
h = lambda a: (int(a, 16) if isinstance(a, str) else a) & M48
# Volatility prints a callback once per symbol at its address (aliases): one row per callback here.
vol = sorted({(r["Type"], r["Callback"] & M48, r["Module"]) for r in json.load(open(os.path.join(work, "vol-callbacks.json")))
              if r["Type"].startswith("Psp") or r["Type"] == "CmRegisterCallbackEx"})
ours = sorted((r["type"].replace("CallbackListHead", "CmRegisterCallbackEx"), h(r["callback"]), None if r["moduleOnList"] is not True else r["module"].rsplit(".", 1)[0])
              for r in json.load(open(os.path.join(work, "ours-callbacks.json")))["rows"])
hidden = sorted(r["module"] for r in json.load(open(os.path.join(work, "ours-callbacks.json")))["rows"] if r["moduleOnList"] is False)
same = vol == ours
print(f"  {name} callbacks: {len(vol)} Volatility rows, {len(ours)} cloudmem rows (in hidden modules: {hidden}): {'same' if same else 'DIFFERENT'}")
if not same:
    for row in vol: print(f"    vol  {row}")
    for row in ours: print(f"    ours {row}")
sys.exit(0 if same else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
