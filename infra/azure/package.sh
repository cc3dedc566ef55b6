#!/usr/bin/env bash
# Builds the Function App package: host.json, the two function.json (Event Grid and HTTP triggers), the
# self-contained cloudmem binary (linux-x64) as the custom handler, and optionally AVML under tools/.
#   infra/azure/package.sh [--avml PATH] [--out DIR]   -> DIR/cloudmem-function.zip (default DIR: artifacts/function)
# Then: az functionapp deployment source config-zip -g RG -n APP --src artifacts/function/cloudmem-function.zip
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/artifacts/function"
avml=""
while [ $# -gt 0 ]; do
  case "$1" in
    --avml) avml="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--avml PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
dotnet publish "$root/src/Cli/Cli.csproj" -c Release -r linux-x64 --self-contained true \
  -p:InvariantGlobalization=true -p:DebugType=none -o "$stage/publish" >&2
# A self-contained folder (not single-file), the handler binary beside host.json.
mv "$stage/publish" "$stage/app"
cp -r "$root/infra/azure/function/." "$stage/app/"
chmod 755 "$stage/app/cloudmem"
if [ -n "$avml" ]; then
  mkdir -p "$stage/app/tools"
  cp "$avml" "$stage/app/tools/avml"
  chmod 755 "$stage/app/tools/avml"
fi
mkdir -p "$out"
rm -f "$out/cloudmem-function.zip"
(cd "$stage/app" && zip -q -r -X "$out/cloudmem-function.zip" .)
sha256sum "$out/cloudmem-function.zip"
