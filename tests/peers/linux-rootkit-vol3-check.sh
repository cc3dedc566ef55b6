#!/usr/bin/env bash
# Independent check of the kernel-integrity and eBPF plugins on the rootkit fixture, next to Volatility 3 with the kernel's
# ISF: linux.ebpf (programs), linux.check_syscall, linux.check_idt and linux.tty_check. The rows must agree where both look:
#   - ebpf: the same programs (name, tag, type). Volatility 3 lists programs only; our maps and links (linux.ebpf.maps,
#     linux.ebpf.links) have no peer and are checked against the guest's fdinfo in the unit tests.
#   - check_syscall: the same handler address in every slot both list, and the same slots pointing outside the kernel
#     (Volatility names them UNKNOWN: its module list no longer holds the hidden rootkit module). Volatility prints
#     addresses as their low 48 bits; those are compared.
#   - check_idt: Volatility checks vectors 0-19 and 0x80 only; their handlers must equal ours. The hooked gate 0xee is
#     outside what it checks: only we report it (owner: the hidden module).
#   - tty_check: Volatility shows each terminal's receive_buf; it must equal our receive_buf row for that terminal, and
#     both must call ttyS0's hooked handler unknown / hidden-module.
#
# Usage: tests/peers/linux-rootkit-vol3-check.sh [VARIANT]    (default rootkit; uses .fixtures/VARIANT/memory.raw)
# Env:   VOL3_DIR (default /work/vol3, else /tmp/vol3), PYTHON (default /usr/bin/python3),
#        ISF (default: /work/shared/peers/linux-<the fixture's kernel release>.json.xz)
# Volatility takes a few minutes for the four plugins. Prints PASS or FAIL (exit 1), or "skipped: ..." (exit 0).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vol3="${VOL3_DIR:-/work/vol3}"
[ -f "$vol3/vol.py" ] || [ -n "${VOL3_DIR:-}" ] || vol3=/tmp/vol3
python="${PYTHON:-/usr/bin/python3}"
variant="${1:-rootkit}"
raw="$root/.fixtures/$variant/memory.raw"
truth="$root/.fixtures/$variant/truth.json"
if [ ! -f "$vol3/vol.py" ]; then echo "skipped: Volatility 3 not found at $vol3 (set VOL3_DIR)"; exit 0; fi
if [ ! -f "$raw" ] || [ ! -f "$truth" ]; then echo "skipped: fixture $variant is missing (tests/fixtures/make-fixture.sh --variant $variant builds it)"; exit 0; fi
isf="${ISF:-/work/shared/peers/linux-$("$python" -c "import json,sys;print(json.load(open(sys.argv[1]))['kernel_release'])" "$root/.fixtures/$variant/manifest.json").json.xz}"
if [ ! -f "$isf" ]; then echo "skipped: ISF $isf is missing (set ISF)"; exit 0; fi

work="$(mktemp -d "${TMPDIR:-/tmp}/rootkit-vol3.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cache="${VOL3_CACHE:-$work/cache}"   # VOL3_CACHE: reuse a warm Volatility cache
mkdir -p "$cache" "$work/symbols/linux"
ln -s "$isf" "$work/symbols/linux/"
vol() { (cd "$vol3" && "$python" vol.py -q --offline --cache-path "$cache" -s "$work/symbols" -r json -f "$raw" "$1") >"$work/vol.$2.json" 2>"$work/vol.err" \
    || { echo "FAIL: volatility $1 failed:" >&2; cat "$work/vol.err" >&2; exit 1; }; }
for pair in linux.ebpf.EBPF:ebpf linux.check_syscall.Check_syscall:check_syscall linux.check_idt.Check_idt:check_idt linux.tty_check.tty_check:tty_check; do
    vol "${pair%%:*}" "${pair#*:}"
    "$root/cloudmem" "linux.${pair#*:}" "$raw" --output json >"$work/ours.${pair#*:}.json"
done

"$python" - "$work" "$truth" <<'PY'
import json, sys
w, truth = sys.argv[1], json.load(open(sys.argv[2]))
vol = lambda n: json.load(open(f"{w}/vol.{n}.json"))
ours = lambda n: json.load(open(f"{w}/ours.{n}.json"))["rows"]
num = lambda v: v if isinstance(v, int) else int(str(v), 16 if str(v).lower().startswith("0x") else 10)
failures = []
M = (1 << 48) - 1
def check(name, ok, detail):
    print(("ok   " if ok else "FAIL ") + name + ": " + detail)
    if not ok:
        failures.append(name)

# eBPF programs
vp = sorted((r["Name"], r["Tag"], r["Type"].removeprefix("BPF_PROG_TYPE_")) for r in vol("ebpf"))
op = sorted((r["name"], r["tag"], r["type"]) for r in ours("ebpf"))
check("ebpf programs", vp == op and len(op) > 0, f"volatility {vp}, cloudmem {op}")

# sys_call_table: every slot both list has the same handler; the same slots point outside kernel and module text.
# Volatility prints addresses as their low 48 bits: compare those. Its "Table Address" is the link-time address (no
# KASLR slide), so slots are keyed by table name: its 64bit is sys_call_table, its 32bit ia32_sys_call_table.
tables = {"64bit": "sys_call_table", "32bit": "ia32_sys_call_table"}
vs = {(tables.get(r["Table Name"], r["Table Name"]), num(r["Index"])): (num(r["Handler Address"]) & M, r["Handler Symbol"]) for r in vol("check_syscall")}
os_ = {(r["table"], r["index"]): r for r in ours("check_syscall")}
both = sorted(set(vs) & set(os_))
differ = [k for k in both if vs[k][0] != num(os_[k]["handler"]) & M]
check("check_syscall handlers", len(both) > 300 and not differ, f"{len(both)} slots in both, {len(differ)} differ {differ[:5]}")
vol_unknown = sorted(k for k in both if vs[k][1] == "UNKNOWN")
our_hooked = sorted(k for k in both if os_[k]["hooked"])
want = sorted(("sys_call_table", h["nr"]) for h in truth["rootkit"]["hooked_syscalls"])
check("check_syscall hooked slots", vol_unknown == our_hooked == want, f"volatility UNKNOWN {vol_unknown}, cloudmem hooked {our_hooked}, truth {want}")

# IDT: Volatility checks 0-19 and 0x80
vi = {num(r["Index"]): num(r["Address"]) & M for r in vol("check_idt")}
oi = {r["vector"]: r for r in ours("check_idt")}
differ = [v for v in vi if v not in oi or num(oi[v]["handler"]) & M != vi[v]]
check("check_idt vectors 0-19, 0x80", len(vi) >= 20 and not differ, f"{len(vi)} vectors, differing {differ}")
gate = truth["rootkit"]["hooked_idt"]
flagged = [(r["vector"], num(r["handler"]), r["owner"].lower()) for r in ours("check_idt") if r["finding"]]
check("check_idt hooked gate (cloudmem only)", flagged == [(gate["vector"], int(gate["hook"], 16), "hiddenmodule")] and gate["vector"] not in vi,
      f"cloudmem flags {flagged}; volatility does not look at vector {gate['vector']}")

# tty: receive_buf per terminal
vt = {r["Name"]: (num(r["Address"]) & M, r["Module"], r["Symbol"]) for r in vol("tty_check")}
ot = {r["tty"]: r for r in ours("tty_check") if r["function"] == "receive_buf"}
differ = [t for t in vt if t not in ot or num(ot[t]["handler"]) & M != vt[t][0]]
check("tty_check receive_buf", vt and not differ, f"{sorted(vt)} in both, differing {differ}")
hooked = {h["tty"]: int(h["hook"], 16) & M for h in truth["rootkit"]["hooked_tty"] if h["function"] == "receive_buf"}
check("tty_check hooked terminal", all(vt.get(t, (0, "", ""))[0] == a and ot[t]["owner"].lower() == "hiddenmodule" for t, a in hooked.items()) and hooked,
      f"truth {hooked}; volatility {[(t, hex(v[0]), v[1], v[2]) for t, v in vt.items() if t in hooked]}; cloudmem {[(t, ot[t]['owner'], ot[t]['module']) for t in hooked]}")
print("PASS" if not failures else "FAIL"); sys.exit(1 if failures else 0)
PY
