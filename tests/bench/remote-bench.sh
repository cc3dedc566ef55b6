#!/usr/bin/env bash
# Remote capture benchmark: linux.pslist on the basic fixture (LiME 256 MiB, kdump-snappy 44 MiB) read in place from
# s3rver and azurite (127.0.0.1) through the block cache, with the kernel's ISF and without symbol files (kernel found
# by scanning), against downloading the whole object first and analysing the local copy. Median of 3 cold runs each;
# prints a Markdown table (time, bytes fetched, requests). Needs: tests/emulators/setup.sh,
# tests/fixtures/make-fixture.sh --variant basic, ../shared/peers/linux-RELEASE.json.xz.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
tests/emulators/setup.sh >&2
tests/fixtures/make-fixture.sh --variant basic >&2
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
dotnet build tests/CloudMem.Tests -c Release -nologo -v q >&2
CLOUDMEM_BENCH=1 CLOUDMEM_BENCH_OUT="$out" CLOUDMEM_REQUIRE_FIXTURES=1 \
    dotnet test tests/CloudMem.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~RemoteCaptureBench" >&2
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME"), $(dotnet --version), load $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$out"; echo
