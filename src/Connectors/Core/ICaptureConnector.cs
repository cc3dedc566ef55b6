namespace CloudMem.Connectors.Core;

/// <summary>
/// One provider's capture: a plan built with read-only calls, and the capture itself, which returns the custody
/// manifest (already written next to the evidence). Providers take their own options in their constructor.
/// </summary>
public interface ICaptureConnector
{
    /// <summary>Preflight checks and ordered steps; calls no mutating API.</summary>
    Task<CapturePlan> PlanAsync(CancellationToken cancellationToken);

    /// <summary>Runs the capture. On failure the manifest is still written (Failed, with the error) and the error rethrown.</summary>
    Task<CaptureResult> CaptureAsync(CancellationToken cancellationToken);
}

/// <summary>What a capture produced: the manifest and where it was written.</summary>
public sealed record CaptureResult(CustodyManifest Manifest, string ManifestPath);
