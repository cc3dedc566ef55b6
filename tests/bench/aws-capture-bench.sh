#!/usr/bin/env bash
# AWS capture benchmark: a 1 GiB real capture (.fixtures/big/memory.raw) goes guest script -> s3rver (upload, bash +
# curl, 64 MiB presigned parts) and s3rver -> local file hashed while streaming (download); prints MiB/s and the peak
# RSS of the cloudmem (test) process. Needs: tests/emulators/setup.sh, tests/fixtures/make-fixture.sh --variant big.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
tests/emulators/setup.sh >&2
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
dotnet build tests/CloudMem.Tests -c Release -nologo -v q >&2
CLOUDMEM_BENCH=1 CLOUDMEM_BENCH_OUT="$out" CLOUDMEM_REQUIRE_FIXTURES=1 \
    dotnet test tests/CloudMem.Tests -c Release --no-build --nologo --filter "FullyQualifiedName~AwsCaptureBench" >&2
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME"), $(dotnet --version)"
cat "$out"; echo
