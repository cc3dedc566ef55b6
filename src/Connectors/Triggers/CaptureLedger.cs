namespace CloudMem.Connectors.Triggers;

/// <summary>
/// Who handles an alert: GuardDuty re-publishes a finding and Lambda / Event Grid deliver at least once, so the same
/// alert may arrive several times at once; the ledger lets exactly one delivery run the capture, and lets at most one
/// capture run on a machine at a time (a per-machine lock that expires, in case its holder died).
/// </summary>
/// <remarks>Implementations must be safe for concurrent callers in different processes (a conditional write).</remarks>
public interface ICaptureLedger
{
    /// <summary>
    /// Claims <paramref name="alert"/> on its target: won only by the first delivery of this alert for this machine,
    /// and only while no other capture holds the machine's lock. The lock is held for <paramref name="lockFor"/> at most.
    /// </summary>
    Task<LedgerClaim> ClaimAsync(AlertEvent alert, TimeSpan lockFor, CancellationToken cancellationToken);

    /// <summary>Records how the claimed capture ended (Captured / Failed, manifest, reason) and releases the machine's lock.</summary>
    Task ReleaseAsync(LedgerClaim claim, LedgerOutcome outcome, CancellationToken cancellationToken);
}

/// <summary>Why a claim was not won.</summary>
public enum LedgerRefusal
{
    /// <summary>Won: this delivery runs the capture.</summary>
    None,
    /// <summary>This alert was already claimed for this machine (another delivery runs or ran the capture).</summary>
    Duplicate,
    /// <summary>Another alert's capture holds the machine's lock.</summary>
    MachineLocked,
}

/// <summary>The result of <see cref="ICaptureLedger.ClaimAsync"/>: won (with the owner token) or refused with a one-line reason.</summary>
public sealed record LedgerClaim(LedgerRefusal Refusal, string Reason, string AlertKey, string LockKey, string Owner)
{
    /// <summary>Whether this delivery runs the capture.</summary>
    public bool Won => Refusal == LedgerRefusal.None;

    /// <summary>Won again by the owner that already held it (a restarted workflow step).</summary>
    public bool Resumed { get; init; }
}

/// <summary>How a claimed capture ended.</summary>
public sealed record LedgerOutcome(string State, string Reason, string? Manifest);
