#!/usr/bin/env bash
# Independent reader check for windows.svcscan: the "registry" scenario's service database in services.exe (tcpip,
# EvilDll in svchost 844, a stopped Fax, EvilSvc from C:\Windows\Temp) for the real Windows 10 19041, Windows 7 SP1 and
# Windows 11 22000 ISFs. Volatility 3 finds the same "serH" header and walks the same records; compared per record:
# offset (48 bits), order, pid, start type, state, type, name, display name and binary. Where they differ by design:
# Volatility prints the binary only for running services (cloudmem prints any image record's path; the scenario's only
# stopped service has none, so the rows agree); Volatility adds the registry's ImagePath and ServiceDll columns, left
# out here (windows.registry.persistence reads those); and Volatility prints, for every record it reaches through a
# PrevEntry pointer, the address of that pointer field in the newer record rather than the record's own address (its
# traverse() keeps the pointer object; only the header's record gets its real address): cloudmem prints the record's
# address, and the check verifies that relation (Vol offset = newer record + PrevEntry offset, 0x10 on 10/11, 0 on 7).
# Usage: tests/peers/windows-svcscan-vol3-check.sh
# Env:   VOL3_DIR (default /work/vol3), PYTHON (default /usr/bin/python3), SYMBOLS (default ../shared/symbols)
# Prints PASS or FAIL (exit 1); prints "skipped: ..." and exits 0 when Volatility 3, hivexregedit or the symbols are absent.
source "$(dirname "${BASH_SOURCE[0]}")/windows-common.sh"
if ! command -v hivexregedit >/dev/null; then echo "skipped: hivexregedit missing (apt-get install libwin-hivex-perl)"; exit 0; fi
status=0
for image in $(registry_images); do
    name="$(basename "$image" .raw)"
    vol "$image" windows.svcscan "$work/vol-svcscan.json" || { echo "$name: Volatility 3 windows.svcscan failed: $(tail -1 "$work/vol-svcscan.err")"; status=1; }
    ours "$image" windows.svcscan "$work/ours-svcscan.json"
    if "$python" - "$work" "$name" <<'PY'
import json, sys, os
work, name = sys.argv[1], sys.argv[2]
M48 = (1 << 48) - 1
h = lambda a: (int(a, 16) if isinstance(a, str) else a) & M48
start = {"Boot": "SERVICE_BOOT_START", "System": "SERVICE_SYSTEM_START", "Automatic": "SERVICE_AUTO_START", "Manual": "SERVICE_DEMAND_START", "Disabled": "SERVICE_DISABLED"}
state = {"Stopped": "SERVICE_STOPPED", "StartPending": "SERVICE_START_PENDING", "StopPending": "SERVICE_STOP_PENDING", "Running": "SERVICE_RUNNING",
         "ContinuePending": "SERVICE_CONTINUE_PENDING", "PausePending": "SERVICE_PAUSE_PENDING", "Paused": "SERVICE_PAUSED"}
types = {"KernelDriver": "SERVICE_KERNEL_DRIVER", "FileSystemDriver": "SERVICE_FILE_SYSTEM_DRIVER", "Adapter": "SERVICE_ADAPTOR",
         "RecognizerDriver": "SERVICE_RECOGNIZER_DRIVER", "Win32OwnProcess": "SERVICE_WIN32_OWN_PROCESS",
         "Win32ShareProcess": "SERVICE_WIN32_SHARE_PROCESS", "InteractiveProcess": "SERVICE_INTERACTIVE_PROCESS"}
start = {k.lower(): v for k, v in start.items()}
state = {k.lower(): v for k, v in state.items()}
types = {k.lower(): v for k, v in types.items()}
def our_type(t):
    return "|".join(types[p.strip().lower()] for p in str(t).replace("|", ",").split(",") if p.strip().lower() in types)
vol_rows = json.load(open(os.path.join(work, "vol-svcscan.json")))
our_rows = json.load(open(os.path.join(work, "ours-svcscan.json")))["rows"]
vol = sorted((r["Order"], r["PID"] if isinstance(r["PID"], int) else None, r["Start"], r["State"], r["Type"], r["Name"],
              r["Display"], r["Binary"] if isinstance(r["Binary"], str) and r["Binary"] else None) for r in vol_rows)
ours = sorted((r["order"], r["pid"], start[str(r["start"]).lower()], state[str(r["state"]).lower()], our_type(r["type"]), r["name"], r["displayName"],
               r["binary"] if str(r["state"]).lower() == "running" else None) for r in our_rows)
# Offsets: the record the header points at is printed at its address by both; for every record reached through a
# PrevEntry pointer Volatility prints the address of that pointer field (in the newer record) instead of the record.
ours_at = {r["order"]: h(r["offset"]) for r in our_rows}
vol_at = {r["Order"]: h(r["Offset"]) for r in vol_rows}
newest = max(ours_at) if ours_at else None
prev_field = {vol_at[k] - ours_at[k + 1] for k in vol_at if k != newest and k + 1 in ours_at}
offsets_ok = newest is not None and vol_at.get(newest) == ours_at[newest] and len(prev_field) == 1 and next(iter(prev_field)) in (0, 8, 0x10)
same = vol == ours and len(vol) > 0 and offsets_ok
print(f"  {name} svcscan: {len(vol)} Volatility rows, {len(ours)} cloudmem rows: {'same' if same else 'DIFFERENT'} "
      f"(offsets: newest record equal, the others printed by Volatility at the newer record's PrevEntry field +{sorted(prev_field)}: {'as expected' if offsets_ok else 'NOT'})")
if not same:
    for row in vol: print(f"    vol  {row}")
    for row in ours: print(f"    ours {row}")
    print(f"    vol offsets {vol_at}\n    our offsets {ours_at}")
sys.exit(0 if same else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
