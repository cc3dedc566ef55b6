using Amazon.DynamoDBv2.Model;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using CloudMem.Tests.Connectors.Aws;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>De-duplication and the per-machine lock on DynamoDB (dynalite), and a finding delivered three times at once.</summary>
public sealed class CaptureLedgerTests
{
    private static AlertEvent Finding(string id, string instance) => new()
    {
        Source = AlertSource.GuardDuty,
        Id = id,
        Type = "Backdoor:EC2/C&CActivity.B",
        Severity = 8,
        SeverityLabel = "High",
        ResourceType = "Instance",
        Target = instance,
        Region = "eu-west-1",
        Envelope = "eventbridge",
    };

    private static CaptureLog Log(StringWriter? text = null) => new(new SecretScrubber(), text ?? new StringWriter());

    [SkippableFact]
    public async Task Claims_an_alert_once_and_a_machine_for_one_alert_at_a_time()
    {
        using var dynalite = new DynaliteEmulator();
        var clock = new ManualClock(new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero));
        using DynamoCaptureLedger ledger = dynalite.Ledger(Log(), clock);
        TimeSpan lockFor = TimeSpan.FromMinutes(20);

        LedgerClaim first = await ledger.ClaimAsync(Finding("f-1", "i-0aaa"), lockFor, CancellationToken.None);
        Assert.True(first.Won);
        LedgerClaim again = await ledger.ClaimAsync(Finding("f-1", "i-0aaa"), lockFor, CancellationToken.None);
        Assert.Equal(LedgerRefusal.Duplicate, again.Refusal);
        Assert.Contains("guardduty:f-1 on i-0aaa was claimed at 2026-12-06T10:00:00Z (state Claimed)", again.Reason);
        // The same finding on another instance is another claim.
        Assert.True((await ledger.ClaimAsync(Finding("f-1", "i-0bbb"), lockFor, CancellationToken.None)).Won);
        // Another finding on the locked machine is not captured while the first capture runs.
        LedgerClaim other = await ledger.ClaimAsync(Finding("f-2", "i-0aaa"), lockFor, CancellationToken.None);
        Assert.Equal(LedgerRefusal.MachineLocked, other.Refusal);
        Assert.Contains("i-0aaa is being captured for guardduty:f-1", other.Reason);
        Assert.Equal("Skipped", (await ledger.GetAsync(other.AlertKey, CancellationToken.None))["state"].S);

        await ledger.ReleaseAsync(first, new LedgerOutcome("Captured", "Completed", "/out/m.custody.json"), CancellationToken.None);
        Dictionary<string, AttributeValue> item = await ledger.GetAsync(first.AlertKey, CancellationToken.None);
        Assert.Equal("Captured", item["state"].S);
        Assert.Equal("/out/m.custody.json", item["manifest"].S);
        Assert.Equal(clock.Now.AddDays(30).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), item[DynamoCaptureLedger.ExpiresAttribute].N);
        Assert.Empty(await ledger.GetAsync(first.LockKey, CancellationToken.None));
        // Released: a new finding on the machine captures; the skipped one stays a duplicate.
        Assert.True((await ledger.ClaimAsync(Finding("f-3", "i-0aaa"), lockFor, CancellationToken.None)).Won);
        Assert.Equal(LedgerRefusal.Duplicate, (await ledger.ClaimAsync(Finding("f-2", "i-0aaa"), lockFor, CancellationToken.None)).Refusal);
        Assert.Equal(LedgerRefusal.Duplicate, (await ledger.ClaimAsync(Finding("f-1", "i-0aaa"), lockFor, CancellationToken.None)).Refusal);
    }

    [SkippableFact]
    public async Task An_expired_lock_or_alert_item_counts_as_absent()
    {
        using var dynalite = new DynaliteEmulator();
        var clock = new ManualClock(new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero));
        using DynamoCaptureLedger ledger = new DynamoCaptureLedger(dynalite.Client(), DynaliteEmulator.Table, Log(), clock) { AlertRetention = TimeSpan.FromHours(1) };

        LedgerClaim dead = await ledger.ClaimAsync(Finding("f-1", "i-0ccc"), TimeSpan.FromMinutes(5), CancellationToken.None);
        Assert.True(dead.Won);
        clock.Now += TimeSpan.FromMinutes(6); // its holder died: the lock expired (DynamoDB's TTL may not have deleted it yet)
        LedgerClaim next = await ledger.ClaimAsync(Finding("f-2", "i-0ccc"), TimeSpan.FromMinutes(5), CancellationToken.None);
        Assert.True(next.Won);
        // The dead holder coming back does not release the new holder's lock.
        await ledger.ReleaseAsync(dead, new LedgerOutcome("Failed", "late", null), CancellationToken.None);
        Assert.Equal(next.Owner, (await ledger.GetAsync(next.LockKey, CancellationToken.None))["owner"].S);
        await ledger.ReleaseAsync(next, new LedgerOutcome("Captured", "Completed", null), CancellationToken.None);
        // After the retention, the same finding can be claimed again.
        clock.Now += TimeSpan.FromHours(2);
        Assert.True((await ledger.ClaimAsync(Finding("f-1", "i-0ccc"), TimeSpan.FromMinutes(5), CancellationToken.None)).Won);
    }

    [SkippableFact]
    public async Task The_same_finding_three_times_at_once_runs_the_guest_tool_once()
    {
        string fixture = Fixture.Require("memory.lime");
        using var dynalite = new DynaliteEmulator();
        using var world = new AwsHarness(fixture);
        // The stand-in tool counts its runs in the guest.
        string runs = Path.Combine(world.OutputDirectory, "..", "tool-runs");
        File.WriteAllText(world.ToolFile, $"#!/bin/bash\necho run >> '{runs}'\nexec cat '{fixture}' > \"$1\"\n");
        byte[] finding = File.ReadAllBytes(AlertEventParserTests.Event("guardduty-eventbridge-high.json"));
        var ledgers = new List<DynamoCaptureLedger>();
        var deliveries = new List<Task<ResponseOutcome>>();
        using var start = new ManualResetEventSlim();
        for (int i = 0; i < 3; i++)
        {
            // Three Lambda sandboxes: each its own responder, connector and DynamoDB client; one table.
            DynamoCaptureLedger ledger = dynalite.Ledger(world.Log);
            ledgers.Add(ledger);
            var target = new AwsResponderTarget(_ => world.Connection, AwsHarness.Bucket, "cases", world.ToolFile, CloudMem.Cli.Commands.CaptureCli.ParserOpener, 8L << 20);
            var responder = new AlertResponder(new TriggerPolicy(), [target], world.Log)
            {
                OutputDirectory = Path.Combine(world.OutputDirectory, $"sandbox{i}"),
                Timeouts = new CaptureTimeouts { Command = TimeSpan.FromMinutes(3), PollInterval = TimeSpan.FromMilliseconds(200), Operation = TimeSpan.FromMinutes(1) },
                Ledger = ledger,
            };
            deliveries.Add(Task.Run(() =>
            {
                start.Wait();
                return responder.RespondAsync(finding, CancellationToken.None);
            }));
        }
        start.Set();
        ResponseOutcome[] outcomes = await Task.WhenAll(deliveries);
        ledgers.ForEach(l => l.Dispose());

        Assert.Equal(1, outcomes.Count(o => o.Status == ResponseStatus.Captured));
        Assert.Equal(2, outcomes.Count(o => o.Status == ResponseStatus.Duplicate));
        Assert.All(outcomes.Where(o => o.Status == ResponseStatus.Duplicate), o => Assert.Contains("duplicate delivery: guardduty:c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d on i-0123456789abcdef0", o.Reason));
        // Exactly one command reached the guest, and the tool ran once.
        Assert.Single(world.Fake.SendCommandBodies);
        Assert.Single(File.ReadAllLines(runs));
        Assert.Equal(1, world.Fake.Operations.Count(o => o == "ssm:SendCommand"));
        using DynamoCaptureLedger reader = dynalite.Ledger(Log());
        Dictionary<string, AttributeValue> item = await reader.GetAsync("alert#guardduty:c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d#i-0123456789abcdef0", CancellationToken.None);
        Assert.Equal("Captured", item["state"].S);
        Assert.Equal(outcomes.Single(o => o.Status == ResponseStatus.Captured).Manifest, item["manifest"].S);
        Assert.Empty(await reader.GetAsync(DynamoCaptureLedger.LockKey("i-0123456789abcdef0"), CancellationToken.None));
    }

    [SkippableFact]
    public async Task A_failed_capture_is_recorded_and_not_run_again()
    {
        using var dynalite = new DynaliteEmulator();
        var target = new StubTarget(AlertSource.GuardDuty, failCapture: true);
        using DynamoCaptureLedger ledger = dynalite.Ledger(Log());
        var responder = new AlertResponder(new TriggerPolicy(), [target], Log())
        {
            OutputDirectory = Path.Combine(Path.GetTempPath(), "cloudmem-test-ledger"),
            Ledger = ledger,
        };
        AlertEvent alert = Finding("f-9", "i-0ddd0000dddd");
        var e = await Assert.ThrowsAsync<CaptureException>(() => responder.RespondAsync(alert, CancellationToken.None));
        Assert.Contains("capture of i-0ddd0000dddd failed: stub", e.Message);
        Dictionary<string, AttributeValue> item = await ledger.GetAsync(DynamoCaptureLedger.AlertKey(alert), CancellationToken.None);
        Assert.Equal("Failed", item["state"].S);
        Assert.Contains("failed: stub", item["reason"].S);
        Assert.Empty(await ledger.GetAsync(DynamoCaptureLedger.LockKey("i-0ddd0000dddd"), CancellationToken.None));
        ResponseOutcome again = await responder.RespondAsync(alert, CancellationToken.None);
        Assert.Equal(ResponseStatus.Duplicate, again.Status);
        Assert.Single(target.Created);
        // A dry run claims nothing.
        var dry = new AlertResponder(new TriggerPolicy(), [target], Log()) { PlanOnly = true, Ledger = ledger, OutputDirectory = responder.OutputDirectory };
        Assert.Equal(ResponseStatus.Planned, (await dry.RespondAsync(Finding("f-10", "i-0ddd0000dddd"), CancellationToken.None)).Status);
        Assert.Empty(await ledger.GetAsync(DynamoCaptureLedger.AlertKey(Finding("f-10", "i-0ddd0000dddd")), CancellationToken.None));
    }
}
