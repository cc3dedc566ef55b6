#!/usr/bin/env bash
# Independent reader check for windows.svcscan: the "registry" scenario's service database in services.exe (tcpip,
# EvilDll in svchost 844, a stopped Fax, EvilSvc from C:\Windows\Temp) for the real Windows 10 19041, Windows 7 SP1 and
# Windows 11 22000 ISFs. Volatility 3 finds the same "serH" header and walks the same records; compared per record:
# offset (48 bits), order, pid, start type, state, type, name, display name and binary. Where they differ by design:
# Volatility prints the binary only for running services (cloudmem prints any image record's path; the scenario's only
# stopped service has none, so the rows agree), and Volatility adds the registry's ImagePath and ServiceDll columns,
# which are left out here (windows.registry.persistence reads those).
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
vol = sorted((h(r["Offset"]), r["Order"], r["PID"] if isinstance(r["PID"], int) else None, r["Start"], r["State"], r["Type"], r["Name"],
              r["Display"], r["Binary"] if isinstance(r["Binary"], str) and r["Binary"] else None)
             for r in json.load(open(os.path.join(work, "vol-svcscan.json"))))
ours = sorted((h(r["offset"]), r["order"], r["pid"], start[str(r["start"]).lower()], state[str(r["state"]).lower()], our_type(r["type"]), r["name"], r["displayName"],
               r["binary"] if str(r["state"]).lower() == "running" else None)
              for r in json.load(open(os.path.join(work, "ours-svcscan.json")))["rows"])
same = vol == ours and len(vol) > 0
print(f"  {name} svcscan: {len(vol)} Volatility rows, {len(ours)} cloudmem rows: {'same' if same else 'DIFFERENT'}")
if not same:
    for row in vol: print(f"    vol  {row}")
    for row in ours: print(f"    ours {row}")
sys.exit(0 if same else 1)
PY
    then :; else status=1; fi
done
if [ "$status" = 0 ]; then echo PASS; else echo FAIL; fi
exit "$status"
