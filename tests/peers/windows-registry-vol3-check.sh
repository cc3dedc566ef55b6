#!/usr/bin/env bash
# Independent reader check for windows.registry.hivelist, windows.registry.printkey and windows.hashdump: the
# "registry" scenario (hives written by hivexregedit, laid out by the image builder as the kernel holds them: _CMHIVE
# list, storage maps, bins) for the real Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs; Volatility 3 (its
# own hive list walk, cell map translation, regf parsing and SAM decryption) must report the same rows as cloudmem:
#   hivelist  offset (Volatility prints 48 bits), FileFullPath, in list order
#   printkey  for several keys (incl. the volatile CurrentControlSet link): hive offset, key path, subkey/value name, type, last write, and data of string and
#             DWORD values (Volatility quotes strings); Volatility's placeholder rows for hives without the key are skipped
#   hashdump  user, rid, LM and NT hash (Volatility's hashdump imports "Crypto": Debian ships pycryptodome as
#             "Cryptodome", so a Crypto -> Cryptodome link on PYTHONPATH stands in)
# Usage: tests/peers/windows-registry-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, hivexregedit, pycryptodome or
# the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! command -v hivexregedit >/dev/null; then echo "skipped: hivexregedit missing (apt-get install libwin-hivex-perl)"; exit 0; fi
if ! "$python" -c "import Cryptodome" 2>/dev/null; then echo "skipped: pycryptodome missing for $python (apt-get install python3-pycryptodome)"; exit 0; fi
mkdir -p "$work/shim" && ln -s "$("$python" -c 'import Cryptodome, os; print(os.path.dirname(Cryptodome.__file__))')" "$work/shim/Crypto"
export PYTHONPATH="$work/shim${PYTHONPATH:+:$PYTHONPATH}"
keys=('Microsoft\Windows\CurrentVersion\Run' 'ControlSet001\Services\EvilSvc' 'ControlSet001\Services' 'Select'
      'Software\Microsoft\Windows\CurrentVersion\Run' 'SAM\Domains\Account\Users' 'CurrentControlSet')
status=0
for image in $(registry_images); do
    name="$(basename "$image" .raw)"
    for plugin in registry.hivelist hashdump; do
        vol "$image" "windows.$plugin" "$work/vol-$plugin.json" || { echo "$name: Volatility 3 windows.$plugin failed: $(tail -1 "$work/vol-$plugin.err")"; status=1; }
        ours "$image" "windows.$plugin" "$work/ours-$plugin.json"
    done
    for i in "${!keys[@]}"; do
        "$python" "$vol3/vol.py" -q --offline --cache-path "$work/cache" -s "$symbols" -r json -f "$image" windows.registry.printkey \
            --key "${keys[$i]}" >"$work/vol-printkey-$i.json" 2>"$work/vol-printkey-$i.err" \
            || { echo "$name: Volatility 3 printkey ${keys[$i]} failed: $(tail -1 "$work/vol-printkey-$i.err")"; status=1; }
        "$root/cloudmem" windows.registry.printkey "$image" --symbols "$symbols" --key "${keys[$i]}" --output json >"$work/ours-printkey-$i.json"
    done
    if "$python" - "$work" "$name" "${#keys[@]}" <<'PY'
import json, sys, os
work, name, nkeys = sys.argv[1], sys.argv[2], int(sys.argv[3])
M48 = (1 << 48) - 1
def load(kind, plugin):
    data = json.load(open(os.path.join(work, f"{kind}-{plugin}.json")))
    return data if kind == "vol" else data["rows"]
h = lambda v: (int(v, 16) if isinstance(v, str) else v) & M48
ok = True
def check(what, a, b):
    global ok
    same = a == b
    print(f"  {name} {what}: {len(a)} Volatility rows, {len(b)} cloudmem rows: {'same' if same else 'DIFFERENT'}")
    if not same:
        ok = False
        for row in a: print(f"    vol  {row}")
        for row in b: print(f"    ours {row}")
check("hivelist", [(h(r["Offset"]), r["FileFullPath"]) for r in load("vol", "registry.hivelist")],
      [(h(r["offset"]), r["fileFullPath"]) for r in load("ours", "registry.hivelist")])
check("hashdump", [(r["User"], r["rid"], r["lmhash"], r["nthash"]) for r in load("vol", "hashdump")],
      [(r["user"], r["rid"], r["lmHash"], r["ntHash"]) for r in load("ours", "hashdump")])
def data(t, d):
    if t in ("REG_SZ", "REG_EXPAND_SZ"): return d.strip('"') if isinstance(d, str) else d
    if t == "REG_DWORD": return str(d).strip('"')
    return None
def when(t): return None if t is None else t.replace("+00:00", "").replace("Z", "").split(".")[0]
for i in range(nkeys):
    vol = [(h(r["Hive Offset"]), r["Key"], r["Name"], r["Type"], when(r["Last Write Time"]), data(r["Type"], r["Data"]))
           for r in load("vol", f"printkey-{i}") if r["Name"] is not None]
    ours = [(h(r["hiveOffset"]), r["key"], r["name"], r["type"], when(r["lastWriteTime"]), data(r["type"], r["data"]))
            for r in load("ours", f"printkey-{i}")]
    key = vol[0][1] if vol else f"key {i}"
    check(f"printkey {key}", sorted(vol, key=str), sorted(ours, key=str))
sys.exit(0 if ok else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
