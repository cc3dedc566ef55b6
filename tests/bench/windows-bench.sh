#!/usr/bin/env bash
# Windows plugin benchmark: builds a 1 GiB synthetic Windows 10 19041 image with the image builder's command line (the
# attack scenario, or --scenario network, plus N extra svchost processes) and times cloudmem's plugins (default
# windows.pslist and windows.psscan; --plugins "windows.netscan windows.netstat" with the network scenario) next to
# Volatility 3's same plugins (offline, -s SYMBOLS) on the same image, after checking both give the same row counts. Uses hyperfine when
# installed (Debian package `hyperfine`), else repeated runs with the median. Prints a Markdown table with medians and
# the Volatility/cloudmem ratio (paste it into docs/BENCHMARKS.md).
#
# Usage: tests/bench/windows-bench.sh [--size 1g] [--extra-processes 300] [--runs 10] [--vol-runs 3] [--keep DIR]
#        [--scenario attack|network] [--plugins "windows.pslist windows.psscan"]
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols beside
#        the repository), GUID (default the Windows 10 19041 kernel)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
python="${PYTHON:-/usr/bin/python3}"
guid="${GUID:-606FF669409B00F7FC8C61A9C1670129}"
size=1g; extra=300; runs=10; volruns=3; keep=""; scenario=attack; plugins="windows.pslist windows.psscan"
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size="$2"; shift 2;;
        --extra-processes) extra="$2"; shift 2;;
        --runs) runs="$2"; shift 2;;
        --vol-runs) volruns="$2"; shift 2;;
        --keep) keep="$2"; shift 2;;
        --scenario) scenario="$2"; shift 2;;
        --plugins) plugins="$2"; shift 2;;
        *) echo "usage: $0 [--size 1g] [--extra-processes 300] [--runs 10] [--vol-runs 3] [--keep DIR] [--scenario attack|network] [--plugins \"P ...\"]" >&2; exit 2;;
    esac
done
symbols="${SYMBOLS:-}"
if [ -z "$symbols" ]; then
    for candidate in "$root/../shared/symbols" "$root/../../shared/symbols"; do
        if [ -d "$candidate/windows/ntkrnlmp.pdb" ]; then symbols="$(cd "$candidate" && pwd)"; break; fi
    done
fi
isf="$symbols/windows/ntkrnlmp.pdb/$guid-1.json.xz"
if [ ! -f "$isf" ]; then echo "skipped: no ISF $isf (set SYMBOLS)"; exit 0; fi
havevol=1
if [ ! -f "$vol3/vol.py" ]; then echo "note: Volatility 3 not found at $vol3 (set VOL3_DIR): timing cloudmem only"; havevol=0; fi

work="${keep:-$(mktemp -d "${TMPDIR:-/tmp}/windows-bench.XXXXXX")}"
mkdir -p "$work/cache"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
image="$work/win10-$scenario-$size.raw"

dotnet build "$root/tests/CloudMem.ImageBuilder" -nologo -v q >/dev/null
if [ ! -f "$image" ]; then
    dotnet "$root/tests/CloudMem.ImageBuilder/bin/Debug/net10.0/cloudmem-imagebuilder.dll" --isf "$isf" --out "$image" \
        --scenario "$scenario" --size "$size" --extra-processes "$extra"
fi
"$root/cloudmem" windows.pslist "$image" --symbols "$symbols" >/dev/null      # builds the CLI if needed

vol="$python $vol3/vol.py -q --offline --cache-path $work/cache -s $symbols -r json -f $image"
ours() { echo "$root/cloudmem $1 $image --symbols $symbols --output json"; }

# Same rows first: the benchmark compares tools that found the same objects.
echo "image: $image ($(stat -c %s "$image") bytes)"
for plugin in $plugins; do
    count=$($(ours "$plugin") | "$python" -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')
    if [ $havevol -eq 1 ]; then
        vcount=$($vol "$plugin" 2>/dev/null | "$python" -c 'import json,sys; print(len(json.load(sys.stdin)))')
        echo "$plugin: cloudmem $count rows, Volatility 3 $vcount rows"
    else
        echo "$plugin: cloudmem $count rows"
    fi
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_it() {   # name runs command...
    local name="$1" n="$2"; shift 2
    if command -v hyperfine >/dev/null 2>&1; then
        hyperfine -N --style none --warmup 1 --runs "$n" --export-json "$work/$name.json" "$*" >/dev/null 2>&1 \
            || hyperfine --style none --warmup 1 --runs "$n" --export-json "$work/$name.json" "$* >/dev/null" >/dev/null
        "$python" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f %.3f %.3f" % (r["median"], min(r["times"]), max(r["times"])))' "$work/$name.json"
    else
        "$@" >/dev/null 2>&1
        for _ in $(seq "$n"); do
            local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc
        done | median | awk '{print $1, "-", "-"}'
    fi
}
echo
echo "| plugin | cloudmem median s (min-max, $runs runs) | Volatility 3 median s (min-max, $volruns runs) | ratio |"
echo "|---|---|---|---|"
for plugin in $plugins; do
    read -r op omin omax <<<"$(time_it "ours-$plugin" "$runs" $(ours "$plugin"))"
    if [ $havevol -eq 1 ]; then
        read -r vp vmin vmax <<<"$(time_it "vol-$plugin" "$volruns" $vol "$plugin")"
        echo "| $plugin | $op ($omin-$omax) | $vp ($vmin-$vmax) | $(echo "scale=1; $vp / $op" | bc)x |"
    else
        echo "| $plugin | $op ($omin-$omax) | - | - |"
    fi
done
