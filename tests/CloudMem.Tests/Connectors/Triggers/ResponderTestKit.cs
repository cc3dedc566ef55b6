using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>A connector that answers a fixed plan and records what it was built for (no cloud).</summary>
public sealed class StubConnector(string provider, string target, bool failCapture) : ICaptureConnector
{
    public int Plans { get; private set; }

    public Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
    {
        Plans++;
        var plan = new CapturePlan(provider, target, "stub");
        plan.Check("target exists", true, target);
        plan.Step("capture", "would capture", mutating: true);
        return Task.FromResult(plan);
    }

    public Task<CaptureResult> CaptureAsync(CancellationToken cancellationToken)
        => failCapture ? throw new CaptureException($"{provider} capture of {target} failed: stub") : throw new NotSupportedException();
}

/// <summary>A target building <see cref="StubConnector"/>s and remembering the requests it got.</summary>
public sealed class StubTarget(AlertSource source, bool failCapture = false) : IResponderTarget
{
    public List<(AlertEvent Alert, CaptureRequest Request)> Created { get; } = [];

    public AlertSource Source => source;

    public ConnectorLease Create(AlertEvent alert, CaptureRequest request, CaptureLog log)
    {
        Created.Add((alert, request));
        return new ConnectorLease(new StubConnector(source == AlertSource.GuardDuty ? "aws" : "azure", alert.Target!, failCapture));
    }
}
