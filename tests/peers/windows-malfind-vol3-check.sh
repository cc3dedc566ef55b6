#!/usr/bin/env bash
# Independent reader check for the Windows VAD plugins: builds the attack scenario (tests/CloudMem.ImageBuilder) with
# the real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs, then compares, row by row, Volatility 3's
#   windows.vadinfo    (pid, node, start, end, tag, protection, commit charge, private, file)
#   windows.malfind    (pid, start, end, tag, protection, commit charge, private, the first 64 bytes)
#   windows.ldrmodules (pid, base, InLoad, InInit, InMem, mapped path)
# with cloudmem's; and prints windows.hollowprocesses next to our windows.hollowfind (Volatility's checks see only the
# unmapped executable; ours also the remapped one: every process Volatility reports must be in ours).
#
# Usage: tests/peers/windows-malfind-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols or
#        ../../shared/symbols beside the repository)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3 or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
status=0
for image in $(attack_images); do
    guid="$(basename "$image" .raw)"; guid="${guid#attack-}"
    for plugin in vadinfo malfind ldrmodules hollowprocesses; do
        vol "$image" "windows.$plugin" "$work/vol-$plugin.json"
    done
    for plugin in vadinfo malfind ldrmodules hollowfind; do
        ours "$image" "windows.$plugin" "$work/ours-$plugin.json"
    done
    if "$python" - "$work" "$guid" <<'PY'
import json, os, sys
work, guid = sys.argv[1], sys.argv[2]
vol = lambda p: json.load(open(os.path.join(work, f"vol-{p}.json")))
ours = lambda p: json.load(open(os.path.join(work, f"ours-{p}.json")))["rows"]
h = lambda v: int(v, 16) if isinstance(v, str) else v
ok = True

def same(name, a, b):
    global ok
    a, b = sorted(a, key=repr), sorted(b, key=repr)
    if a == b:
        print(f"  {name}: {len(a)} rows, same")
    else:
        ok = False
        print(f"  {name}: DIFFERENT ({len(a)} Volatility rows, {len(b)} ours)")
        for x in a:
            if x not in b: print(f"    only Volatility: {x}")
        for x in b:
            if x not in a: print(f"    only cloudmem:   {x}")

same("vadinfo",
     [(r["PID"], r["Offset"], r["Start VPN"], r["End VPN"], r["Tag"], r["Protection"], r["CommitCharge"], r["PrivateMemory"], r["File"]) for r in vol("vadinfo")],
     [(r["pid"], h(r["offset"]), h(r["start"]), h(r["end"]), r["tag"], r["protection"], r["commitCharge"], int(r["privateMemory"]), r.get("file")) for r in ours("vadinfo")])

def vol_bytes(text):
    return bytes.fromhex("".join(line[:47] for line in text.strip('"').strip().splitlines()))
def our_bytes(lines):
    return bytes.fromhex("".join(line.split("  ")[1][:47] for line in lines))
malfind_vol = [(r["PID"], r["Start VPN"], r["End VPN"], r["Tag"], r["Protection"], r["CommitCharge"], r["PrivateMemory"], vol_bytes(r["Hexdump"]).hex()) for r in vol("malfind")]
malfind_ours = [(r["pid"], h(r["start"]), h(r["end"]), r.get("tag"), r["protection"], r["commitCharge"], int(r["privateMemory"]), our_bytes(r["hexdump"]).hex()) for r in ours("malfind")]
same("malfind", malfind_vol, malfind_ours)
for r in sorted(malfind_vol):
    print(f"    pid {r[0]} 0x{r[1]:x}-0x{r[2]:x} {r[3]} {r[4]} first bytes {r[7][:16]}")

same("ldrmodules",
     [(r["Pid"], r["Base"], r["InLoad"], r["InInit"], r["InMem"], r["MappedPath"]) for r in vol("ldrmodules")],
     [(r["pid"], h(r["base"]), r["inLoad"], r["inInit"], r["inMem"], r.get("mappedPath")) for r in ours("ldrmodules")])

hv = sorted({r["PID"] for r in vol("hollowprocesses")})
ho = sorted({(r["pid"], r["sign"]) for r in ours("hollowfind")})
print(f"  hollowprocesses (Volatility) pids {hv}; hollowfind (cloudmem) {ho}")
if not set(hv) <= {p for p, _ in ho}:
    ok = False
    print("  hollow: Volatility reports a process cloudmem does not")
sys.exit(0 if ok else 1)
PY
    then echo "$guid: Volatility 3 and cloudmem agree"; else echo "$guid: Volatility 3 and cloudmem differ"; status=1; fi
done
if [ $status -eq 0 ]; then echo PASS; else echo FAIL; exit 1; fi
