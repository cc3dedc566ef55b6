using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using Amazon.S3;
using Amazon.S3.Model;
using Amazon.SimpleSystemsManagement.Model;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// Opens an S3 object with our parsers in place (ranged reads, no local copy) and returns the format name; the
/// connector references no parser, so the command line supplies it.
/// </summary>
public delegate string S3EvidenceOpener(IAmazonS3 s3, string bucket, string key);

public sealed partial class AwsCaptureConnector
{
    private const int ReadBackChunk = 1 << 20;

    /// <summary>
    /// The workflow's finalize, in bounded pieces: the first invocation reads the guest's report, completes the upload
    /// (once) and checks the size; then every invocation streams the object back from where the last one stopped (one
    /// ranged GetObject, conditional on the ETag seen at the size check), hashing it with a SHA-256 whose state is saved
    /// in <paramref name="state"/> (the DynamoDB item) every <see cref="ReadBackSaveEvery"/> and when
    /// <paramref name="checkpointBy"/> passes. It returns false then: the state machine runs finalize again and the hash
    /// goes on. The last invocation compares the hash with the guest's, opens the object with our parsers in place and
    /// records the evidence. Nothing is written locally.
    /// </summary>
    /// <returns>True when the evidence is recorded; false when the read-back stopped at a checkpoint.</returns>
    internal async Task<bool> FinishSsmInStepsAsync(CustodyRecorder recorder, AwsCalls calls, SsmCaptureState state, GetCommandInvocationResponse invocation, S3EvidenceOpener opener, DateTimeOffset checkpointBy, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        Layout layout = state.Layout;
        GuestReport report;
        bool fresh = state.ReadBack is null;
        if (state.ReadBack is null)
        {
            (report, GetObjectMetadataResponse head, CompleteMultipartUploadResponse? complete) = await CompleteAndCheckAsync(recorder, calls, state, invocation, save, cancellationToken).ConfigureAwait(false);
            state.ReadBack = new ReadBackState
            {
                ETag = head.ETag,
                Length = head.ContentLength,
                Hash = new ResumableSha256().Export(),
                Stored = StoredObject(head, complete),
            };
            await save(state, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            // A later invocation: the report was recorded and checked by the first one; read again, not recorded again.
            report = GuestReport.Parse(invocation.StandardOutputContent ?? "");
            report.Validate(layout.PartBytes, layout.BoundBytes);
        }
        ReadBackState back = state.ReadBack;
        string uri = $"s3://{_options.Bucket}/{layout.EvidenceKey}";
        ResumableSha256 hash = ResumableSha256.Import(back.Hash);
        if (hash.Length != back.Offset)
        {
            throw new CaptureException($"{uri}: the saved read-back state hashed {hash.Length} bytes but stands at byte {back.Offset}");
        }
        if (back.Offset < back.Length)
        {
            if (fresh && DateTimeOffset.UtcNow >= checkpointBy)
            {
                recorder.Step("checkpoint", $"{uri}: no time left in this step after the upload was completed; the next finalize starts the read-back");
                return false;
            }
            await ReadRangeAsync(recorder, calls, state, back, hash, uri, checkpointBy, save, cancellationToken).ConfigureAwait(false);
            if (back.Offset < back.Length)
            {
                return false;
            }
        }
        string ourSha = hash.FinishHex();
        recorder.Step("stream back", $"{uri}: {back.Length} bytes, sha256 {ourSha} (computed here over the ranged reads of {back.Steps} finalize step(s))");
        string? openedAs = null;
        string? problem = null;
        try
        {
            openedAs = opener(_clients.S3, _options.Bucket, layout.EvidenceKey);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            problem = CaptureException.OneLine(e.Message);
        }
        recorder.Evidence(Path.GetFileName(layout.EvidenceKey), uri, null, back.Length, report.TotalBytes!.Value, ourSha, report.Sha256, openedAs, problem, back.Stored);
        return true;
    }

    /// <summary>How often a running read-back saves its place (a step killed mid-way loses at most this much work).</summary>
    internal TimeSpan ReadBackSaveEvery { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Test seam: runs after each piece of the read-back with the bytes hashed so far (a test stops a step there).</summary>
    internal Func<long, CancellationToken, Task>? AfterReadBackPiece { get; init; }

    // One ranged GetObject from the saved offset to the end (conditional on the ETag), hashed in 1 MiB pieces, until the
    // end or the checkpoint; at least one piece is read, so every invocation makes progress. The offset and the hash
    // state in the saved state move together: a step stopped between saves goes on from the last save.
    private async Task ReadRangeAsync(CustodyRecorder recorder, AwsCalls calls, SsmCaptureState state, ReadBackState back, ResumableSha256 hash, string uri, DateTimeOffset checkpointBy, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        long from = back.Offset;
        long offset = from;
        var clock = Stopwatch.StartNew();
        TimeSpan nextSave = ReadBackSaveEvery;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ReadBackChunk);
        try
        {
            using GetObjectResponse get = await calls.Run("s3", "GetObject", t => _clients.S3.GetObjectAsync(new GetObjectRequest
            {
                BucketName = _options.Bucket,
                Key = state.Layout.EvidenceKey,
                ByteRange = new ByteRange(from, back.Length - 1),
                EtagToMatch = back.ETag,
            }, t), cancellationToken).ConfigureAwait(false);
            Stream body = get.ResponseStream;
            while (offset < back.Length)
            {
                int want = (int)Math.Min(ReadBackChunk, back.Length - offset);
                int n = await body.ReadAtLeastAsync(buffer.AsMemory(0, want), want, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                if (n < want)
                {
                    throw new CaptureException($"{uri}: the ranged read from byte {from} ended at byte {offset + n} of {back.Length}");
                }
                hash.Append(buffer.AsSpan(0, n));
                offset += n;
                if (AfterReadBackPiece is not null)
                {
                    await AfterReadBackPiece(offset, cancellationToken).ConfigureAwait(false);
                }
                if (DateTimeOffset.UtcNow >= checkpointBy)
                {
                    break;
                }
                if (clock.Elapsed >= nextSave && offset < back.Length)
                {
                    (back.Offset, back.Hash) = (offset, hash.Export());
                    await save(state, cancellationToken).ConfigureAwait(false);
                    nextSave = clock.Elapsed + ReadBackSaveEvery;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        (back.Offset, back.Hash) = (offset, hash.Export());
        back.Steps++;
        await save(state, cancellationToken).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        string rest = back.Offset < back.Length ? $"; checkpointed, the next finalize goes on at byte {back.Offset}" : "";
        recorder.Step("read back", string.Create(CultureInfo.InvariantCulture,
            $"{uri}: bytes {from}-{back.Offset - 1} of {back.Length} hashed here in {seconds:F1} s ({(back.Offset - from) / 1048576.0 / Math.Max(seconds, 0.001):F0} MiB/s){rest}"));
    }
}

/// <summary>Where the workflow's read-back stands between finalize invocations (saved with <see cref="SsmCaptureState"/>).</summary>
internal sealed class ReadBackState
{
    /// <summary>The object's ETag at the size check: every ranged read is conditional on it.</summary>
    public required string ETag { get; init; }

    /// <summary>The object's length.</summary>
    public required long Length { get; init; }

    /// <summary>Bytes hashed so far (the next read starts here).</summary>
    public long Offset { get; set; }

    /// <summary>The SHA-256 state after <see cref="Offset"/> bytes (<see cref="ResumableSha256.Export"/>).</summary>
    public required string Hash { get; set; }

    /// <summary>Finalize invocations that read a range.</summary>
    public int Steps { get; set; }

    /// <summary>Version, ETag and checksums from the completion and the size check.</summary>
    public StoredObjectRecord? Stored { get; init; }
}
