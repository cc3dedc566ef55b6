using System.Diagnostics;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;

namespace CloudMem.Tests.Connectors.Aws;

public sealed class AwsGuestScriptTests
{
    private static readonly GuestScriptInput s_input = new("{{ssm:/cloudmem/ticket/abc123}}", new string('a', 64), 64L << 20, 640L << 20);

    [Fact]
    public void Bash_script_is_valid_bash_and_holds_no_url()
    {
        string script = AwsGuestScript.Bash(s_input);
        string path = Path.Combine(Path.GetTempPath(), $"cloudmem-guest-{Guid.NewGuid():N}.sh");
        File.WriteAllText(path, script);
        try
        {
            using Process bash = Process.Start(new ProcessStartInfo("bash", ["-n", path]) { RedirectStandardError = true })!;
            string errors = bash.StandardError.ReadToEnd();
            bash.WaitForExit();
            Assert.True(bash.ExitCode == 0, errors);
        }
        finally
        {
            File.Delete(path);
        }
        Assert.Contains("ticket_url='{{ssm:/cloudmem/ticket/abc123}}'", script, StringComparison.Ordinal);
        Assert.Contains("part_bytes=67108864", script, StringComparison.Ordinal);
        Assert.DoesNotContain("http", script.Replace("https?", "", StringComparison.Ordinal), StringComparison.OrdinalIgnoreCase);
        Assert.False(new SecretScrubber().ContainsSecret(script));
        Assert.DoesNotContain("\r", script, StringComparison.Ordinal);
        Assert.DoesNotContain("/var/tmp", script, StringComparison.Ordinal);
        Assert.DoesNotContain("TMPDIR", script, StringComparison.Ordinal);
    }

    [Fact]
    public void PowerShell_script_checks_the_tool_hash_before_running_it_and_streams_its_stdout()
    {
        string script = AwsGuestScript.PowerShell(s_input);
        int check = script.IndexOf("Get-FileHash", StringComparison.Ordinal);
        int run = script.IndexOf("ProcessStartInfo -ArgumentList @($tool, '-')", StringComparison.Ordinal);
        Assert.True(check > 0 && run > check);
        // WinPmem writes to its standard output ('-'): no image file on any drive.
        Assert.DoesNotContain("memory.raw", script, StringComparison.Ordinal);
        Assert.Contains("$run.StandardOutput.BaseStream", script, StringComparison.Ordinal);
        Assert.Contains("$PartBytes = [long]67108864", script, StringComparison.Ordinal);
        Assert.Contains("\r\n", script, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{{ssm:/x}}'; rm -rf / #", "a")]
    [InlineData("https://bucket/key?X-Amz-Signature=1", "a")]
    [InlineData("{{ssm:/cloudmem/ticket/x}}", "A")]
    public void Inputs_that_could_break_out_are_refused(string ticket, string shaDigit)
        => Assert.Throws<ArgumentException>(() => AwsGuestScript.Bash(new GuestScriptInput(ticket, string.Concat(Enumerable.Repeat(shaDigit, 64)), 64L << 20, 640L << 20)));

    [Fact]
    public void Part_sizes_outside_s3_limits_are_refused()
    {
        Assert.Throws<ArgumentException>(() => AwsGuestScript.Bash(s_input with { PartBytes = 4L << 20 }));
        Assert.Throws<ArgumentException>(() => AwsGuestScript.Bash(s_input with { PartBytes = (64L << 20) + 1 }));
    }

    [Fact]
    public void Report_is_parsed_and_validated()
    {
        string sha = new('b', 64);
        GuestReport report = GuestReport.Parse($"noise\nCLOUDMEM_MEMTOTAL 1000\nCLOUDMEM_RETRY 2 1 curl=56\nCLOUDMEM_PART 1 0123abcd 10485760\nCLOUDMEM_PART 2 4567ef 5\nCLOUDMEM_RESULT 10485765 {sha} 2\n");
        report.Validate(10 << 20, 100 << 20);
        Assert.Equal(10485765, report.TotalBytes);
        Assert.Equal(1000, report.MemTotal);
        Assert.Equal(["2 1 curl=56"], report.Retries);

        Assert.Contains("no CLOUDMEM_RESULT", Assert.Throws<CaptureException>(() => GuestReport.Parse("CLOUDMEM_PART 1 a 5").Validate(10 << 20, 100 << 20)).Message, StringComparison.Ordinal);
        Assert.Contains("add up", Assert.Throws<CaptureException>(() => GuestReport.Parse($"CLOUDMEM_PART 1 a 5\nCLOUDMEM_RESULT 6 {sha} 1").Validate(10 << 20, 100 << 20)).Message, StringComparison.Ordinal);
        Assert.Contains("reported as number 3", Assert.Throws<CaptureException>(() => GuestReport.Parse($"CLOUDMEM_PART 1 a 10485760\nCLOUDMEM_PART 3 a 5\nCLOUDMEM_RESULT 10485765 {sha} 2").Validate(10 << 20, 100 << 20)).Message, StringComparison.Ordinal);
        Assert.Contains("has 5 bytes", Assert.Throws<CaptureException>(() => GuestReport.Parse($"CLOUDMEM_PART 1 a 5\nCLOUDMEM_PART 2 a 5\nCLOUDMEM_RESULT 10 {sha} 2").Validate(10 << 20, 100 << 20)).Message, StringComparison.Ordinal);
        Assert.Contains("more than the bound", Assert.Throws<CaptureException>(() => GuestReport.Parse($"CLOUDMEM_PART 1 a 5\nCLOUDMEM_RESULT 5 {sha} 1").Validate(10 << 20, 4)).Message, StringComparison.Ordinal);
        Assert.Equal("the guest failed: tool SHA-256 mismatch", Assert.Throws<CaptureException>(() => GuestReport.Parse("CLOUDMEM_ERROR tool SHA-256 mismatch").Validate(10 << 20, 100 << 20)).Message);
    }
}
