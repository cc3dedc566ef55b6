using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Core;

/// <summary>
/// Every plugin's JSON output equals what the CLI printed before the engine-core change (recorded with 8f7bf16 in
/// TestData/golden), on the basic Linux fixture and the attack images of Windows 7, 10 and 11. The only differences
/// allowed are the ones the change made on purpose: absent values written as null instead of omitted, and hex numbers
/// in one form (upper case, no zero padding: compared by value). One recording was edited on purpose since:
/// linux.bash's note saying why it found nothing (it had no rows and no notes); and windows.info on the attack images
/// (issue 16: the builder lays out a low stub, so "DTB source" says the low stub found it and a "Discovery" row was added). The recordings belong to one fixture build (its truth.json) and one builder output (the
/// images' SHA-256): a rebuilt fixture or a changed scenario skips with that reason instead of comparing different memory.
/// </summary>
public sealed class GoldenOutputTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>
{
    private static readonly string s_golden = Path.Combine(AppContext.BaseDirectory, "TestData", "golden");

    /// <summary>Columns that features added after the recording, by plugin: their new values are allowed, all else must match.</summary>
    private static readonly Dictionary<string, string[]> s_addedColumns = new(StringComparer.Ordinal)
    {
        ["linux.hidden_modules"] = ["base", "size"],   // issue 12: the hidden module's core base and size
        ["linux.psscan"] = ["inPidTable"],              // issue 12: tasks off the task list but in the pid table
    };

    public static TheoryData<string> WindowsBuilds => [WindowsSymbols.Win7, WindowsSymbols.Win10, WindowsSymbols.Win11];

    [SkippableFact]
    public void Linux_plugins_print_the_recorded_rows_on_the_basic_fixture()
    {
        string truth = Fixture.Require("truth.json");
        string recorded = File.ReadAllText(Path.Combine(s_golden, "linux-basic", "truth.sha256")).Trim();
        Skip.IfNot(Sha256(File.ReadAllBytes(truth)) == recorded,
            $"the basic fixture was rebuilt (truth.json is not the one the goldens were recorded on, {recorded[..12]})");
        string image = Fixture.Require("memory.lime");
        var failures = new List<string>();
        using RunMappedMemory memory = CaptureOpener.Open(image);
        var context = new PluginContext(memory, image);
        foreach (string file in Directory.GetFiles(Path.Combine(s_golden, "linux-basic"), "linux.*.json").Order())
        {
            string plugin = Path.GetFileNameWithoutExtension(file);
            Compare(plugin, file, Json(PluginRegistry.Get(plugin).Run(context, PluginArguments.None, default)), failures);
        }
        (int exit, string output, string error) = CliRunner.Run(null, null, "info", image, "--output", "json");
        Assert.True(exit == 0, error);
        Compare("info", Path.Combine(s_golden, "linux-basic", "info.json"), output, failures);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableTheory]
    [MemberData(nameof(WindowsBuilds))]
    public void Windows_plugins_print_the_recorded_rows_on_the_attack_images(string guid)
    {
        WindowsAttackImages.Built built = images.Get(guid);
        string expectedHash = File.ReadAllLines(Path.Combine(s_golden, "windows", "images.sha256"))
            .Select(l => l.Split("  ")).Single(p => p[1] == $"attack-{guid}.raw")[0];
        Skip.IfNot(Sha256(File.ReadAllBytes(built.Raw)) == expectedHash, "the attack scenario's image changed since the goldens were recorded");
        var failures = new List<string>();
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        var context = new PluginContext(memory, built.Raw, new SymbolOptions([built.Root]));
        using var output = new TempDir();
        foreach (string file in Directory.GetFiles(Path.Combine(s_golden, "windows", guid), "windows.*.json").Order())
        {
            string plugin = Path.GetFileNameWithoutExtension(file);
            PluginArguments arguments = plugin is "windows.procdump" or "windows.dlldump"
                ? new PluginArguments { OutputDirectory = Directory.CreateDirectory(Path.Combine(output.Path, plugin)).FullName }
                : PluginArguments.None;
            Compare(plugin, file, Json(PluginRegistry.Get(plugin).Run(context, arguments, default)), failures);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static string Json(IReport report)
    {
        using var writer = new StringWriter();
        ReportWriter.Write(report, OutputFormat.Json, writer);
        return writer.ToString();
    }

    private static void Compare(string plugin, string goldenFile, string actualJson, List<string> failures)
    {
        JsonNode? expected = JsonNode.Parse(File.ReadAllText(goldenFile));
        JsonNode? actual;
        try
        {
            actual = JsonNode.Parse(actualJson);
        }
        catch (JsonException e)
        {
            failures.Add($"{plugin}: output is not JSON ({e.Message})");
            return;
        }
        int before = failures.Count;
        Same(plugin, "$", expected, actual, failures);
        if (failures.Count - before > 20)
        {
            failures.RemoveRange(before + 20, failures.Count - before - 20);
        }
    }

    /// <summary>Recursive comparison with the two deliberate changes allowed (see the class summary).</summary>
    internal static void Same(string plugin, string path, JsonNode? expected, JsonNode? actual, List<string> failures)
    {
        switch (expected)
        {
            case null:
                if (actual is not null)
                {
                    failures.Add($"{plugin} {path}: expected null, got {actual.ToJsonString()}");
                }
                return;
            case JsonObject e:
                if (actual is not JsonObject a)
                {
                    failures.Add($"{plugin} {path}: expected an object, got {actual?.ToJsonString() ?? "null"}");
                    return;
                }
                foreach ((string key, JsonNode? value) in e)
                {
                    if (!a.ContainsKey(key))
                    {
                        failures.Add($"{plugin} {path}.{key}: missing");
                        continue;
                    }
                    Same(plugin, $"{path}.{key}", value, a[key], failures);
                }
                string[] added = s_addedColumns.GetValueOrDefault(plugin) ?? [];
                foreach ((string key, JsonNode? value) in a.Where(p => !e.ContainsKey(p.Key) && p.Value is not null && !added.Contains(p.Key)))
                {
                    failures.Add($"{plugin} {path}.{key}: new value {value!.ToJsonString()} (only nulls may be added)");
                }
                return;
            case JsonArray e:
                if (actual is not JsonArray items || items.Count != e.Count)
                {
                    failures.Add($"{plugin} {path}: expected {e.Count} items, got {(actual as JsonArray)?.Count.ToString() ?? actual?.ToJsonString() ?? "null"}");
                    return;
                }
                for (int i = 0; i < e.Count; i++)
                {
                    Same(plugin, $"{path}[{i}]", e[i], items[i], failures);
                }
                return;
            default:
                if (!SameValue(expected.ToJsonString(), actual?.ToJsonString()))
                {
                    failures.Add($"{plugin} {path}: expected {expected.ToJsonString()}, got {actual?.ToJsonString() ?? "null"}");
                }
                return;
        }
    }

    private static bool SameValue(string expected, string? actual)
    {
        if (actual is null)
        {
            return false;
        }
        if (expected == actual)
        {
            return true;
        }
        string ex = expected.Trim('"'), ac = actual.Trim('"');
        return (ex.StartsWith("0x", StringComparison.OrdinalIgnoreCase) && string.Equals(ex, ac, StringComparison.OrdinalIgnoreCase))
            || (HexNumber(ex) is { } e && HexNumber(ac) == e)
            || (Path.IsPathRooted(ex) && Path.IsPathRooted(ac) && Path.GetFileName(ex) == Path.GetFileName(ac));
    }

    /// <summary>The value of a "0x..." string: typed rows print hex without the zero padding some plugins used
    /// (linux.maps' "0x00400000" is now "0x400000"), the same number.</summary>
    private static ulong? HexNumber(string text)
        => text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) && text.Length > 2
            && ulong.TryParse(text.AsSpan(2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out ulong value)
            ? value : null;

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
