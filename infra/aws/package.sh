#!/usr/bin/env bash
# Builds the Lambda deployment zip: the self-contained cloudmem build (linux-x64), a two-line bootstrap, and
# optionally the AVML binary the guests will run (staged by the function in the evidence bucket, content-addressed).
#   infra/aws/package.sh [--avml PATH] [--out DIR]     -> DIR/cloudmem-lambda.zip (default DIR: artifacts/lambda)
# Then: aws s3 cp artifacts/lambda/cloudmem-lambda.zip s3://CODE_BUCKET/cloudmem/cloudmem-lambda.zip
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/artifacts/lambda"
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
# A self-contained folder (not single-file: some commands read assembly locations), the binary at the zip's root.
mv "$stage/publish" "$stage/app"
chmod 755 "$stage/app/cloudmem"
printf '#!/bin/sh\nexec "$LAMBDA_TASK_ROOT/cloudmem" lambda "$@"\n' > "$stage/app/bootstrap"
chmod 755 "$stage/app/bootstrap"
files=(.)
if [ -n "$avml" ]; then
  mkdir -p "$stage/app/tools"
  cp "$avml" "$stage/app/tools/avml"
  chmod 755 "$stage/app/tools/avml"
fi
mkdir -p "$out"
rm -f "$out/cloudmem-lambda.zip"
(cd "$stage/app" && zip -q -r -X "$out/cloudmem-lambda.zip" "${files[@]}")
sha256sum "$out/cloudmem-lambda.zip"
