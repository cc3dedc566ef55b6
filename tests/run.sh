#!/usr/bin/env bash
# Runs the whole test suite: builds the real-memory fixture first (cached outside git; the first build installs
# Debian packages and takes a few minutes, later runs reuse it in well under a second), then the xunit tests.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tests/fixtures/make-fixture.sh --variant basic >&2
tests/fixtures/make-fixture.sh --variant nokaslr-novmci >&2
tests/fixtures/make-fixture.sh --variant pti >&2
# A loaded test rootkit (module built against the guest kernel's headers); about 1.5 min to build, cached after.
tests/fixtures/make-fixture.sh --variant rootkit >&2

# Registry hives for the Windows registry/hashdump tests are written by hivexregedit (libwin-hivex-perl); impacket's
# secretsdump (python3-impacket, Debian's python) is the independent reader hashdump is compared with.
if ! command -v hivexregedit >/dev/null || ! /usr/bin/python3 -c 'import impacket.examples.secretsdump' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends libwin-hivex-perl python3-impacket >&2
fi
# YARA: libyara9 is what linux.yarascan/*.yarascan.physical load (P/Invoke); the yara tool is the reference the tests
# compare the physical scan with.
if ! /sbin/ldconfig -p | grep -q 'libyara\.so\.9' || ! command -v yara >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends libyara9 yara >&2
fi
# Chromium: the report tests open report.html in Debian's headless chromium (driven by Microsoft.Playwright, whose
# driver comes with its NuGet package; no browser is downloaded). analyze: the sqlite3 tool answers the README's
# query on a case database; mactime (sleuthkit) reads timeline.body.
if ! command -v chromium >/dev/null || ! command -v sqlite3 >/dev/null || ! command -v mactime >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends chromium sqlite3 sleuthkit >&2
fi
# strace: the guest-script tests trace every file the Linux capture script creates or writes, to prove the capture
# never touches a disk-backed directory (only a RAM-backed one).
if ! command -v strace >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends strace >&2
fi
# Local emulators for the capture-connector tests (s3rver, azurite, vcsim), cached outside git.
tests/emulators/setup.sh >&2
# The fixture exists now: tests that need it must run, not skip.
export CLOUDMEM_REQUIRE_FIXTURES=1
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# Benchmarks (Category=Benchmark) are not tests: tests/bench/*.sh run them.
dotnet test Cloud.sln -c Debug --nologo --filter "Category!=Benchmark" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E '(Passed|Failed)!? +- +Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -n1)
if [ -n "$summary" ]; then
    failed=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")
    passed=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")
    skipped=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")
    echo "$passed passed, $failed failed, $skipped skipped"
fi
exit "$status"
