#!/usr/bin/env bash
# Validates everything in infra/ with the real tools, warnings as errors:
#   - every Amazon States Language file (*.asl.json) with asl-validator (npm);
#   - every CloudFormation template (*.yaml/*.yml/*.json with AWSTemplateFormatVersion) against the CloudFormation
#     resource specification of @aws-cdk/cfnspec (npm) by infra/tools/cfn-spec-check.mjs: resource types, property
#     names, required properties, Ref/GetAtt/Sub/If targets; newer properties only as named exceptions in
#     infra/cfn-spec-exceptions.json;
#   - every Bicep file with `bicep build` and `bicep lint` from the NuGet package Azure.Bicep.CommandLine.linux-x64
#     (any warning fails);
#   - every Dockerfile with tools/dockerfile-check.sh (structure, and its `dotnet publish` step run here: no Docker
#     daemon is available to build the image itself, nor can base images be pulled).
# Before that, each checker is shown a broken input and must reject it (so a checker that accepts everything fails).
# Tools are installed once, pinned, into CLOUDMEM_INFRA_TOOLS (default ~/.cache/cloudmem/infra-tools), outside git.
# Called by .ci/run. Exit 0 only when everything passes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${CLOUDMEM_INFRA_TOOLS:-$HOME/.cache/cloudmem/infra-tools}"
asl_version=4.0.0
cfnspec_version=2.72.1
yaml_version=2.9.1
bicep_version=0.49.2
mkdir -p "$tools"

# --- install (idempotent) ---
if ! command -v npm >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=900 install -y nodejs npm >&2 \
        || { apt-get update >&2 && apt-get -o DPkg::Lock::Timeout=900 install -y nodejs npm >&2; }
fi
npm_dir="$tools/npm"
npm_marker="$npm_dir/.installed-asl-$asl_version-cfnspec-$cfnspec_version-yaml-$yaml_version"
if [ ! -f "$npm_marker" ]; then
    # Installed beside the target and moved into place whole (several worktrees may share this cache).
    stage="$(mktemp -d "$tools/.npm.XXXXXX")"
    printf '{ "name": "cloudmem-infra-tools", "private": true }\n' > "$stage/package.json"
    (cd "$stage" && npm install --no-audit --no-fund --loglevel=error \
        "asl-validator@$asl_version" "@aws-cdk/cfnspec@$cfnspec_version" "yaml@$yaml_version" >&2)
    touch "$stage/$(basename "$npm_marker")"
    rm -rf "$npm_dir.old.$$"
    if [ -e "$npm_dir" ]; then mv "$npm_dir" "$npm_dir.old.$$"; fi
    mv "$stage" "$npm_dir" && rm -rf "$npm_dir.old.$$"
fi
bicep="$tools/nuget/azure.bicep.commandline.linux-x64/$bicep_version/tools/bicep"
if [ ! -x "$bicep" ]; then
    restore="$tools/bicep-restore"
    mkdir -p "$restore"
    # A throwaway project that only downloads the package (outside the repo: no Directory.Build.props).
    cat > "$restore/tools.csproj" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net10.0</TargetFramework></PropertyGroup>
  <ItemGroup><PackageDownload Include="Azure.Bicep.CommandLine.linux-x64" Version="[$bicep_version]" /></ItemGroup>
</Project>
EOF
    dotnet restore "$restore/tools.csproj" --packages "$tools/nuget" -v q >&2
    chmod 755 "$bicep"
fi
asl="$npm_dir/node_modules/.bin/asl-validator"
spec="$npm_dir/node_modules/@aws-cdk/cfnspec/spec/specification.json"
cfncheck() { (cd "$npm_dir" && node "$here/tools/cfn-spec-check.mjs" --spec "$spec" "$@"); }
# bicep_check FILE: build and lint; any diagnostic (warning or error) fails.
bicep_check() {
    local out status
    out="$(DOTNET_CLI_TELEMETRY_OPTOUT=1 "$bicep" build "$1" --stdout 2>&1 >/dev/null)"; status=$?
    out+=$'\n'"$(DOTNET_CLI_TELEMETRY_OPTOUT=1 "$bicep" lint "$1" 2>&1)" || status=1
    if [ "$status" -ne 0 ] || grep -qE ': (Warning|Error) ' <<<"$out"; then
        printf '%s\n' "$out"
        return 1
    fi
}

failed=0
fail() { echo "infra/validate: FAIL: $*"; failed=1; }

# --- each checker must reject a broken input ---
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cat > "$scratch/broken.asl.json" <<'EOF'
{ "StartAt": "Missing", "States": { "Only": { "Type": "Wait", "Seconds": 1, "End": true } } }
EOF
"$asl" --silent --json-path "$scratch/broken.asl.json" >/dev/null 2>&1 && fail "asl-validator accepted a state machine whose StartAt names no state"
for broken in "Type: AWS::S3::NoSuchThing" $'Type: AWS::S3::Bucket\n    Properties:\n      BucketNam: x' \
    $'Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PAY_PER_REQUEST' \
    $'Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !GetAtt Nowhere.Arn' \
    $'Type: AWS::StepFunctions::StateMachine\n    Properties:\n      RoleArn: x\n      DefinitionS3Location: missing.asl.json'; do
    printf 'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  Thing:\n    %s\n' "$broken" > "$scratch/broken.yaml"
    cfncheck "$scratch/broken.yaml" >/dev/null 2>&1 && fail "cfn-spec-check accepted a broken template: $(tr '\n' ' ' <<<"$broken")"
done
printf "@maxLength(20)\nparam n string\nresource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: '\${n}\${uniqueString(n)}'\n  location: 'x'\n  sku: { name: 'Standard_LRS' }\n  kind: 'StorageV2'\n}\n" > "$scratch/broken.bicep"
bicep_check "$scratch/broken.bicep" >/dev/null 2>&1 && fail "bicep accepted a storage name that can be too long (BCP335)"
printf 'FROM debian:latest\nCOPY missing /x\nENTRYPOINT /x\n' > "$scratch/Dockerfile"
bash "$here/tools/dockerfile-check.sh" "$scratch/Dockerfile" "$scratch" >/dev/null 2>&1 && fail "dockerfile-check accepted a Dockerfile with :latest, a missing COPY source, no USER and a shell-form ENTRYPOINT"

# --- everything in infra/ ---
count=0
while IFS= read -r -d '' f; do
    count=$((count + 1))
    if "$asl" --json-path "$f" >"$scratch/asl.out" 2>&1; then
        echo "infra/validate: ok   asl-validator $asl_version  ${f#"$here"/}"
    else
        cat "$scratch/asl.out"
        fail "asl-validator ${f#"$here"/}"
    fi
done < <(find "$here" -name '*.asl.json' -not -path '*/node_modules/*' -print0 | sort -z)

templates=()
while IFS= read -r -d '' f; do
    grep -q 'AWSTemplateFormatVersion' "$f" && templates+=("$f")
done < <(find "$here" \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -not -name '*.asl.json' -not -name 'cfn-spec-exceptions.json' -not -path '*/node_modules/*' -print0 | sort -z)
if [ "${#templates[@]}" -gt 0 ]; then
    count=$((count + ${#templates[@]}))
    if cfncheck --exceptions "$here/cfn-spec-exceptions.json" "${templates[@]}"; then
        for f in "${templates[@]}"; do echo "infra/validate: ok   cfnspec $cfnspec_version  ${f#"$here"/}"; done
    else
        fail "CloudFormation resource specification check"
    fi
fi

while IFS= read -r -d '' f; do
    count=$((count + 1))
    if bicep_check "$f"; then
        echo "infra/validate: ok   bicep $bicep_version  ${f#"$here"/}"
    else
        fail "bicep ${f#"$here"/}"
    fi
done < <(find "$here" -name '*.bicep' -print0 | sort -z)

while IFS= read -r -d '' f; do
    count=$((count + 1))
    # The build context is the repository root (the Dockerfile copies src/).
    if bash "$here/tools/dockerfile-check.sh" --publish "$f" "$here/.."; then
        echo "infra/validate: ok   dockerfile-check (structure + publish step)  ${f#"$here"/}"
    else
        fail "dockerfile-check ${f#"$here"/}"
    fi
done < <(find "$here" -name 'Dockerfile' -not -path '*/node_modules/*' -print0 | sort -z)

if [ "$count" -eq 0 ]; then fail "nothing to validate under $here"; fi
if [ "$failed" -ne 0 ]; then
    echo "infra/validate: FAILED"
    exit 1
fi
echo "infra/validate: $count file(s) passed"
