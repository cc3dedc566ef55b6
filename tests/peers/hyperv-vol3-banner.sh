#!/usr/bin/env bash
# Cross-check of the vmrs writer + Hyper-V reader against Volatility 3.
# Volatility 3 has no Hyper-V saved-state layer, so the independent reference is its banners.Banners on the raw
# fixture; the same memory converted to .vmrs and read back by `cloudmem info` must report the kernel banner at the
# same physical address. Skips (exit 0) when Volatility 3 or the fixture is absent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
raw="${CLOUDMEM_FIXTURES:-$here/.fixtures}/basic/memory.raw"
if [ ! -f "$vol3/vol.py" ]; then echo "skip: Volatility 3 not found at $vol3 (set VOL3_DIR)"; exit 0; fi
if [ ! -f "$raw" ]; then echo "skip: fixture $raw not built"; exit 0; fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$here/cloudmem" convert "$raw" --to vmrs --out "$work/memory.vmrs" >/dev/null
ours=$("$here/cloudmem" info --output json "$work/memory.vmrs" | /usr/bin/python3 -c 'import json,sys; print(int(json.load(sys.stdin)["kernelBanner"]["physicalAddress"],16))')
mkdir -p "$work/cache"
theirs=$(cd "$vol3" && /usr/bin/python3 vol.py -q --offline --cache-path "$work/cache" -r json -f "$raw" banners.Banners \
    | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(r["Offset"]) for r in json.load(sys.stdin) if "Linux version" in r["Banner"]))')
echo "volatility3 banners.Banners on memory.raw: $theirs"
echo "cloudmem info on memory.vmrs (converted): $ours"
for o in $theirs; do
    if [ "$o" = "$ours" ]; then echo "ok: same physical address"; exit 0; fi
done
echo "MISMATCH"; exit 1
