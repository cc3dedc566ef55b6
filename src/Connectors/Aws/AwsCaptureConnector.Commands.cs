using System.Globalization;
using System.Security.Cryptography;
using Amazon.EC2.Model;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Amazon.SimpleSystemsManagement;
using Amazon.SimpleSystemsManagement.Model;
using CloudMem.Connectors.Core;
using Ec2Tag = Amazon.EC2.Model.Tag;

namespace CloudMem.Connectors.Aws;

/// <summary>The SSM command's life on the guest (wait, status, cancel, result) and the clean-up after a capture.</summary>
public sealed partial class AwsCaptureConnector
{
    /// <summary>Deletes the ticket and its parameter and aborts an upload that was not completed (best effort, recorded).</summary>
    internal async Task CleanUpAsync(CustodyRecorder recorder, AwsCalls calls, SsmCaptureState state)
    {
        // Best effort, never cancelled: secrets must not outlive the capture.
        Layout layout = state.Layout;
        using var cleanup = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        if (state.ParameterPut)
        {
            await BestEffort(recorder, "delete ticket parameter", layout.ParameterName,
                () => calls.Run("ssm", "DeleteParameter", t => _clients.Ssm.DeleteParameterAsync(new DeleteParameterRequest { Name = layout.ParameterName }, t), cleanup.Token)).ConfigureAwait(false);
            state.ParameterPut = false;
        }
        if (state.TicketPut)
        {
            await BestEffort(recorder, "delete ticket", $"s3://{_options.Bucket}/{layout.TicketKey}",
                () => calls.Run("s3", "DeleteObject", t => _clients.S3.DeleteObjectAsync(_options.Bucket, layout.TicketKey, t), cleanup.Token)).ConfigureAwait(false);
            state.TicketPut = false;
        }
        if (!state.Completed && state.UploadId is { } uploadId)
        {
            await BestEffort(recorder, "abort upload", $"s3://{_options.Bucket}/{layout.EvidenceKey} upload {uploadId}",
                () => calls.Run("s3", "AbortMultipartUpload", t => _clients.S3.AbortMultipartUploadAsync(_options.Bucket, layout.EvidenceKey, uploadId, t), cleanup.Token)).ConfigureAwait(false);
        }
    }

    private static async Task BestEffort(CustodyRecorder recorder, string action, string detail, Func<Task> call)
    {
        try
        {
            await call().ConfigureAwait(false);
            recorder.Step(action, detail);
        }
        catch (Exception e) when (e is CaptureException or OperationCanceledException)
        {
            recorder.Step(action, $"{detail}: FAILED: {e.Message}");
        }
    }

    private async Task<GetCommandInvocationResponse> WaitAsync(AwsCalls calls, CustodyRecorder recorder, string commandId, CancellationToken cancellationToken)
    {
        GetCommandInvocationResponse? last = null;
        try
        {
            last = await Resilience.PollUntilAsync($"SSM command {commandId} on {_options.InstanceId}", async token =>
            {
                (string status, GetCommandInvocationResponse? invocation) = await CommandStatusAsync(calls, commandId, token).ConfigureAwait(false);
                return IsRunning(status)
                    ? PollState<GetCommandInvocationResponse>.Pending(status)
                    : PollState<GetCommandInvocationResponse>.Finished(status, invocation!);
            }, _request.Timeouts.PollInterval, _request.Timeouts.Command, cancellationToken).ConfigureAwait(false);
        }
        catch (CaptureTimeoutException)
        {
            await CancelCommandAsync(calls, recorder, commandId).ConfigureAwait(false);
            throw;
        }
        return Succeeded(recorder, commandId, last);
    }

    /// <summary>One GetCommandInvocation: the status ("not yet delivered" before the agent has it) and the invocation.</summary>
    internal async Task<(string Status, GetCommandInvocationResponse? Invocation)> CommandStatusAsync(AwsCalls calls, string commandId, CancellationToken cancellationToken)
    {
        GetCommandInvocationResponse? invocation = await calls.TryRun("ssm", "GetCommandInvocation", t => _clients.Ssm.GetCommandInvocationAsync(new GetCommandInvocationRequest
        {
            CommandId = commandId,
            InstanceId = _options.InstanceId,
        }, t), cancellationToken, "InvocationDoesNotExist").ConfigureAwait(false);
        return (invocation is null ? "not yet delivered" : invocation.Status?.Value ?? "unknown", invocation);
    }

    /// <summary>Whether a command status means it is still running.</summary>
    internal static bool IsRunning(string status) => status is "Pending" or "InProgress" or "Delayed" or "not yet delivered";

    /// <summary>CancelCommand, best effort and recorded.</summary>
    internal async Task CancelCommandAsync(AwsCalls calls, CustodyRecorder recorder, string commandId)
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await BestEffort(recorder, "cancel command", commandId,
            () => calls.Run("ssm", "CancelCommand", t => _clients.Ssm.CancelCommandAsync(new CancelCommandRequest { CommandId = commandId, InstanceIds = [_options.InstanceId] }, t), cancel.Token)).ConfigureAwait(false);
    }

    /// <summary>Records how the command ended; anything but Success is an error with the guest's reason.</summary>
    internal GetCommandInvocationResponse Succeeded(CustodyRecorder recorder, string commandId, GetCommandInvocationResponse last)
    {
        string final = last.Status?.Value ?? "unknown";
        recorder.Step("command finished", $"{commandId}: {final} (exit {last.ResponseCode})");
        if (final != "Success")
        {
            string? error = GuestReport.Parse(last.StandardOutputContent ?? "").Error;
            string stderr = (last.StandardErrorContent ?? "").Trim();
            string why = error ?? (stderr.Length > 0 ? stderr[^Math.Min(300, stderr.Length)..] : last.StatusDetails ?? final);
            throw new CaptureException($"SSM command {commandId} on {_options.InstanceId} ended {final} (exit {last.ResponseCode}): {_log.Scrubber.Scrub(why)}");
        }
        return last;
    }

    /// <summary>
    /// When the presigned URLs must stop working: now + command timeout + URL margin (the guest needs them until its
    /// upload ends). A URL signed with temporary credentials (AssumeRole, SSO, an instance or task role) stops working
    /// when those credentials expire, whatever its X-Amz-Expires says; so the credentials are fetched first (refreshing
    /// credentials renew themselves when near their end) and, when they still end before the URLs must, the capture
    /// is refused in one line before anything is created. Long-term keys have no expiry.
    /// </summary>
    internal async Task<DateTime> PresignExpiryAsync(CustodyRecorder? recorder)
    {
        DateTime wanted = DateTime.UtcNow + _request.Timeouts.Command + _options.UrlMargin;
        await _clients.Credentials.GetCredentialsAsync().ConfigureAwait(false);
        if (_clients.Credentials.Expiration is { } ends)
        {
            DateTime endsUtc = ends.ToUniversalTime();
            if (endsUtc < wanted)
            {
                throw new CaptureException(string.Create(CultureInfo.InvariantCulture,
                    $"the signing credentials expire at {endsUtc:yyyy-MM-dd'T'HH:mm:ss'Z'}, before the presigned URLs must stop working ({wanted:yyyy-MM-dd'T'HH:mm:ss'Z'}: command timeout {Resilience.Describe(_request.Timeouts.Command)} + URL margin {Resilience.Describe(_options.UrlMargin)}): use a longer session (AssumeRole DurationSeconds, SSO session length) or a shorter command timeout"));
            }
            recorder?.Step("presign", string.Create(CultureInfo.InvariantCulture, $"signing credentials valid until {endsUtc:O}, after the URLs' expiry {wanted:O}"));
        }
        return wanted;
    }
}
