#!/usr/bin/env bash
# Benchmark: upload and download (SHA-256 while streaming into a local copy) of the 1 GiB capture
# (.fixtures/big/memory.raw, built by tests/fixtures/make-fixture.sh --variant big) through azurite, with the Blob
# SDK settings the Azure connector uses. Prints throughput and peak RSS; results go into docs/BENCHMARKS.md by hand.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
tests/emulators/setup.sh >&2
tests/fixtures/make-fixture.sh --variant big >&2
dotnet build tests/CloudMem.Tests -c Release -nologo -v q >&2
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME"), $(dotnet --version)"
CLOUDMEM_BENCH=1 CLOUDMEM_REQUIRE_FIXTURES=1 \
    dotnet test tests/CloudMem.Tests -c Release --no-build --nologo --logger "console;verbosity=detailed" \
    --filter "FullyQualifiedName~AzureBlobBenchmark"
