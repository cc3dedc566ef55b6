using System.Text;
using System.Text.Json;

namespace CloudMem.Connectors.Triggers;

/// <summary>
/// Reads a GuardDuty finding or a Defender for Cloud alert, whichever it is, into an <see cref="AlertEvent"/>.
/// Accepted shapes: an EventBridge event whose detail-type is "GuardDuty Finding" (detail = the finding), a raw
/// finding (schemaVersion, id, type, severity, resource); a Defender alert resource (id/name, properties with
/// systemAlertId, alertType or alertName, severity, resourceIdentifiers[] or compromisedEntity), the Azure Monitor
/// common alert schema (data.essentials), an Event Grid event or a one-element array of them whose data is one of
/// the above, and an Azure Functions Event Grid binding's {"eventGridEvent": ...}. Input is bounded
/// (<see cref="TriggerLimits"/>); errors name the JSON path.
/// </summary>
public static class AlertEventParser
{
    private static readonly JsonDocumentOptions s_options = new() { MaxDepth = TriggerLimits.MaxDepth, CommentHandling = JsonCommentHandling.Disallow };

    /// <summary>Parses UTF-8 JSON.</summary>
    /// <exception cref="TriggerEventException">too large, not JSON, or not a shape we know (message names the field).</exception>
    public static AlertEvent Parse(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length > TriggerLimits.MaxEventBytes)
        {
            throw new TriggerEventException("$", $"event of {utf8.Length} bytes is over the {TriggerLimits.MaxEventBytes}-byte limit");
        }
        try
        {
            using JsonDocument document = JsonDocument.Parse(utf8.ToArray(), s_options);
            return Parse(new JsonAt(document.RootElement, "$"), 0);
        }
        catch (JsonException e)
        {
            throw new TriggerEventException($"$ (line {(e.LineNumber ?? 0) + 1}, byte {(e.BytePositionInLine ?? 0) + 1})", $"not valid JSON: {FirstLine(e.Message)}", e);
        }
    }

    /// <summary>Parses JSON text.</summary>
    public static AlertEvent Parse(string json) => Parse(Encoding.UTF8.GetBytes(json));

    /// <summary>Reads a file (bounded) and parses it.</summary>
    public static AlertEvent ParseFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new TriggerEventException("$", $"{path}: no such file");
        }
        if (info.Length > TriggerLimits.MaxEventBytes)
        {
            throw new TriggerEventException("$", $"{path}: {info.Length} bytes is over the {TriggerLimits.MaxEventBytes}-byte limit");
        }
        return Parse(File.ReadAllBytes(path));
    }

    /// <summary>Reads a whole stream up to the limit and parses it.</summary>
    public static async Task<AlertEvent> ParseAsync(Stream stream, CancellationToken cancellationToken)
    {
        byte[] bytes = await ReadBoundedAsync(stream, TriggerLimits.MaxEventBytes, cancellationToken).ConfigureAwait(false);
        return Parse(bytes);
    }

    /// <summary>Reads at most <paramref name="limit"/> bytes; more is an error (never buffers more than limit + 1).</summary>
    public static async Task<byte[]> ReadBoundedAsync(Stream stream, int limit, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[81920];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                throw new TriggerEventException("$", $"event is over the {limit}-byte limit");
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static string FirstLine(string text) => text.Split('\n')[0].Trim();

    private static AlertEvent Parse(JsonAt root, int depth)
    {
        if (depth > 3)
        {
            throw new TriggerEventException(root.Path, "envelopes nested too deeply");
        }
        if (root.Element.ValueKind == JsonValueKind.Array)
        {
            JsonAt[] items = [.. root.Items().Take(2)];
            if (items.Length != 1)
            {
                throw new TriggerEventException(root.Path, items.Length == 0 ? "empty array" : "more than one event in the array (one capture per event)");
            }
            return Parse(items[0], depth + 1);
        }
        if (!root.IsObject)
        {
            throw new TriggerEventException(root.Path, $"expected an object, found {root.Element.ValueKind.ToString().ToLowerInvariant()}");
        }
        // EventBridge envelope.
        if (root.OptionalString("detail-type") is { } detailType)
        {
            if (!detailType.Equals("GuardDuty Finding", StringComparison.Ordinal))
            {
                throw new TriggerEventException($"{root.Path}.detail-type", $"'{detailType}' is not 'GuardDuty Finding'");
            }
            return GuardDuty(root.Required("detail"), "eventbridge");
        }
        // Azure Functions Event Grid binding, Event Grid / CloudEvents event.
        if (root.Optional("eventGridEvent") is { } binding)
        {
            return Parse(binding, depth + 1) with { Envelope = "event-grid" };
        }
        if (root.Optional("data") is { } data && (root.Optional("eventType") is not null || root.Optional("specversion") is not null))
        {
            return Parse(data, depth + 1) with { Envelope = "event-grid" };
        }
        // Azure Monitor common alert schema.
        if (root.Optional("schemaId") is not null || (root.Optional("data") is { } d && d.Optional("essentials") is not null))
        {
            return CommonAlertSchema(root);
        }
        // Defender's own alert resource.
        if (root.Optional("properties") is { } properties && (properties.Optional("systemAlertId") is not null || properties.Optional("alertType") is not null || properties.Optional("alertName") is not null || properties.Optional("alertDisplayName") is not null))
        {
            return Defender(root, properties);
        }
        // Raw GuardDuty finding.
        if (root.Optional("resource") is not null && root.Optional("severity") is not null && root.Optional("type") is not null)
        {
            return GuardDuty(root, "finding");
        }
        throw new TriggerEventException(root.Path, "not a GuardDuty finding (detail-type, or id/type/severity/resource), a Defender alert (properties.systemAlertId/alertType) or an Azure Monitor common alert (data.essentials)");
    }

    private static AlertEvent GuardDuty(JsonAt finding, string envelope)
    {
        string id = finding.RequiredString("id");
        string type = finding.RequiredString("type");
        double severity = finding.Required("severity").Number();
        JsonAt resource = finding.Required("resource");
        string resourceType = resource.RequiredString("resourceType");
        string? instanceId = null;
        if (resourceType.Equals("Instance", StringComparison.Ordinal))
        {
            instanceId = resource.Required("instanceDetails").RequiredString("instanceId");
        }
        return new AlertEvent
        {
            Source = AlertSource.GuardDuty,
            Id = id,
            Type = type,
            Severity = severity,
            SeverityLabel = severity switch { >= 9 => "Critical", >= 7 => "High", >= 4 => "Medium", _ => "Low" },
            ResourceType = resourceType,
            Target = instanceId,
            Region = finding.OptionalString("region"),
            Account = finding.OptionalString("accountId"),
            Envelope = envelope,
        };
    }

    private static AlertEvent Defender(JsonAt alert, JsonAt properties)
    {
        string id = properties.OptionalString("systemAlertId") ?? alert.OptionalString("name") ?? throw new TriggerEventException($"{properties.Path}.systemAlertId", "missing (and no name)");
        string type = properties.OptionalString("alertType") ?? properties.OptionalString("alertName") ?? properties.OptionalString("alertDisplayName")
            ?? throw new TriggerEventException($"{properties.Path}.alertType", "missing (and no alertName / alertDisplayName)");
        string label = properties.RequiredString("severity");
        string? target = null;
        if (properties.Optional("resourceIdentifiers") is { } identifiers)
        {
            foreach (JsonAt identifier in identifiers.Items())
            {
                if (string.Equals(identifier.OptionalString("type"), "AzureResource", StringComparison.OrdinalIgnoreCase))
                {
                    target = identifier.RequiredString("azureResourceId");
                    break;
                }
            }
        }
        // compromisedEntity is usually a display name; it is used only when it is a resource id.
        if (target is null && properties.OptionalString("compromisedEntity") is { } entity && entity.StartsWith("/subscriptions/", StringComparison.OrdinalIgnoreCase))
        {
            target = entity;
        }
        if (target is null)
        {
            throw new TriggerEventException($"{properties.Path}.resourceIdentifiers", "no AzureResource identifier (and compromisedEntity is not a resource id)");
        }
        return FromAzure(id, type, label, target, "defender", $"{properties.Path}.severity");
    }

    private static AlertEvent CommonAlertSchema(JsonAt root)
    {
        JsonAt essentials = root.Required("data").Required("essentials");
        string alertId = essentials.RequiredString("alertId");
        string id = alertId.TrimEnd('/').Split('/')[^1];
        string type = essentials.OptionalString("alertRule") ?? essentials.RequiredString("essentialsVersion");
        string label = essentials.RequiredString("severity");
        string? target = null;
        JsonAt targets = essentials.Required("alertTargetIDs");
        foreach (JsonAt item in targets.Items())
        {
            string value = item.String();
            target ??= value;
            if (value.Contains("/providers/Microsoft.Compute/virtualMachines/", StringComparison.OrdinalIgnoreCase))
            {
                target = value;
                break;
            }
        }
        if (target is null)
        {
            throw new TriggerEventException(targets.Path, "empty");
        }
        JsonAt? context = root.Required("data").Optional("alertContext");
        // A Defender alert forwarded by an activity log alert on the Security category ("Activity Log - Security"):
        // the rule's own severity in essentials is always Sev4 for activity log alerts, so the alert's severity is
        // read from alertContext.properties, which Microsoft documents with only a few fields (severity,
        // compromisedEntity, resourceType, category, threatStatus, ...; no alertType or systemAlertId).
        if (IsSecurityActivityLog(essentials, context))
        {
            JsonAt inner = context!.Value.Required("properties");
            JsonAt severity = inner.Required("severity");
            string securityType = inner.OptionalString("alertType") ?? inner.OptionalString("alertDisplayName") ?? inner.OptionalString("category") ?? type;
            return FromAzure(inner.OptionalString("systemAlertId") ?? id, securityType, severity.String(), target, "common-alert-schema", severity.Path);
        }
        // Another alert that carries Defender's own fields in alertContext.properties (a log search alert forwarding
        // the SecurityAlert table, a Logic App): its severity, type and id are preferred to the alert rule's.
        if (context?.Optional("properties") is { } props && props.Optional("severity") is { } innerSeverity
            && (props.Optional("systemAlertId") is not null || props.Optional("alertType") is not null || props.Optional("alertDisplayName") is not null))
        {
            return FromAzure(
                props.OptionalString("systemAlertId") ?? id,
                props.OptionalString("alertType") ?? props.OptionalString("alertDisplayName") ?? type,
                innerSeverity.String(),
                target,
                "common-alert-schema",
                innerSeverity.Path);
        }
        return FromAzure(id, type, label, target, "common-alert-schema", $"{essentials.Path}.severity");
    }

    /// <summary>monitoringService "Activity Log - Security", or an activity-log context whose eventSource is Security.</summary>
    private static bool IsSecurityActivityLog(JsonAt essentials, JsonAt? context)
    {
        if (essentials.Optional("monitoringService") is { Element.ValueKind: JsonValueKind.String } service
            && string.Equals(service.Element.GetString(), "Activity Log - Security", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }
        return context?.Optional("eventSource") is { Element.ValueKind: JsonValueKind.String } source
            && string.Equals(source.Element.GetString(), "Security", StringComparison.OrdinalIgnoreCase);
    }

    private static AlertEvent FromAzure(string id, string type, string label, string target, string envelope, string severityPath)
    {
        // Defender: Informational/Low/Medium/High; common schema: Sev0 (critical) .. Sev4 (verbose).
        (double severity, string name) = label.ToLowerInvariant() switch
        {
            "high" => (8.0, "High"),
            "medium" => (5.0, "Medium"),
            "low" => (2.0, "Low"),
            "informational" => (0.0, "Informational"),
            "sev0" => (9.0, "Critical"),
            "sev1" => (8.0, "High"),
            "sev2" => (5.0, "Medium"),
            "sev3" => (2.0, "Low"),
            "sev4" => (0.0, "Informational"),
            _ => throw new TriggerEventException(severityPath, $"'{label}' is not Informational/Low/Medium/High or Sev0-Sev4"),
        };
        string[] segments = target.Split('/', StringSplitOptions.RemoveEmptyEntries);
        string resourceType = segments.Length >= 2 ? segments[^2] : "unknown";
        string? subscription = segments.Length >= 2 && segments[0].Equals("subscriptions", StringComparison.OrdinalIgnoreCase) ? segments[1] : null;
        bool isVm = segments.Length == 8 && segments[4].Equals("providers", StringComparison.OrdinalIgnoreCase)
            && segments[5].Equals("Microsoft.Compute", StringComparison.OrdinalIgnoreCase) && segments[6].Equals("virtualMachines", StringComparison.OrdinalIgnoreCase);
        return new AlertEvent
        {
            Source = AlertSource.Defender,
            Id = id,
            Type = type,
            Severity = severity,
            SeverityLabel = name,
            ResourceType = isVm ? "virtualMachines" : resourceType,
            Target = target,
            Account = subscription,
            Envelope = envelope,
        };
    }
}
