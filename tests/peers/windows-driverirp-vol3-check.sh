#!/usr/bin/env bash
# Independent reader check for windows.driverirp: the "registry" scenario's driver objects (\Driver\Tcpip with
# IRP_MJ_DEVICE_CONTROL hooked into the unlinked rootkit.sys and IRP_MJ_INTERNAL_DEVICE_CONTROL pointing at pool code
# in no module; \Driver\rootkit) for the real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs. Volatility 3
# finds the same driver objects by its 'Driv' pool scan; compared per driver object and major: physical offset,
# driver name, IRP name, address (48 bits) and module. Where they differ by design: the offset (physical here, virtual
# in Volatility on Windows 10/11: compared within the page); Volatility names the driver by its
# object name (Tcpip) where cloudmem prints DriverName (\Driver\Tcpip; compared by the last component), prints one
# row per symbol alias at a kernel address (folded here), and names no module for the hidden rootkit.sys (it only
# looks at PsLoadedModuleList) where cloudmem names it with ModuleOnList false (compared as no module).
# Usage: tests/peers/windows-driverirp-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, hivexregedit or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! command -v hivexregedit >/dev/null; then echo "skipped: hivexregedit missing (apt-get install libwin-hivex-perl)"; exit 0; fi
status=0
for image in $(registry_images); do
    name="$(basename "$image" .raw)"
    vol "$image" windows.driverirp "$work/vol-driverirp.json" || { echo "$name: Volatility 3 windows.driverirp failed: $(tail -1 "$work/vol-driverirp.err")"; status=1; }
    ours "$image" windows.driverirp "$work/ours-driverirp.json"
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
work, name = sys.argv[1], sys.argv[2]
M48 = (1 << 48) - 1
h = lambda a: (int(a, 16) if isinstance(a, str) else a)
mod = lambda m: m.rsplit(".", 1)[0].lower() if isinstance(m, str) and m else None
# Volatility prints the driver object's physical offset on Windows 7 and its kernel virtual address on 10/11 (its pool
# scan runs on the virtual layer there); cloudmem prints the physical offset: the offset within the page is compared.
vol = sorted({(h(r["Offset"]) & 0xFFF, r["Driver Name"], r["IRP"], h(r["Address"]) & M48, mod(r["Module"]))
              for r in json.load(open(os.path.join(work, "vol-driverirp.json")))})
ours = sorted((h(r["offset"]) & 0xFFF, (r["driver"] or "").rsplit("\\", 1)[-1], r["irpName"], h(r["address"]) & M48,
               mod(r["module"]) if r["moduleOnList"] is True else None)
              for r in json.load(open(os.path.join(work, "ours-driverirp.json")))["rows"])
flagged = sorted({(r["driver"], r["irpName"], r["module"]) for r in json.load(open(os.path.join(work, "ours-driverirp.json")))["rows"] if r["suspicious"] and r["driver"].endswith("Tcpip")})
same = vol == ours and len(vol) > 0
print(f"  {name} driverirp: {len(vol)} Volatility rows, {len(ours)} cloudmem rows (flagged in Tcpip: {flagged}): {'same' if same else 'DIFFERENT'}")
if not same:
    for row in sorted(set(vol) - set(ours)): print(f"    vol only  {row}")
    for row in sorted(set(ours) - set(vol)): print(f"    ours only {row}")
sys.exit(0 if same else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
