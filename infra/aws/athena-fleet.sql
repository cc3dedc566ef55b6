-- Athena tables over the case Parquet files of a fleet case uploaded to S3 (s3://BUCKET/CASE/captures/<capture-id>/*.parquet),
-- one table per file name, the schema of docs/ARCHITECTURE.md ("Fleet queries"; FleetParquetTests checks that every
-- column below is the one the writer writes, with its Athena type).
--
-- Each capture's directory holds six Parquet files side by side (and case.sqlite, the reports...), so a plain
-- LOCATION cannot select one file name across captures: every table reads a symlink manifest, a text file listing the
-- S3 URIs of its files (one per line) at s3://BUCKET/CASE/athena/<table>/manifest. infra/aws/athena-fleet-manifests.sh
-- BUCKET CASE writes the six manifests; run it again after adding captures.
-- Replace BUCKET and CASE, then run each statement in the Athena console or with aws athena start-query-execution.
-- Timestamps are Parquet TIMESTAMP(MILLIS, UTC); ints are INT64; every column is nullable. What each column holds:
-- docs/ARCHITECTURE.md.

CREATE DATABASE IF NOT EXISTS cloudmem_fleet;

CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet.captures (
  `capture_id` string,
  `image_path` string,
  `format` string,
  `bytes` bigint,
  `sha256` string,
  `os` string,
  `kernel` string,
  `analysed_at` timestamp,
  `custody_case` string,
  `custody_target` string,
  `findings_total` bigint,
  `findings_critical` bigint,
  `findings_high` bigint,
  `findings_medium` bigint,
  `findings_low` bigint,
  `findings_info` bigint,
  `plugins_run` bigint,
  `plugins_failed` bigint
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/CASE/athena/captures/';

CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet.findings (
  `capture_id` string,
  `rule_id` string,
  `severity` string,
  `severity_rank` bigint,
  `title` string,
  `attack_technique` string,
  `confidence` double,
  `summary` string,
  `pid` bigint,
  `process` string,
  `evidence_count` bigint,
  `evidence_plugins` string,
  `evidence_keys` string
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/CASE/athena/findings/';

CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet.processes (
  `capture_id` string,
  `pid` bigint,
  `ppid` bigint,
  `name` string,
  `command_line` string,
  `create_time` timestamp,
  `hidden` boolean
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/CASE/athena/processes/';

CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet.connections (
  `capture_id` string,
  `protocol` string,
  `local_address` string,
  `local_port` bigint,
  `remote_address` string,
  `remote_port` bigint,
  `state` string,
  `pid` bigint,
  `process` string
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/CASE/athena/connections/';

CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet.yara (
  `capture_id` string,
  `plugin` string,
  `rule` string,
  `string_id` string,
  `pid` bigint,
  `process` string,
  `virtual_address` bigint,
  `physical_address` bigint,
  `length` bigint,
  `region` string,
  `preview` string
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/CASE/athena/yara/';

CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet.runs (
  `capture_id` string,
  `plugin` string,
  `rows` bigint,
  `seconds` double,
  `error` string,
  `notes` string
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/CASE/athena/runs/';

-- Example: captures with a high or critical finding, worst first.
-- SELECT c.capture_id, c.os, count(*) AS serious, max(f.severity_rank) AS worst
-- FROM cloudmem_fleet.findings f JOIN cloudmem_fleet.captures c ON c.capture_id = f.capture_id
-- WHERE f.severity_rank >= 3 GROUP BY c.capture_id, c.os ORDER BY worst DESC, serious DESC;
