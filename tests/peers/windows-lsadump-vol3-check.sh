#!/usr/bin/env bash
# Independent reader check for windows.lsadump and windows.cachedump: the "registry" scenario (its SECURITY hive with
# LSA secrets and cached domain logons encrypted by the image builder, laid out as the kernel holds it) for the real
# Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs; Volatility 3 (its own hive walk, boot key, LSA key and
# secret decryption) must report the same as cloudmem:
#   lsadump    per secret, the current value (Volatility prints the decrypted LSA_SECRET_BLOB: its first u32 is the
#              length, the secret starts 16 bytes in and the tail is block padding; cloudmem --reveal gives the secret)
#   cachedump  user, NetBIOS domain, DNS domain and DCC2 hash per cached logon
# Usage: tests/peers/windows-lsadump-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, hivexregedit, pycryptodome or
# the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! command -v hivexregedit >/dev/null; then echo "skipped: hivexregedit missing (apt-get install libwin-hivex-perl)"; exit 0; fi
if ! "$python" -c "import Cryptodome" 2>/dev/null; then echo "skipped: pycryptodome missing for $python (apt-get install python3-pycryptodome)"; exit 0; fi
mkdir -p "$work/shim" && ln -s "$("$python" -c 'import Cryptodome, os; print(os.path.dirname(Cryptodome.__file__))')" "$work/shim/Crypto"
export PYTHONPATH="$work/shim${PYTHONPATH:+:$PYTHONPATH}"
status=0
for image in $(registry_images); do
    name="$(basename "$image" .raw)"
    for plugin in lsadump cachedump; do
        vol "$image" "windows.$plugin" "$work/vol-$plugin.json" || { echo "$name: Volatility 3 windows.$plugin failed: $(tail -1 "$work/vol-$plugin.err")"; status=1; }
    done
    "$root/cloudmem" windows.lsadump "$image" --symbols "$symbols" --reveal --output json >"$work/ours-lsadump.json"
    ours "$image" windows.cachedump "$work/ours-cachedump.json"
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
work, name = sys.argv[1], sys.argv[2]
load = lambda kind, plugin: json.load(open(os.path.join(work, f"{kind}-{plugin}.json")))
ok = True
def check(what, a, b):
    global ok
    same = a == b
    print(f"  {name} {what}: {len(a)} Volatility rows, {len(b)} cloudmem rows: {'same' if same else 'DIFFERENT'}")
    if not same:
        ok = False
        for row in a: print(f"    vol  {row}")
        for row in b: print(f"    ours {row}")
def secret(hexed):
    blob = bytes.fromhex(hexed.replace(" ", ""))
    length = int.from_bytes(blob[:4], "little")
    return blob[16:16 + length].hex() if 16 + length <= len(blob) else None
check("lsadump", sorted((r["Key"], secret(r["Hex"])) for r in load("vol", "lsadump")),
      sorted((r["name"], r["currentHex"]) for r in load("ours", "lsadump")["rows"]))
check("cachedump", [(r["Username"], r["Domain"], r["Domain name"], r["Hash"].replace(" ", "")) for r in load("vol", "cachedump")],
      [(r["user"], r["domain"], r["dnsDomain"], r["hash"]) for r in load("ours", "cachedump")["rows"]])
sys.exit(0 if ok else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
