#!/usr/bin/env bash
# Writes the symlink manifests the Athena tables of athena-fleet.sql read: for each case table, the S3 URIs of
# s3://BUCKET/CASE/captures/*/<table>.parquet, one per line, to s3://BUCKET/CASE/athena/<table>/manifest.
# Usage: athena-fleet-manifests.sh BUCKET CASE   (needs the aws CLI with s3:ListBucket and s3:PutObject on the bucket)
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 BUCKET CASE" >&2
    exit 2
fi
bucket="$1"
case_prefix="${2%/}"
manifest="$(mktemp)"
trap 'rm -f "$manifest"' EXIT
for table in captures findings processes connections yara runs; do
    aws s3api list-objects-v2 --bucket "$bucket" --prefix "$case_prefix/captures/" \
        --query "Contents[?ends_with(Key, '/$table.parquet')].Key" --output text \
        | tr '\t' '\n' | grep -v -e '^None$' -e '^$' | sed "s|^|s3://$bucket/|" > "$manifest" || true
    aws s3 cp --only-show-errors "$manifest" "s3://$bucket/$case_prefix/athena/$table/manifest"
    echo "$table: $(wc -l < "$manifest") files" >&2
done
