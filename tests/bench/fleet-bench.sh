#!/usr/bin/env bash
# Fleet throughput: `cloudmem fleet analyze` on the 12 captures of tests/CloudMem.Tests/Fleet (the Linux basic fixture in
# five formats, the rootkit variant in three, Windows builder images of the attack and clean scenarios on the Windows 10,
# 7 and 11 kernels), with 1, 2 and 3 worker processes in turn, each run into a fresh case on its own task hub of one
# azurite. Prints captures per minute per worker count and the machine's load average before each run.
# usage: tests/bench/fleet-bench.sh [--workers "1 2 3"] [--keep DIR]
# Needs: the basic and rootkit fixtures (tests/fixtures/make-fixture.sh), azurite (tests/emulators/setup.sh), the
# Windows kernel ISFs of ../shared/symbols (SYMBOLS=DIR elsewhere).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
counts="1 2 3"; keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --workers) counts="$2"; shift 2;;
        --keep) keep="$2"; shift 2;;
        *) echo "usage: $0 [--workers \"1 2 3\"] [--keep DIR]" >&2; exit 2;;
    esac
done
symbols="${SYMBOLS:-}"
if [ -z "$symbols" ]; then
    for candidate in "$root/../shared/symbols" "$root/../../shared/symbols" /work/shared/symbols; do
        if [ -d "$candidate/windows/ntkrnlmp.pdb" ]; then symbols="$(cd "$candidate" && pwd)"; break; fi
    done
fi
[ -n "$symbols" ] || { echo "skipped: no Windows symbols (set SYMBOLS)"; exit 0; }
for variant in basic rootkit; do
    [ -f "$root/.fixtures/$variant/memory.raw" ] || "$root/tests/fixtures/make-fixture.sh" --variant "$variant" >&2
done
azurite="${CLOUDMEM_AZURITE:-${CLOUDMEM_EMULATORS:-$HOME/.cache/cloudmem/emulators}/azurite/node_modules/.bin/azurite}"
[ -x "$azurite" ] || "$root/tests/emulators/setup.sh" >&2

work="${keep:-$(mktemp -d "${TMPDIR:-/tmp}/fleet-bench.XXXXXX")}"
mkdir -p "$work/captures"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
caps="$work/captures"
ln -sf "$root/.fixtures/basic/memory.raw" "$caps/web01.raw"
ln -sf "$root/.fixtures/basic/memory.lime" "$caps/web02.lime"
ln -sf "$root/.fixtures/basic/memory.kdump-zlib" "$caps/web03.kdump"
ln -sf "$root/.fixtures/basic/memory.avml" "$caps/web04.avml"
ln -sf "$root/.fixtures/basic/memory.kdump-zstd.flat" "$caps/web05.kdump-flat"
ln -sf "$root/.fixtures/rootkit/memory.raw" "$caps/db01.raw"
ln -sf "$root/.fixtures/rootkit/memory.lime" "$caps/db02.lime"
ln -sf "$root/.fixtures/rootkit/memory.kdump-lzo" "$caps/db03.kdump"
dotnet build "$root/tests/CloudMem.ImageBuilder" -nologo -v q >/dev/null
builder="$root/tests/CloudMem.ImageBuilder/bin/Debug/net10.0/cloudmem-imagebuilder.dll"
scenarios="$root/tests/CloudMem.ImageBuilder/scenarios"
build() { # NAME SCENARIO GUID
    [ -f "$caps/$1" ] || dotnet "$builder" --isf "$symbols/windows/ntkrnlmp.pdb/$3-1.json.xz" --out "$caps/$1" --scenario "$scenarios/$2.json" --size 64m >/dev/null
}
build dc01-win10.raw attack 606FF669409B00F7FC8C61A9C1670129
build dc02-win7.raw attack 339E74133576439CBCDF7E0229DA3773
build ws01-win10.raw clean 606FF669409B00F7FC8C61A9C1670129
build ws02-win11.raw clean 0CE4A95C0CD782A7596B034D8648E585

"$root/cloudmem" --version >/dev/null   # builds the Release CLI once, outside the timings
cloudmem=(dotnet "$root/artifacts/cli/cloudmem.dll")   # then run it directly: no rebuild check inside a timing
echo "fleet-bench: $(ls "$caps" | grep -vc '\.json$') captures, $(nproc) cores"
for n in $counts; do
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    start=$(date +%s.%N)
    "${cloudmem[@]}" fleet analyze "$caps" --out "$work/case-$n" --workers "$n" --symbols "$symbols" --task-hub "bench$n$$" > "$work/run-$n.log" 2>&1 || { cat "$work/run-$n.log"; exit 1; }
    end=$(date +%s.%N)
    done_count=$(grep -c '"status": "done"' "$work/case-$n/fleet.json")
    awk -v n="$n" -v s="$start" -v e="$end" -v d="$done_count" -v l="$load" \
        'BEGIN { t = e - s; printf "fleet-bench: %d worker(s): %d captures in %.1f s = %.2f captures/min (load average before: %s)\n", n, d, t, d * 60 / t, l }'
done
