// Reads one Parquet file with hyparquet (pure JavaScript, installed by tests/emulators/setup.sh) and prints its schema
// and rows as JSON: the independent reader FleetParquetTests compares the case Parquet files with.
// node read-parquet.mjs HYPARQUET_NODE_ENTRY_URL (node_modules/hyparquet/src/node.js) FILE
const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } = await import(process.argv[2])
const file = await asyncBufferFromFile(process.argv[3])
const metadata = await parquetMetadataAsync(file)
const columns = parquetSchema(metadata).children.map(c => ({
  name: c.element.name,
  physical: c.element.type,
  logical: c.element.logical_type?.type ?? null,
  unit: c.element.logical_type?.unit ?? null,
  utc: c.element.logical_type?.isAdjustedToUTC ?? null,
}))
const rows = await parquetReadObjects({ file, utf8: true })
console.log(JSON.stringify({ rows: Number(metadata.num_rows), columns, data: rows },
  (k, v) => typeof v === 'bigint' ? Number(v) : v instanceof Date ? v.toISOString() : v))
