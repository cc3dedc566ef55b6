using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// The fake ARM's managed disks and snapshots, in the documented REST shapes: PUT snapshots/{name} ("Snapshots - Create
/// Or Update": creationData.createOption Copy or CopyStart, sourceResourceId a disk or, for a copy, a snapshot that
/// exists; 202 with Azure-AsyncOperation and Location, provisioningState Creating until the operation ends), GET,
/// POST beginGetAccess ("Grant Access": 202, its result read from the Location URL as {"accessSAS": ...}, the URL
/// from <see cref="SnapshotAccess"/>) and POST endGetAccess ("Revoke Access").
/// </summary>
public sealed partial class FakeArm
{
    /// <summary>How long a snapshot stays Creating.</summary>
    public TimeSpan SnapshotDelay { get; set; } = TimeSpan.FromMilliseconds(300);

    /// <summary>The read SAS URL beginGetAccess hands out for a snapshot id (null: the fake answers 409 as for a snapshot without data).</summary>
    public Func<string, string?>? SnapshotAccess { get; set; }

    /// <summary>Snapshot ids whose access was granted and not yet revoked.</summary>
    public ConcurrentDictionary<string, int> OpenAccess { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Snapshot ids whose access was revoked (endGetAccess), in order.</summary>
    public ConcurrentQueue<string> RevokedAccess { get; } = new();

    /// <summary>Adds a managed disk resource in resource group <paramref name="rg"/> (its full id); returns the id.</summary>
    public string AddDisk(string rg, string name, int sizeGb = 32)
    {
        string id = $"{rg}/providers/Microsoft.Compute/disks/{name}";
        _resources[id] = new JsonObject
        {
            ["id"] = id, ["name"] = name, ["type"] = "Microsoft.Compute/disks", ["location"] = "westeurope",
            ["properties"] = new JsonObject { ["diskSizeGB"] = sizeGb, ["provisioningState"] = "Succeeded", ["diskState"] = "Attached" },
        };
        return id;
    }

    /// <summary>Attaches a new managed data disk to a VM at <paramref name="lun"/>; returns the disk id.</summary>
    public string AddDataDisk(string vmId, string name, int lun)
    {
        string rg = vmId[..vmId.IndexOf("/providers/", StringComparison.Ordinal)];
        string id = AddDisk(rg, name, 64);
        JsonObject storage = _resources[vmId]["properties"]!["storageProfile"]!.AsObject();
        if (storage["dataDisks"] is not JsonArray disks)
        {
            storage["dataDisks"] = disks = new JsonArray();
        }
        disks.Add(new JsonObject { ["lun"] = lun, ["name"] = name, ["createOption"] = "Attach", ["managedDisk"] = new JsonObject { ["id"] = id } });
        return id;
    }

    private static readonly System.Text.RegularExpressions.Regex s_snapshot = new(
        "^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Compute/snapshots/[^/]+)(/beginGetAccess|/endGetAccess)?$",
        System.Text.RegularExpressions.RegexOptions.IgnoreCase);

    /// <summary>Serves snapshot PUT and the two access actions; false for anything else (GET is the generic resource read).</summary>
    private async Task<bool> SnapshotAsync(HttpContext context, string method, string path, string body)
    {
        System.Text.RegularExpressions.Match match = s_snapshot.Match(path);
        if (!match.Success || method is not ("PUT" or "POST"))
        {
            return false;
        }
        string id = match.Groups[1].Value;
        string action = match.Groups[2].Value;
        if (method == "PUT" && action.Length == 0)
        {
            await CreateSnapshotAsync(context, id, JsonNode.Parse(body)!.AsObject());
            return true;
        }
        if (method != "POST" || action.Length == 0)
        {
            return false;
        }
        if (!_resources.TryGetValue(id, out JsonObject? snapshot))
        {
            await NotFound(context, id);
            return true;
        }
        if (action.Equals("/beginGetAccess", StringComparison.OrdinalIgnoreCase))
        {
            JsonObject grant = JsonNode.Parse(body)!.AsObject();
            string? sas = SnapshotAccess?.Invoke(id);
            if (grant["access"]?.GetValue<string>() != "Read" || grant["durationInSeconds"]?.GetValue<int>() is not > 0 || sas is null)
            {
                await Json(context, 409, new JsonObject { ["error"] = Error("OperationNotAllowed", $"no read access to {id} ({grant.ToJsonString()})") });
                return true;
            }
            snapshot["properties"]!["diskState"] = "ActiveSAS";
            OpenAccess[id] = 1;
            Complete(context, new Operation { Result = new JsonObject { ["accessSAS"] = sas } });
            return true;
        }
        snapshot["properties"]!["diskState"] = "Unattached";
        OpenAccess.TryRemove(id, out _);
        RevokedAccess.Enqueue(id);
        Complete(context, new Operation());
        return true;
    }

    private async Task CreateSnapshotAsync(HttpContext context, string id, JsonObject input)
    {
        JsonObject? creation = input["properties"]?["creationData"]?.AsObject();
        string? option = creation?["createOption"]?.GetValue<string>();
        string? source = creation?["sourceResourceId"]?.GetValue<string>();
        bool incremental = input["properties"]?["incremental"]?.GetValue<bool>() == true;
        if (option is not ("Copy" or "CopyStart") || source is null || !_resources.TryGetValue(source, out JsonObject? from)
            || (option == "CopyStart" && !incremental))
        {
            await Json(context, 400, new JsonObject { ["error"] = Error("InvalidParameter", $"creationData {creation?.ToJsonString() ?? "missing"}: createOption Copy or CopyStart (incremental only) from an existing disk or snapshot") });
            return;
        }
        if (_resources.TryGetValue(id, out JsonObject? existing)
            && !string.Equals(existing["properties"]?["creationData"]?["sourceResourceId"]?.GetValue<string>(), source, StringComparison.OrdinalIgnoreCase))
        {
            await Json(context, 409, new JsonObject { ["error"] = Error("PropertyChangeNotAllowed", "Changing property 'sourceResourceId' is not allowed.") });
            return;
        }
        JsonObject snapshot = input.DeepClone().AsObject();
        snapshot["id"] = id;
        snapshot["name"] = id[(id.LastIndexOf('/') + 1)..];
        snapshot["type"] = "Microsoft.Compute/snapshots";
        JsonObject props = snapshot["properties"]!.AsObject();
        props["provisioningState"] = "Creating";
        props["uniqueId"] = Guid.NewGuid().ToString();
        props["timeCreated"] = DateTimeOffset.UtcNow.ToString("O");
        props["diskSizeGB"] = from["properties"]?["diskSizeGB"]?.GetValue<int>() ?? 32;
        props["diskState"] = "Unattached";
        if (option == "CopyStart")
        {
            props["completionPercent"] = 0.0;
        }
        _resources[id] = snapshot;
        var op = new Operation();
        string opId = Start(op);
        _ = Task.Run(async () =>
        {
            await Task.Delay(SnapshotDelay);
            props["provisioningState"] = "Succeeded";
            if (option == "CopyStart")
            {
                props["completionPercent"] = 42.5;
            }
            op.Status = "Succeeded";
            op.Done = true;
        });
        Accepted(context, opId);
        await Json(context, 202, snapshot);
    }

    /// <summary>Answers 202 for an operation that completes after a short delay.</summary>
    private void Complete(HttpContext context, Operation op)
    {
        string opId = Start(op);
        _ = Task.Run(async () =>
        {
            await Task.Delay(100);
            op.Status = "Succeeded";
            op.Done = true;
        });
        Accepted(context, opId);
    }
}
