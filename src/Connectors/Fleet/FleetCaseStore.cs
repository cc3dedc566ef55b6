using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CloudMem.Connectors.Fleet;

/// <summary>One capture of a fleet run: its id (the case directory's name under captures/) and its address (a path or a remote URL).</summary>
internal sealed record FleetCapture(string Id, string Address);

/// <summary>How one capture of a fleet run ended.</summary>
internal sealed record FleetOutcome
{
    public required string Id { get; init; }
    public required string Capture { get; init; }
    /// <summary>pending, done or failed.</summary>
    public required string Status { get; init; }
    /// <summary>Analyses started for this capture (one attempt marker each); a worker killed mid-analysis leaves one more.</summary>
    public int Attempts { get; init; }
    /// <summary>The worker (host:pid) whose analysis is in captures/&lt;id&gt;/, or that failed it.</summary>
    public string? Worker { get; init; }
    public double Seconds { get; init; }
    /// <summary>One line: why the capture failed.</summary>
    public string? Error { get; init; }
    /// <summary>Findings by severity (critical, high, medium, low, info) of the analysis.</summary>
    public Dictionary<string, int>? Findings { get; init; }
}

/// <summary>
/// The case directory of a fleet run on a local (or shared) file system:
/// <c>captures/&lt;id&gt;/</c> holds exactly what <c>analyze --out</c> writes for that capture, and appears only whole: an
/// analysis writes into <c>.fleet/tmp/</c> and renames the finished directory into place (rename(2) of a directory onto
/// a non-empty one fails, so the first finished analysis wins and a second one is discarded). <c>.fleet/attempts/&lt;id&gt;/</c>
/// has one marker per analysis started (worker, pid, time), <c>.fleet/results/&lt;id&gt;.json</c> the outcome, and
/// <c>fleet.json</c> the run's capture list with each capture's status.
/// </summary>
internal sealed class FleetCaseStore
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public FleetCaseStore(string directory)
    {
        Root = Path.GetFullPath(directory);
    }

    public string Root { get; }

    public string Captures => Path.Combine(Root, "captures");

    private string Work => Path.Combine(Root, ".fleet");

    public string FleetJson => Path.Combine(Root, "fleet.json");

    /// <summary>Creates the case's folders (an existing case is continued: its complete captures are kept).</summary>
    public void Create()
    {
        foreach (string dir in new[] { Captures, Path.Combine(Work, "tmp"), Path.Combine(Work, "attempts"), Path.Combine(Work, "results") })
        {
            Directory.CreateDirectory(dir);
        }
    }

    public string CaptureDirectory(string id) => Path.Combine(Captures, id);

    /// <summary>Whether captures/&lt;id&gt;/ is there (it only ever appears complete).</summary>
    public bool IsComplete(string id) => Directory.Exists(CaptureDirectory(id));

    /// <summary>Records that <paramref name="worker"/> starts analysing <paramref name="id"/>; returns the attempt number (1 = first).</summary>
    public int BeginAttempt(string id, string worker)
    {
        string dir = Path.Combine(Work, "attempts", id);
        Directory.CreateDirectory(dir);
        string stamp = DateTime.UtcNow.ToString("yyyyMMddTHHmmss.fffffff", CultureInfo.InvariantCulture);
        string marker = Path.Combine(dir, $"{stamp}-{Safe(worker)}-{Guid.NewGuid():N}.started");
        File.WriteAllText(marker, JsonSerializer.Serialize(new { worker, pid = Environment.ProcessId, startedUtc = DateTime.UtcNow }, Json));
        return Attempts(id);
    }

    /// <summary>Analyses started for <paramref name="id"/> so far.</summary>
    public int Attempts(string id)
    {
        string dir = Path.Combine(Work, "attempts", id);
        return Directory.Exists(dir) ? Directory.GetFiles(dir, "*.started").Length : 0;
    }

    /// <summary>A new, empty directory to analyse into (same file system as captures/, so the rename is atomic). Its
    /// own name is the capture id (inside a directory unique to this attempt), because a case's Parquet files take the
    /// capture id from the name of the directory they are written to.</summary>
    public string NewTemporary(string id, string worker)
    {
        string dir = Path.Combine(Work, "tmp", $"{Safe(worker)}.{Guid.NewGuid():N}", id);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>
    /// Moves the finished <paramref name="temporary"/> into captures/&lt;id&gt;/; false (and <paramref name="temporary"/>
    /// removed) when another analysis of the same capture got there first.
    /// </summary>
    public bool Commit(string temporary, string id)
    {
        try
        {
            Directory.Move(temporary, CaptureDirectory(id));
            Directory.Delete(Path.GetDirectoryName(temporary)!);   // the attempt's own directory, empty now
            return true;
        }
        catch (IOException) when (IsComplete(id))
        {
            DiscardAttempt(temporary);
            return false;
        }
    }

    /// <summary>Removes what <see cref="NewTemporary"/> made for an attempt: the directory unique to the attempt, with
    /// the case directory in it.</summary>
    public static void DiscardAttempt(string temporary) => Discard(Path.GetDirectoryName(temporary)!);

    /// <summary>Removes a directory and everything in it (best effort).</summary>
    public static void Discard(string temporary)
    {
        try
        {
            Directory.Delete(temporary, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Writes the outcome of <paramref name="outcome"/>'s capture (whole: written beside and renamed).</summary>
    public void WriteResult(FleetOutcome outcome) => WriteAtomically(ResultPath(outcome.Id), JsonSerializer.Serialize(outcome, Json));

    /// <summary>The recorded outcome of <paramref name="id"/>, or null.</summary>
    public FleetOutcome? ReadResult(string id)
    {
        try
        {
            return JsonSerializer.Deserialize<FleetOutcome>(File.ReadAllText(ResultPath(id)), Json);
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private string ResultPath(string id) => Path.Combine(Work, "results", id + ".json");

    /// <summary>Writes fleet.json: the run and every capture's outcome, in capture order.</summary>
    public void WriteFleetJson(FleetRunRecord run) => WriteAtomically(FleetJson, JsonSerializer.Serialize(run, Json));

    /// <summary>Removes what dead attempts left in .fleet/tmp (call when no worker is running).</summary>
    public void CleanTemporary()
    {
        string tmp = Path.Combine(Work, "tmp");
        if (Directory.Exists(tmp))
        {
            foreach (string dir in Directory.GetDirectories(tmp))
            {
                Discard(dir);
            }
        }
    }

    private static void WriteAtomically(string path, string text)
    {
        string temporary = path + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        File.WriteAllText(temporary, text);   // UTF-8 without a byte order mark
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>
    /// The capture ids of <paramref name="names"/> (file names or object keys relative to the listed prefix): the name
    /// with every character outside [A-Za-z0-9._-] replaced by '_' (so '/' of a nested key too); names that would
    /// collide get '-' and 8 hex of the SHA-256 of the name appended.
    /// </summary>
    public static IReadOnlyList<string> Ids(IReadOnlyList<string> names)
    {
        string[] plain = names.Select(Safe).ToArray();
        var counts = plain.GroupBy(p => p, StringComparer.OrdinalIgnoreCase).ToDictionary(g => g.Key, g => g.Count(), StringComparer.OrdinalIgnoreCase);
        return plain.Select((p, i) => counts[p] == 1 && p is not ("." or "..")
            ? p
            : p + "-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(names[i])))[..8]).ToArray();
    }

    internal static string Safe(string name)
    {
        var builder = new StringBuilder(name.Length);
        foreach (char c in name)
        {
            builder.Append(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_');
        }
        return builder.Length == 0 ? "_" : builder.ToString();
    }
}

/// <summary>fleet.json: one fleet run.</summary>
internal sealed record FleetRunRecord
{
    public required string Source { get; init; }
    public required string Case { get; init; }
    public required string TaskHub { get; init; }
    public required string Instance { get; init; }
    public required int Workers { get; init; }
    public required DateTimeOffset StartedUtc { get; init; }
    public DateTimeOffset? CompletedUtc { get; init; }
    public double? Seconds { get; init; }
    public required IReadOnlyList<FleetOutcome> Captures { get; init; }
}
