using Azure.Data.Tables;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>The Azure Table ledger against azurite's Table service: claims, the VM lock, resumption by the same owner, expiry, long saved values.</summary>
public sealed class TableCaptureLedgerTests(DurableAzurite azurite) : IClassFixture<DurableAzurite>
{
    private const string Vm = "/subscriptions/6f1c2d3e-0a1b-4c5d-8e9f-00112233aabb/resourceGroups/rg-ir/providers/Microsoft.Compute/virtualMachines/vm1";

    private sealed class Clock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static AlertEvent Alert(string id) => new()
    {
        Source = AlertSource.Defender,
        Id = id,
        Type = "VM_ReverseShell",
        Severity = 8,
        SeverityLabel = "High",
        ResourceType = "Microsoft.Compute/virtualMachines",
        Target = Vm,
        Envelope = "test",
    };

    private TableCaptureLedger Ledger(TimeProvider? time = null, string? table = null)
    {
        var ledger = new TableCaptureLedger(new TableServiceClient(azurite.Host.ConnectionString).GetTableClient(table ?? "ledger" + Guid.NewGuid().ToString("N")[..10]),
            new CaptureLog(new SecretScrubber(), TextWriter.Null), time);
        ledger.CreateIfNotExistsAsync(CancellationToken.None).GetAwaiter().GetResult();
        return ledger;
    }

    [SkippableFact]
    public async Task ConcurrentClaims_OneWins_OthersAreDuplicates_AndAnotherAlertFindsTheVmLocked()
    {
        TableCaptureLedger ledger = Ledger();
        LedgerClaim[] claims = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => ledger.ClaimAsync(Alert("a1"), TimeSpan.FromHours(1), CancellationToken.None)));
        Assert.Single(claims, c => c.Won);
        Assert.Equal(3, claims.Count(c => c.Refusal == LedgerRefusal.Duplicate));

        LedgerClaim other = await ledger.ClaimAsync(Alert("a2"), TimeSpan.FromHours(1), CancellationToken.None);
        Assert.Equal(LedgerRefusal.MachineLocked, other.Refusal);
        Assert.Contains("is being captured for defender:a1", other.Reason, StringComparison.Ordinal);

        await ledger.ReleaseAsync(claims.Single(c => c.Won), new LedgerOutcome("Captured", "Completed", "/m.json"), CancellationToken.None);
        Dictionary<string, string> saved = await ledger.GetAsync(TableCaptureLedger.AlertKey(Alert("a1")), CancellationToken.None);
        Assert.Equal("Captured", saved["state"]);
        Assert.Equal("/m.json", saved["manifest"]);
        // The lock is free again for a new alert; a2 was recorded Skipped, so its re-delivery stays a duplicate.
        Assert.True((await ledger.ClaimAsync(Alert("a3"), TimeSpan.FromHours(1), CancellationToken.None)).Won);
        Assert.Equal(LedgerRefusal.Duplicate, (await ledger.ClaimAsync(Alert("a2"), TimeSpan.FromHours(1), CancellationToken.None)).Refusal);
    }

    [SkippableFact]
    public async Task TheSameOwnerResumes_AnExpiredLockIsTakenOver_LongValuesRoundTrip()
    {
        var clock = new Clock(DateTimeOffset.Parse("2026-12-06T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        TableCaptureLedger ledger = Ledger(clock);
        LedgerClaim first = await ledger.ClaimAsync(Alert("b1"), TimeSpan.FromMinutes(10), "owner-1", CancellationToken.None);
        Assert.True(first.Won);
        LedgerClaim again = await ledger.ClaimAsync(Alert("b1"), TimeSpan.FromMinutes(10), "owner-1", CancellationToken.None);
        Assert.True(again.Won);
        Assert.True(again.Resumed);
        Assert.Equal(LedgerRefusal.Duplicate, (await ledger.ClaimAsync(Alert("b1"), TimeSpan.FromMinutes(10), "owner-2", CancellationToken.None)).Refusal);

        // A value longer than a table property holds (64 KiB) is split and joined back; a shorter one replaces it.
        string big = string.Concat(Enumerable.Range(0, 9000).Select(i => $"{i:D7}|"));
        await ledger.SaveAsync(first, new Dictionary<string, string> { ["custody"] = big }, CancellationToken.None);
        Assert.Equal(big, (await ledger.GetAsync(first.AlertKey, CancellationToken.None))["custody"]);
        await ledger.SaveAsync(first, new Dictionary<string, string> { ["custody"] = "short" }, CancellationToken.None);
        Assert.Equal("short", (await ledger.GetAsync(first.AlertKey, CancellationToken.None))["custody"]);

        // The holder died: after the lock's lifetime another alert takes the VM.
        Assert.Equal(LedgerRefusal.MachineLocked, (await ledger.ClaimAsync(Alert("b2"), TimeSpan.FromMinutes(10), CancellationToken.None)).Refusal);
        clock.Now += TimeSpan.FromMinutes(11);
        Assert.True((await ledger.ClaimAsync(Alert("b3"), TimeSpan.FromMinutes(10), CancellationToken.None)).Won);
        // The first owner's release leaves the lock it no longer holds alone.
        await ledger.ReleaseAsync(first, new LedgerOutcome("Failed", "late", null), CancellationToken.None);
        Assert.Equal(LedgerRefusal.MachineLocked, (await ledger.ClaimAsync(Alert("b4"), TimeSpan.FromMinutes(10), CancellationToken.None)).Refusal);
    }

    [SkippableFact]
    public async Task StartMarker_OneOfConcurrentStarters_ThenTakenOverAfterItsHold()
    {
        var clock = new Clock(DateTimeOffset.Parse("2026-12-06T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        TableCaptureLedger ledger = Ledger(clock);
        bool[] marks = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => ledger.TryMarkStartAsync("cloudmem-x", TimeSpan.FromMinutes(2), CancellationToken.None)));
        Assert.Single(marks, m => m);
        clock.Now += TimeSpan.FromMinutes(3);
        Assert.True(await ledger.TryMarkStartAsync("cloudmem-x", TimeSpan.FromMinutes(2), CancellationToken.None));
    }
}
