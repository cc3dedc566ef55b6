using System.Text;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>GuardDuty findings and Defender alerts (TestData/events) into capture decisions.</summary>
public sealed class AlertEventParserTests
{
    internal static string Event(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "events", name);

    [Fact]
    public void GuardDutyEventBridgeHighIsAccepted()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("guardduty-eventbridge-high.json"));
        Assert.Equal(AlertSource.GuardDuty, alert.Source);
        Assert.Equal("eventbridge", alert.Envelope);
        Assert.Equal("c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", alert.Id);
        Assert.Equal("Backdoor:EC2/C&CActivity.B!DNS", alert.Type);
        Assert.Equal(8, alert.Severity);
        Assert.Equal("High", alert.SeverityLabel);
        Assert.Equal("i-0123456789abcdef0", alert.Target);
        Assert.Equal("eu-west-1", alert.Region);
        Assert.Equal("210987654321", alert.Account);
        Assert.Equal("guardduty:c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", alert.Trigger.ToString());
        Assert.Equal(alert.Trigger, CaptureTrigger.Parse(alert.Trigger.ToString()));
        Assert.Equal("gd-c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", CaptureRequest.ValidateCaseId(alert.CaseId));
        TriggerDecision decision = new TriggerPolicy().Evaluate(alert);
        Assert.True(decision.Accepted, decision.Reason);
        Assert.StartsWith("accepted: GuardDuty finding c4ab91f07e2d3b5a8c6d1e0f2a3b4c5d", decision.Reason);
    }

    [Fact]
    public void GuardDutyRawMediumIsBelowTheDefaultThresholdButAcceptedAtFive()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("guardduty-finding-medium.json"));
        Assert.Equal("finding", alert.Envelope);
        Assert.Equal("i-0fedcba9876543210", alert.Target);
        Assert.Equal("us-east-2", alert.Region);
        TriggerDecision refused = new TriggerPolicy().Evaluate(alert);
        Assert.False(refused.Accepted);
        Assert.Equal("refused: GuardDuty finding 7d0e5f3a9b1c48e2a6f4d2c1b0a99887 severity 5 (Medium) is below the threshold 7", refused.Reason);
        Assert.True(new TriggerPolicy { MinSeverity = 5 }.Evaluate(alert).Accepted);
    }

    [Fact]
    public void AllowListFiltersByTypeWithPrefixes()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("guardduty-eventbridge-high.json"));
        Assert.True(new TriggerPolicy { AllowedTypes = TriggerPolicy.ParseAllowList("CryptoCurrency:EC2/*, backdoor:ec2/*") }.Evaluate(alert).Accepted);
        TriggerDecision refused = new TriggerPolicy { AllowedTypes = TriggerPolicy.ParseAllowList("CryptoCurrency:EC2/*") }.Evaluate(alert);
        Assert.False(refused.Accepted);
        Assert.Contains("is not in the allow-list (CryptoCurrency:EC2/*)", refused.Reason);
    }

    [Fact]
    public void NonInstanceFindingsAreRefused()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("guardduty-s3-bucket.json"));
        Assert.Null(alert.Target);
        TriggerDecision decision = new TriggerPolicy().Evaluate(alert);
        Assert.False(decision.Accepted);
        Assert.Equal("refused: GuardDuty finding aa00bb11cc22dd33ee44ff5566778899 is about a S3Bucket resource, not an EC2 instance", decision.Reason);
    }

    [Fact]
    public void MissingInstanceIdNamesThePath()
    {
        var e = Assert.Throws<TriggerEventException>(() => AlertEventParser.ParseFile(Event("guardduty-missing-instance.json")));
        Assert.Equal("$.detail.resource.instanceDetails.instanceId", e.Path);
        Assert.Equal("event: $.detail.resource.instanceDetails.instanceId: missing", e.Message);
        Assert.IsAssignableFrom<CaptureException>(e);
    }

    [Fact]
    public void DefenderAlertResourceIsAccepted()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("defender-alert-high.json"));
        Assert.Equal(AlertSource.Defender, alert.Source);
        Assert.Equal("defender", alert.Envelope);
        Assert.Equal("2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b", alert.Id);
        Assert.Equal("VM_ReverseShell", alert.Type);
        Assert.Equal("High", alert.SeverityLabel);
        Assert.Equal("/subscriptions/5a7c9e11-2b4d-4f60-8a1c-3e5f7a9b0c2d/resourceGroups/prod-web/providers/Microsoft.Compute/virtualMachines/web-vm-07", alert.Target);
        Assert.Equal("5a7c9e11-2b4d-4f60-8a1c-3e5f7a9b0c2d", alert.Account);
        Assert.Equal("defender:2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b", alert.Trigger.ToString());
        Assert.Equal("defender-2517412345678901234_8c1f2e3d-4b5a-4697-8a7b-6c5d4e3f2a1b", CaptureRequest.ValidateCaseId(alert.CaseId));
        Assert.True(new TriggerPolicy().Evaluate(alert).Accepted);
    }

    [Fact]
    public void CommonAlertSchemaPicksTheVm()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("defender-common-schema.json"));
        Assert.Equal("common-alert-schema", alert.Envelope);
        Assert.Equal("3d2c1b0a-9f8e-4d7c-b6a5-948372615041", alert.Id);
        Assert.Equal("defender-high-on-vms", alert.Type);
        Assert.Equal("High", alert.SeverityLabel);
        Assert.Equal("virtualMachines", alert.ResourceType);
        Assert.EndsWith("/virtualmachines/api-vm-02", alert.Target);
        Assert.True(new TriggerPolicy().Evaluate(alert).Accepted);
    }

    [Fact]
    public void EventGridArrayWithMediumAlertIsRefusedByDefault()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("defender-eventgrid-medium.json"));
        Assert.Equal("event-grid", alert.Envelope);
        Assert.EndsWith("/virtualMachines/desk-17", alert.Target);
        TriggerDecision decision = new TriggerPolicy().Evaluate(alert);
        Assert.False(decision.Accepted);
        Assert.Contains("severity 5 (Medium) is below the threshold 7", decision.Reason);
    }

    [Fact]
    public void DefenderNonVmIsRefused()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("defender-storage-account.json"));
        TriggerDecision decision = new TriggerPolicy().Evaluate(alert);
        Assert.False(decision.Accepted);
        Assert.Contains("(storageAccounts), not a Microsoft.Compute virtual machine", decision.Reason);
    }

    [Theory]
    [InlineData("", "$ (line 1, byte 1)")]
    [InlineData("{\"detail-type\":\"GuardDuty Finding\"}", "$.detail")]
    [InlineData("{\"detail-type\":\"EC2 Instance State-change Notification\",\"detail\":{}}", "$.detail-type")]
    [InlineData("{\"detail-type\":\"GuardDuty Finding\",\"detail\":{\"id\":\"x\",\"type\":\"t\",\"severity\":\"high\",\"resource\":{}}}", "$.detail.severity")]
    [InlineData("{\"detail-type\":\"GuardDuty Finding\",\"detail\":{\"id\":\"x\",\"type\":\"t\",\"severity\":8,\"resource\":{}}}", "$.detail.resource.resourceType")]
    [InlineData("{\"properties\":{\"alertType\":\"VM_X\",\"severity\":\"High\"}}", "$.properties.systemAlertId")]
    [InlineData("{\"name\":\"a\",\"properties\":{\"alertType\":\"VM_X\",\"severity\":\"High\"}}", "$.properties.resourceIdentifiers")]
    [InlineData("{\"schemaId\":\"azureMonitorCommonAlertSchema\",\"data\":{\"essentials\":{\"alertId\":\"/a/b\",\"severity\":\"Sev1\",\"alertRule\":\"r\"}}}", "$.data.essentials.alertTargetIDs")]
    [InlineData("[]", "$")]
    [InlineData("[{},{}]", "$")]
    [InlineData("42", "$")]
    [InlineData("{\"hello\":1}", "$")]
    public void MalformedEventsNameTheField(string json, string path)
    {
        var e = Assert.Throws<TriggerEventException>(() => AlertEventParser.Parse(json));
        Assert.Equal(path, e.Path);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public async Task OversizedAndDeepEventsAreRefused()
    {
        byte[] big = Encoding.UTF8.GetBytes("{\"x\":\"" + new string('a', TriggerLimits.MaxEventBytes) + "\"}");
        Assert.Contains("over the 1048576-byte limit", Assert.Throws<TriggerEventException>(() => AlertEventParser.Parse(big)).Message);
        string deep = new string('[', 200) + new string(']', 200);
        Assert.Contains("not valid JSON", Assert.Throws<TriggerEventException>(() => AlertEventParser.Parse(deep)).Message);
        using var stream = new MemoryStream(big);
        await Assert.ThrowsAsync<TriggerEventException>(() => AlertEventParser.ParseAsync(stream, CancellationToken.None));
    }

    [Fact]
    public void CaseIdReplacesOddCharacters()
    {
        AlertEvent alert = AlertEventParser.Parse("{\"name\":\"a/b c\",\"properties\":{\"alertType\":\"VM_X\",\"severity\":\"High\",\"compromisedEntity\":\"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v\"}}");
        Assert.Equal("defender-a-b-c", alert.CaseId);
        Assert.Equal("virtualMachines", alert.ResourceType);
    }

    // The fixture has the shape Microsoft documents for a common-alert-schema payload with monitoringService
    // "Activity Log - Security" (learn.microsoft.com, azure-monitor/alerts/alerts-payload-samples): essentials with
    // the rule's severity Sev4, and alertContext.properties with only threatStatus, category, threatID, filePath,
    // protectionType, actionTaken, resourceType, severity, compromisedEntity, remediationSteps, attackedResourceType
    // (no alertType, alertDisplayName or systemAlertId). Our own example values, the documented field names.
    [Fact]
    public void ActivityLogSecurityAlertTakesItsSeverityFromAlertContext()
    {
        AlertEvent alert = AlertEventParser.ParseFile(Event("defender-activitylog-security.json"));
        Assert.Equal("common-alert-schema", alert.Envelope);
        Assert.Equal(AlertSource.Defender, alert.Source);
        Assert.Equal("9e8d7c6b-5a4f-4e3d-a2c1-b0a9f8e7d6c5", alert.Id);
        Assert.Equal("Trojan", alert.Type);
        Assert.Equal("High", alert.SeverityLabel);
        Assert.Equal(8.0, alert.Severity);
        Assert.Equal("virtualMachines", alert.ResourceType);
        Assert.EndsWith("/virtualmachines/worker-11", alert.Target);
        Assert.True(new TriggerPolicy().Evaluate(alert).Accepted);
    }

    [Theory]
    [InlineData("Medium", 5.0, false)]
    [InlineData("Low", 2.0, false)]
    [InlineData("High", 8.0, true)]
    public void ActivityLogSecuritySeverityDecidesNotTheRulesSev4(string label, double severity, bool accepted)
    {
        AlertEvent alert = AlertEventParser.Parse(SecurityPayload(label, monitoringService: true));
        Assert.Equal(severity, alert.Severity);
        Assert.Equal(accepted, new TriggerPolicy().Evaluate(alert).Accepted);
    }

    [Fact]
    public void ActivityLogSecurityIsRecognisedByEventSourceAlone()
    {
        AlertEvent alert = AlertEventParser.Parse(SecurityPayload("High", monitoringService: false));
        Assert.Equal("High", alert.SeverityLabel);
    }

    [Fact]
    public void ActivityLogSecurityWithoutSeverityNamesTheField()
    {
        string json = SecurityPayload("High", monitoringService: true).Replace("\"severity\":\"High\",", "", StringComparison.Ordinal);
        var e = Assert.Throws<TriggerEventException>(() => AlertEventParser.Parse(json));
        Assert.Equal("$.data.alertContext.properties.severity", e.Path);
        string bad = SecurityPayload("Severe", monitoringService: true);
        Assert.Equal("$.data.alertContext.properties.severity", Assert.Throws<TriggerEventException>(() => AlertEventParser.Parse(bad)).Path);
    }

    private static string SecurityPayload(string severity, bool monitoringService) =>
        "{\"schemaId\":\"azureMonitorCommonAlertSchema\",\"data\":{\"essentials\":{\"alertId\":\"/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a1\","
        + "\"alertRule\":\"r\",\"severity\":\"Sev4\",\"signalType\":\"Activity Log\","
        + (monitoringService ? "\"monitoringService\":\"Activity Log - Security\"," : "")
        + "\"alertTargetIDs\":[\"/subscriptions/s/resourcegroups/g/providers/microsoft.compute/virtualmachines/v\"]},"
        + "\"alertContext\":{\"eventSource\":\"Security\",\"operationName\":\"Microsoft.Security/locations/alerts/activate/action\","
        + "\"properties\":{\"severity\":\"" + severity + "\",\"compromisedEntity\":\"v\",\"category\":\"Virus\"}}}}";
}
