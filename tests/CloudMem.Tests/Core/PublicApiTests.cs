using System.Reflection;
using CloudMem.Tests.Support;
using PublicApiGenerator;

namespace CloudMem.Tests.Core;

/// <summary>
/// The public API of each packed library, approved in tests/CloudMem.Tests/Api/&lt;Assembly&gt;.approved.txt: a change to
/// a public type or member shows up as a diff of that file in review. When the change is intended, accept it with
/// <c>CLOUDMEM_ACCEPT_API=1 dotnet test tests/CloudMem.Tests --filter "FullyQualifiedName~PublicApiTests"</c>
/// (rewrites the files) and commit them with the change.
/// </summary>
public sealed class PublicApiTests
{
    public static TheoryData<string> Libraries => new()
    {
        typeof(CloudMem.VmStateParsers.CaptureOpener).Assembly.GetName().Name!,
        typeof(CloudMem.Engine.Core.PluginRegistry).Assembly.GetName().Name!,
        typeof(CloudMem.Connectors.Core.CaptureException).Assembly.GetName().Name!,
        typeof(CloudMem.RemoteCaptures.RemoteCaptureOpener).Assembly.GetName().Name!,
    };

    [Theory]
    [MemberData(nameof(Libraries))]
    public void Public_api_matches_the_approved_file(string assemblyName)
    {
        Assembly assembly = Assembly.Load(assemblyName);
        string actual = Normalize(assembly.GeneratePublicApi(new ApiGeneratorOptions { IncludeAssemblyAttributes = false }));
        string path = Path.Combine(Fixture.RepoRoot, "tests", "CloudMem.Tests", "Api", assemblyName + ".approved.txt");
        if (Environment.GetEnvironmentVariable("CLOUDMEM_ACCEPT_API") == "1")
        {
            File.WriteAllText(path, actual);
            return;
        }
        string approved = File.Exists(path) ? Normalize(File.ReadAllText(path)) : "";
        if (approved != actual)
        {
            Assert.Fail($"The public API of {assemblyName} differs from {path}:\n{Diff(approved, actual)}\n"
                + "If the change is intended, re-run with CLOUDMEM_ACCEPT_API=1 "
                + "(dotnet test tests/CloudMem.Tests --filter \"FullyQualifiedName~PublicApiTests\") and commit the rewritten file.");
        }
    }

    [Fact]
    public void Library_code_never_writes_to_the_console()
    {
        // Libraries report through the ILogger a caller injects (PluginContext, LinuxOptions) or through typed
        // notes and results; only the CLI owns the console.
        var consoleUse = new System.Text.RegularExpressions.Regex(@"\bConsole\s*\.\s*(Write|Out|Error|OpenStandard|SetOut|SetError)");
        var found = new List<string>();
        foreach (string library in new[] { "VmStateParsers", "Engine", "Connectors", "RemoteCaptures" })
        {
            string root = Path.Combine(Fixture.RepoRoot, "src", library);
            foreach (string file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories)
                .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
            {
                string[] lines = File.ReadAllLines(file);
                for (int i = 0; i < lines.Length; i++)
                {
                    if (!lines[i].TrimStart().StartsWith("//", StringComparison.Ordinal) && consoleUse.IsMatch(lines[i]))
                    {
                        found.Add($"{Path.GetRelativePath(Fixture.RepoRoot, file)}:{i + 1}: {lines[i].Trim()}");
                    }
                }
            }
        }
        Assert.True(found.Count == 0, "library code writes to the console (inject an ILogger instead):\n" + string.Join('\n', found));
    }

    private static string Normalize(string text) => text.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n') + "\n";

    /// <summary>
    /// The changed stretch (common first and last lines trimmed): its lines missing from the new API (-) and new in it
    /// (+), with line numbers in their file; every line of the stretch when it only moved lines around; at most 80.
    /// </summary>
    private static string Diff(string approved, string actual)
    {
        string[] before = approved.Split('\n');
        string[] after = actual.Split('\n');
        int head = 0;
        while (head < before.Length && head < after.Length && before[head] == after[head])
        {
            head++;
        }
        int tail = 0;
        while (tail < before.Length - head && tail < after.Length - head && before[^(tail + 1)] == after[^(tail + 1)])
        {
            tail++;
        }
        var removed = before[head..^tail].Select((line, i) => (Line: line, Number: head + i + 1)).ToList();
        var added = after[head..^tail].Select((line, i) => (Line: line, Number: head + i + 1)).ToList();
        var removedSet = removed.Select(x => x.Line).ToHashSet(StringComparer.Ordinal);
        var addedSet = added.Select(x => x.Line).ToHashSet(StringComparer.Ordinal);
        var lines = removed.Where(x => !addedSet.Contains(x.Line)).Select(x => $"- {x.Number,6}: {x.Line}")
            .Concat(added.Where(x => !removedSet.Contains(x.Line)).Select(x => $"+ {x.Number,6}: {x.Line}"))
            .ToList();
        if (lines.Count == 0)
        {
            lines = [.. removed.Select(x => $"- {x.Number,6}: {x.Line}"), .. added.Select(x => $"+ {x.Number,6}: {x.Line}")];
        }
        return string.Join('\n', lines.Take(80)) + (lines.Count > 80 ? $"\n  ... and {lines.Count - 80} more lines" : "");
    }
}
