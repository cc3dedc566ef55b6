using System.Text.RegularExpressions;

namespace CloudMem.Tests.Connectors;

/// <summary>
/// Runs a guest script under strace (following every child: the tool, curl, dd, sha256sum) and lists every file
/// system object it created or opened for writing. The fakes (FakeArm, FakeAws) put <see cref="Prefix"/> before the
/// shell; <see cref="WritesOutsideRam"/> then returns what the script wrote anywhere but its RAM-backed scratch
/// directory and the standard streams, which must be nothing.
/// </summary>
internal sealed partial class GuestWriteTrace : IDisposable
{
    private readonly Support.TempDir _dir = new();

    public GuestWriteTrace()
    {
        TraceFile = _dir.File("strace.txt");
    }

    public string TraceFile { get; }

    /// <summary>strace, before the shell that runs the script.</summary>
    public IReadOnlyList<string> Prefix =>
    [
        "strace", "-f", "-qq", "-o", TraceFile,
        "-e", "trace=open,openat,creat,mkdir,mkdirat,mknod,mknodat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,truncate",
    ];

    /// <summary>The scratch directory the script reported (CLOUDMEM_SCRATCH dir fstype).</summary>
    public static (string Dir, string FsType) Scratch(string guestOutput)
    {
        Match m = ScratchLine().Match(guestOutput);
        Assert.True(m.Success, "the guest reported no CLOUDMEM_SCRATCH line: " + guestOutput);
        return (m.Groups[1].Value, m.Groups[2].Value);
    }

    /// <summary>Every successful create/write-open outside <paramref name="ramDir"/> and the standard streams.</summary>
    public IReadOnlyList<string> WritesOutsideRam(string ramDir, out int writesInRam)
    {
        var outside = new List<string>();
        writesInRam = 0;
        foreach (string line in File.ReadLines(TraceFile))
        {
            Match call = Call().Match(line);
            if (!call.Success || call.Groups["result"].Value.StartsWith('-'))
            {
                continue;
            }
            string name = call.Groups["name"].Value;
            string args = call.Groups["args"].Value;
            bool writes = name is not ("open" or "openat") || WriteFlags().IsMatch(args);
            if (!writes)
            {
                continue;
            }
            foreach (Match path in QuotedPath().Matches(args))
            {
                string p = path.Groups[1].Value;
                if (p == ramDir || p.StartsWith(ramDir + "/", StringComparison.Ordinal))
                {
                    writesInRam++;
                }
                else if (p is not ("/dev/null" or "/dev/stdout" or "/dev/stderr" or "/dev/tty") && !p.StartsWith("/dev/fd/", StringComparison.Ordinal)
                    && !p.StartsWith("/proc/self/fd/", StringComparison.Ordinal))
                {
                    outside.Add(line);
                }
            }
        }
        return outside;
    }

    public void Dispose() => _dir.Dispose();

    [GeneratedRegex(@"CLOUDMEM_SCRATCH (\S+) (\S+)")]
    private static partial Regex ScratchLine();

    [GeneratedRegex(@"^\d+\s+(?<name>[a-z0-9]+)\((?<args>.*)\)\s+=\s+(?<result>-?\d+)")]
    private static partial Regex Call();

    [GeneratedRegex("O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")]
    private static partial Regex WriteFlags();

    [GeneratedRegex("\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex QuotedPath();
}
