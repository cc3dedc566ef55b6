#!/usr/bin/env bash
# CloudMem next to Volatility 3 on the same images: every plugin both tools have, whole-command wall time (median of
# --runs runs after one warm-up, with hyperfine when installed) and peak RSS (one extra run under /usr/bin/time -v), both
# tools warm (CloudMem's profile cache and Volatility's symbol cache filled by the warm-up run; the images in the OS page
# cache). Writes a Markdown table (stdout and --out FILE) for docs/BENCHMARKS.md.
#
# Usage: tests/bench/vol-compare.sh [--linux IMAGE] [--windows IMAGE] [--runs 5] [--vol-runs 5] [--out FILE]
#        [--linux-plugins "linux.pslist ..."] [--windows-plugins "windows.pslist ..."] [--build-images] [--reuse-vol]
#   CloudMem is timed as installed: the published binary (artifacts/cli/cloudmem, built by ./cloudmem: self-contained,
#   composite ReadyToRun), not the ./cloudmem wrapper, whose per-call check for changed sources is not part of the tool.
#   Each image is dropped from the OS page cache and read back once before its plugins are timed (see compare()).
#   --reuse-vol     take Volatility 3's figures for an image+plugin from an earlier run of this script on this machine
#                   ($WORK/vol-IMAGE-PLUGIN.*) instead of measuring again; CloudMem is always measured
#   --build-images  build the benchmark images first (cached): the 2 GiB Linux fixture
#                   (tests/fixtures/make-fixture.sh --variant dense) and a 4 GiB dense Windows 10 image with 500
#                   processes from the image builder (--size 2047m --extra-processes 491 --dense yes --pad-to 4g)
#   Without images the defaults are .fixtures/dense/memory.raw (else .fixtures/basic/memory.raw) and
#   $WORK/win4g-dense.raw when present.
#   A plugin list entry OURS=VOL names Volatility's plugin when it differs. linux.secrets=yarascan.YaraScan: Volatility 3
#   has no secrets scan; its YARA scan runs tests/bench/secrets.yar (the same patterns) over the kernel's view of memory,
#   which holds every page. (Its linux.vmayarascan, the per-process scan, reads nothing in 2.11.0: it takes each VMA's
#   size for its end, so every read has a negative length.)
#   Volatility 3 2.11 has no interface plugin (linux.ip.addr/link, ifconfig): those are not in the default list.
# Env:   VOL3_DIR (default /tmp/vol3), PYTHON (/usr/bin/python3), SYMBOLS (../shared/symbols), PEERS (../shared/peers),
#        WORK (default ~/.cache/cloudmem/bench: images and caches), CLOUDMEM_CACHE_DIR (default WORK/profiles)
# The Windows list includes the scans both tools have (netscan, filescan, svcscan, driverirp); on the attack image
# netscan, svcscan and driverirp find nothing to list (no tcpip/service/driver objects laid out) but still time the scan.
# Time: with the default plugin lists and 5 runs each, about 3 min for CloudMem and 25-40 min for Volatility 3 on a
# quiet 2-core machine (Volatility spends 10-25 s per Linux command); --vol-runs 1 gives a quick look.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/tmp/vol3}"
python="${PYTHON:-/usr/bin/python3}"
work="${WORK:-${HOME:-/root}/.cache/cloudmem/bench}"
linux="" ; windows=""; runs=5; volruns=5; out=""; build=0; reuse=0
linux_plugins="linux.pslist linux.psaux linux.pstree linux.psscan linux.lsmod linux.sockstat linux.malfind linux.bash linux.envars linux.check_syscall linux.check_modules linux.hidden_modules linux.lsof linux.mountinfo linux.elfs linux.ebpf linux.netfilter linux.check_idt linux.tty_check linux.keyboard_notifiers linux.secrets=yarascan.YaraScan"
windows_plugins="windows.pslist windows.pstree windows.psscan windows.dlllist windows.cmdline windows.envars windows.modules windows.modscan windows.handles windows.threads windows.getsids windows.vadinfo windows.malfind windows.info windows.netscan windows.filescan windows.svcscan windows.driverirp"
while [ $# -gt 0 ]; do
    case "$1" in
        --linux) linux="$2"; shift 2;;
        --windows) windows="$2"; shift 2;;
        --runs) runs="$2"; shift 2;;
        --vol-runs) volruns="$2"; shift 2;;
        --out) out="$2"; shift 2;;
        --linux-plugins) linux_plugins="$2"; shift 2;;
        --windows-plugins) windows_plugins="$2"; shift 2;;
        --build-images) build=1; shift;;
        --reuse-vol) reuse=1; shift;;
        *) sed -n '2,23p' "$0" >&2; exit 2;;
    esac
done
mkdir -p "$work/vol3-cache" "$work/vol3-symbols/linux"
export CLOUDMEM_CACHE_DIR="${CLOUDMEM_CACHE_DIR:-$work/profiles}"
shared=""
for candidate in "$root/../shared" "$root/../../shared" /work/shared; do
    if [ -d "$candidate/symbols/windows" ]; then shared="$(cd "$candidate" && pwd)"; break; fi
done
symbols="${SYMBOLS:-$shared/symbols}"
peers="${PEERS:-$shared/peers}"
win_isf="$symbols/windows/ntkrnlmp.pdb/606FF669409B00F7FC8C61A9C1670129-1.json.xz"
# Volatility's -s directory for Linux: DIR/linux/*.json.xz, linked from the shared peers ISFs (one per Debian kernel).
for isf in "$peers"/linux-*.json.xz; do [ -e "$isf" ] && ln -sf "$isf" "$work/vol3-symbols/linux/"; done

if [ $build -eq 1 ]; then
    "$root/tests/fixtures/make-fixture.sh" --variant dense --timeout 5400 >&2   # TCG: filling 1.7 GiB takes a while
    # rebuilt when made by a builder without the low stub (its manifest has no lowStub): discovery would fall back to scans
    if [ ! -f "$work/win4g-dense.raw" ] || ! grep -q '"lowStub"' "$work/win4g-dense.manifest.json" 2>/dev/null; then
        dotnet build "$root/tests/CloudMem.ImageBuilder" -nologo -v q >/dev/null
        dotnet "$root/tests/CloudMem.ImageBuilder/bin/Debug/net10.0/cloudmem-imagebuilder.dll" --isf "$win_isf" \
            --out "$work/win4g-dense.raw.tmp" --manifest "$work/win4g-dense.manifest.json" --scenario attack --size 2047m \
            --extra-processes 491 --dense yes --pad-to 4g >&2
        mv "$work/win4g-dense.raw.tmp" "$work/win4g-dense.raw"
    fi
fi
if [ -z "$linux" ]; then
    for candidate in "$root/.fixtures/dense/memory.raw" "$root/.fixtures/basic/memory.raw"; do
        if [ -f "$candidate" ]; then linux="$candidate"; break; fi
    done
fi
[ -n "$windows" ] || { [ ! -f "$work/win4g-dense.raw" ] || windows="$work/win4g-dense.raw"; }
havevol=1
[ -f "$vol3/vol.py" ] || { echo "note: no Volatility 3 at $vol3 (set VOL3_DIR): CloudMem only" >&2; havevol=0; }

"$root/cloudmem" cache list >/dev/null   # builds the CLI (ReadyToRun) if needed
cli="$root/artifacts/cli/cloudmem"
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
wall() {   # name runs command... -> median seconds
    local name="$1" n="$2"; shift 2
    if command -v hyperfine >/dev/null 2>&1; then
        hyperfine -N --style none --warmup 1 --runs "$n" --export-json "$work/$name.json" "$*" >/dev/null 2>&1 || { echo "-"; return; }
        "$python" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f" % r["median"])' "$work/$name.json"
    else
        "$@" >/dev/null 2>&1 || true
        for _ in $(seq "$n"); do
            /usr/bin/time -f %e -o "$work/t" "$@" >/dev/null 2>&1 || true; cat "$work/t"
        done | median
    fi
}
rss() {   # command... -> peak RSS MiB of one run
    /usr/bin/time -v -o "$work/rss" "$@" >/dev/null 2>&1 || true
    awk '/Maximum resident set size/ {printf "%.0f", $6 / 1024}' "$work/rss"
}
rows_ours() { "$@" -o json 2>/dev/null | "$python" -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))' 2>/dev/null || echo "?"; }
rows_vol() { "$@" 2>/dev/null | "$python" -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?"; }

table="$work/vol-compare.md"
{
    echo "| image | plugin | CloudMem s (median of $runs) | Volatility 3 s (median of $volruns) | ratio | CloudMem peak RSS MiB | Volatility 3 peak RSS MiB | rows (ours / Vol) |"
    echo "|---|---|---|---|---|---|---|---|"
} > "$table"
compare() {   # os image plugins...
    local os="$1" image="$2"; shift 2
    local size; size=$(( $(stat -c %s "$image") >> 20 ))
    local ours_symbols=() vol_symbols=()
    if [ "$os" = windows ]; then ours_symbols=(--symbols "$symbols"); vol_symbols=(-s "$symbols"); else vol_symbols=(-s "$work/vol3-symbols"); fi
    # Into the OS page cache as a read from disk puts it: the image's cached pages are dropped first (dd with nocache
    # and no blocks), then read once. A file the image builder has just written sits in the cache in 4 KiB pages,
    # while one read from disk sits in large folios (2 MiB on ext4 with kernel 6.18), which a scan maps 512 times
    # fewer times: the same image otherwise times 0.1-0.3 s apart for scans depending on how it came into the cache.
    dd if="$image" iflag=nocache count=0 status=none 2>/dev/null || true
    cat "$image" > /dev/null
    for entry in "$@"; do
        local plugin="${entry%%=*}" volplugin="${entry#*=}" volargs=()
        case "$volplugin" in *yarascan*|*YaraScan*) volargs=(--yara-file "$root/tests/bench/secrets.yar");; esac
        local ours=("$cli" "$plugin" "$image" "${ours_symbols[@]}")
        local vol=("$python" "$vol3/vol.py" -q --offline --cache-path "$work/vol3-cache" "${vol_symbols[@]}" -r json -f "$image" "$volplugin" "${volargs[@]}")
        local o_rows v_rows="-" o_t v_t="-" o_rss v_rss="-" ratio="-"
        o_rows=$(rows_ours "${ours[@]}")
        o_t=$(wall "ours-$plugin" "$runs" "${ours[@]}" -o json)
        o_rss=$(rss "${ours[@]}" -o json)
        local saved="$work/vol-$(basename "$image")-$plugin.txt"
        if [ $reuse -eq 1 ] && [ -s "$saved" ]; then
            read -r v_t v_rss v_rows < "$saved"
        elif [ $havevol -eq 1 ]; then
            v_rows=$(rows_vol "${vol[@]}")
            v_t=$(wall "vol-$plugin" "$volruns" "${vol[@]}")
            v_rss=$(rss "${vol[@]}")
            echo "$v_t $v_rss $v_rows" > "$saved"
        fi
        if [ "$v_t" != "-" ]; then
            ratio=$("$python" -c 'import sys; o, v = sys.argv[1], sys.argv[2]; print("%.1fx" % (float(v) / float(o)) if o not in "-?" and v not in "-?" else "-")' "$o_t" "$v_t")
        fi
        [ "$volplugin" = "$plugin" ] || plugin="$plugin (Vol: $volplugin)"
        echo "| $(basename "$image") ($size MiB) | $plugin | $o_t | $v_t | $ratio | $o_rss | $v_rss | $o_rows / $v_rows |" | tee -a "$table" >&2
    done
}
[ -z "$linux" ] || compare linux "$linux" $linux_plugins
[ -z "$windows" ] || compare windows "$windows" $windows_plugins
echo
cat "$table"
[ -z "$out" ] || cp "$table" "$out"
