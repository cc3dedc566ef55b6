#!/usr/bin/env bash
# Independent reader check for windows.netscan and windows.netstat: the network scenario (the attack scenario plus
# tcpip.sys objects: a reverse shell, listeners, UDP, IPv6, one connection unlinked from the partition table) laid out
# by the image builder with the real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 kernel ISFs and the tcpip.pdb
# table the scenario names for each (from $SYMBOLS/windows/tcpip.pdb). Volatility 3's windows.netscan and
# windows.netstat (its own netscan layout tables, its own tcpip.pdb symbol loading) must give the same rows as
# cloudmem: protocol, local and foreign address and port, state, pid, owner and create time (to the second), in
# any order. Offsets are not compared (Volatility reports kernel virtual addresses for both plugins, cloudmem's
# netscan physical ones).
#
# Usage: tests/peers/windows-netscan-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#        ../../shared/symbols beside the repository)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if [ ! -d "$symbols/windows/tcpip.pdb" ]; then echo "skipped: no tcpip.pdb tables in $symbols/windows"; exit 0; fi

# network_images: lays out the network scenario for every shipped build; prints the image paths.
network_images() {
    dotnet build "$root/tests/CloudMem.ImageBuilder" -nologo -v q >/dev/null
    local builder="$root/tests/CloudMem.ImageBuilder/bin/Debug/net10.0/cloudmem-imagebuilder.dll" guid isf
    for guid in "${windows_builds[@]}"; do
        isf="$symbols/windows/ntkrnlmp.pdb/$guid-1.json.xz"
        if [ ! -f "$isf" ]; then echo "$guid: no ISF, skipped" >&2; continue; fi
        dotnet "$builder" --isf "$isf" --out "$work/network-$guid.raw" --scenario network >/dev/null
        echo "$work/network-$guid.raw"
    done
}

status=0
for image in $(network_images); do
    name="$(basename "$image")"
    for plugin in windows.netscan windows.netstat; do
        vol "$image" "$plugin" "$work/vol.json"
        ours "$image" "$plugin" "$work/ours.json"
        if "$python" - "$work/vol.json" "$work/ours.json" <<'PY'
import json, sys
vol = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))["rows"]
def state(s):
    return (s or "").replace("_", "").lower()
a = sorted((r["Proto"], r["LocalAddr"], r["LocalPort"], r["ForeignAddr"], r["ForeignPort"], state(r["State"]), r["PID"], r["Owner"],
            str(r["Created"])[:19]) for r in vol)
b = sorted((r["proto"], r["localAddr"], r["localPort"], r["foreignAddr"], r["foreignPort"], state(r.get("state")), r["pid"], r["owner"],
            (r.get("created") or "")[:19]) for r in ours)
print("\n".join(f"  {x}" for x in a))
if a != b:
    print("  cloudmem:")
    print("\n".join(f"  {x}" for x in b))
sys.exit(0 if a and a == b else 1)
PY
        then echo "$name $plugin: same rows"; else echo "$name $plugin: Volatility 3 and cloudmem differ"; status=1; fi
    done
done
if [ $status -eq 0 ]; then echo PASS; else echo FAIL; exit 1; fi
