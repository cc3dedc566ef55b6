using System.Security.Cryptography;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;
using Microsoft.Data.Sqlite;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// cloudmem analyze as a user runs it: the summary and the case directory, never overwriting a case, one-line errors for
/// a bad user rule and for a capture whose hash does not match its custody manifest, the manifest's facts in the case.
/// </summary>
public sealed class AnalyzeCliTests(AnalyzedImages images) : IClassFixture<AnalyzedImages>
{
    private string Symbols => images.WindowsBuilt("clean").Root;

    [SkippableFact]
    public void Analyze_prints_a_summary_and_writes_the_case_and_never_overwrites_it()
    {
        string image = images.WindowsImage("attack");
        string directory = Path.Combine(images.Root, "cli-attack.case");
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "analyze", image, "--out", directory, "--symbols", Symbols);
        Assert.True(exit == 0, stderr);
        string[] lines = stdout.Split('\n');
        Assert.StartsWith($"{image}: Windows (ntkrnlmp.pdb 606FF669409B00F7FC8C61A9C1670129-1 at 0x", lines[0], StringComparison.Ordinal);
        Assert.Equal("findings: 3 critical, 6 high, 2 medium, 0 low, 0 info", lines[1]);
        Assert.StartsWith("  CRITICAL CM-WIN-005 T1055.012 pid 844 (svchost.exe)", lines[2], StringComparison.Ordinal);
        Assert.Contains($"case: {directory} (report.html, report.md, case.sqlite, findings.jsonl, timeline.body;", stdout, StringComparison.Ordinal);
        Assert.Matches(@"\n  windows\.malfind +\d+\.\d\ds  3 rows\n", stdout);
        Assert.Equal(["captures.parquet", "case.sqlite", "connections.parquet", "findings.jsonl", "findings.parquet", "processes.parquet", "report.html", "report.md",
            "runs.parquet", "timeline.body", "yara.parquet"], Directory.GetFiles(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(11, File.ReadAllLines(Path.Combine(directory, "findings.jsonl")).Length);

        DateTime written = File.GetLastWriteTimeUtc(Path.Combine(directory, "case.sqlite"));
        (exit, stdout, stderr) = CliRunner.Run(null, null, "analyze", image, "--out", directory, "--symbols", Symbols);
        Assert.Equal(2, exit);
        Assert.Equal($"cloudmem: error: {directory} exists and is not empty (a case is never overwritten; choose another --out)", stderr.TrimEnd());
        Assert.Equal("", stdout);
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(directory, "case.sqlite")));
    }

    [Fact]
    public void A_capture_with_no_kernel_fails_with_one_line_and_leaves_no_case_directory()
    {
        string root = Directory.CreateTempSubdirectory("cloudmem-analyze-").FullName;
        try
        {
            string image = Path.Combine(root, "noise.raw");
            var noise = new byte[8 << 20];
            new Random(7).NextBytes(noise);
            File.WriteAllBytes(image, noise);
            string directory = Path.Combine(root, "noise.case");
            (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "analyze", image, "--out", directory, "--no-cache");
            Assert.Equal(2, exit);
            Assert.Equal("", stdout);
            string line = Assert.Single(stderr.TrimEnd().Split('\n'));
            Assert.StartsWith($"cloudmem: error: {image}: no Linux kernel", line, StringComparison.Ordinal);
            Assert.False(Directory.Exists(directory), "an analysis that found nothing must not leave an empty case directory");
            Assert.Equal(noise, File.ReadAllBytes(image));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [SkippableFact]
    public void A_bad_user_rule_stops_analyze_with_one_line_before_anything_runs()
    {
        string rules = Directory.CreateDirectory(Path.Combine(images.Root, "bad-rules")).FullName;
        File.WriteAllText(Path.Combine(rules, "mine.json"), """
            { "rules": [ { "id": "MINE-7", "title": "t", "severity": "high", "technique": "T1059", "confidence": 0.9, "summary": "{Process}",
                           "plugin": "windows.cmdline", "where": [ { "column": "Arguments", "op": "regex", "value": "x" } ] } ] }
            """);
        string directory = Path.Combine(images.Root, "bad-rules.case");
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "analyze", images.WindowsImage("clean"), "--out", directory, "--rules", rules, "--symbols", Symbols);
        Assert.Equal(2, exit);
        Assert.Equal($"cloudmem: error: {Path.Combine(rules, "mine.json")}: rule MINE-7: column 'Arguments' is not a column of windows.cmdline", stderr.TrimEnd().Split(" (did")[0]);
        Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.False(Directory.Exists(directory));
    }

    [SkippableFact]
    public void A_custody_manifest_is_verified_and_its_facts_go_into_the_case()
    {
        string image = images.WindowsImage("clean");
        string folder = Directory.CreateDirectory(Path.Combine(images.Root, "custody")).FullName;
        string sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(image)));
        string manifest = Write(folder, "aws-i-0abc-IR-42.custody.json", image, sha);
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "analyze", manifest, "--symbols", Symbols);
        Assert.True(exit == 0, stderr);
        string directory = Path.Combine(folder, "aws-i-0abc-IR-42.case");
        Assert.Contains($"case: {directory} ", stdout, StringComparison.Ordinal);
        using (var connection = new SqliteConnection($"Data Source={Path.Combine(directory, "case.sqlite")};Mode=ReadOnly;Pooling=False"))
        {
            connection.Open();
            using SqliteCommand command = connection.CreateCommand();
            command.CommandText = "SELECT (SELECT value FROM custody WHERE name = 'case') || '|' || (SELECT value FROM custody WHERE name = 'operator') || '|' || "
                + "(SELECT value FROM provenance WHERE name = 'sha256') || '|' || (SELECT value FROM custody WHERE name = 'evidence sha256 verified at analysis')";
            Assert.Equal($"IR-42|arn:aws:iam::111122223333:user/alice (sts)|{sha}|yes", command.ExecuteScalar());
        }

        string bad = Write(folder, "aws-i-0abc-IR-43.custody.json", image, new string('0', 64));
        (exit, stdout, stderr) = CliRunner.Run(null, null, "analyze", bad, "--symbols", Symbols);
        Assert.Equal(2, exit);
        Assert.Equal($"cloudmem: error: {image}: SHA-256 {sha} does not match {new string('0', 64)} recorded in {bad}; refusing to analyse a capture that is not the one in custody",
            stderr.TrimEnd());
        Assert.False(Directory.Exists(Path.Combine(folder, "aws-i-0abc-IR-43.case")));
    }

    private static string Write(string folder, string name, string image, string sha)
    {
        var manifest = new CustodyManifest
        {
            CaseId = "IR-42",
            Trigger = new TriggerRecord("manual", null),
            Provider = "aws",
            TargetId = "i-0abc",
            Method = "ssm-avml",
            Operator = new OperatorRecord("arn:aws:iam::111122223333:user/alice", "sts"),
            Host = new HostRecord("ws-1", "0.9.0", "Linux"),
            Evidence = [new EvidenceRecord("memory.raw", "s3://evidence/IR-42/memory.raw", image, new FileInfo(image).Length, sha, sha, true, "raw", null)],
            StartedUtc = new DateTimeOffset(2024, 7, 7, 11, 0, 0, TimeSpan.Zero),
            CompletedUtc = new DateTimeOffset(2024, 7, 7, 11, 5, 0, TimeSpan.Zero),
            Status = CustodyStatus.Completed,
        };
        string path = Path.Combine(folder, name);
        File.WriteAllText(path, manifest.ToJson());
        return path;
    }
}
