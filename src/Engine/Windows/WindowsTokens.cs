using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>windows.getsids: one SID of a process's primary token.</summary>
/// <param name="Sid">S-R-A-S1-S2-... as Windows writes it.</param>
/// <param name="Name">The well-known name ("Local System", "Everyone", "High Mandatory Level", ...), or null.</param>
/// <param name="Attributes">_SID_AND_ATTRIBUTES.Attributes.</param>
/// <param name="Integrity">True for the SID at _TOKEN.IntegrityLevelIndex.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Process">ImageFileName.</param>
public sealed record WindowsSid(long Pid, string Process, string Sid, string? Name, [property: Hex] uint Attributes, bool Integrity);

/// <summary>The primary token of a process: _EPROCESS.Token (an _EX_FAST_REF) -> _TOKEN.UserAndGroups.</summary>
public static class WindowsTokens
{
    /// <summary>A SID has at most 15 sub-authorities (SID_MAX_SUB_AUTHORITIES).</summary>
    public const int MaxSubAuthorities = 15;

    private const ulong FastRefMask = 0xF;        // _EX_FAST_REF keeps a reference count in the low 4 bits on x64

    private static readonly Dictionary<string, string> s_wellKnown = new(StringComparer.Ordinal)
    {
        ["S-1-0-0"] = "Nobody",
        ["S-1-1-0"] = "Everyone",
        ["S-1-2-0"] = "Local (Users with the ability to log in locally)",
        ["S-1-2-1"] = "Console Logon (Users who are logged-in on the physical console)",
        ["S-1-3-0"] = "Creator Owner",
        ["S-1-3-1"] = "Creator Group",
        ["S-1-5-1"] = "Dialup",
        ["S-1-5-2"] = "Network",
        ["S-1-5-3"] = "Batch",
        ["S-1-5-4"] = "Interactive",
        ["S-1-5-6"] = "Service",
        ["S-1-5-7"] = "Anonymous",
        ["S-1-5-9"] = "Enterprise Domain Controllers",
        ["S-1-5-10"] = "Principal Self",
        ["S-1-5-11"] = "Authenticated Users",
        ["S-1-5-12"] = "Restricted Code",
        ["S-1-5-13"] = "Terminal Server Users",
        ["S-1-5-14"] = "Remote Interactive Logon",
        ["S-1-5-15"] = "This Organization",
        ["S-1-5-17"] = "This Organization (Used by the default IIS user)",
        ["S-1-5-18"] = "Local System",
        ["S-1-5-19"] = "NT Authority",
        ["S-1-5-20"] = "NT Authority",
        ["S-1-5-32-544"] = "Administrators",
        ["S-1-5-32-545"] = "Users",
        ["S-1-5-32-546"] = "Guests",
        ["S-1-5-32-547"] = "Power Users",
        ["S-1-5-32-548"] = "Account Operators",
        ["S-1-5-32-549"] = "Server Operators",
        ["S-1-5-32-550"] = "Print Operators",
        ["S-1-5-32-551"] = "Backup Operators",
        ["S-1-5-32-552"] = "Replicators",
        ["S-1-5-32-555"] = "Remote Desktop Users",
        ["S-1-5-32-559"] = "Performance Log Users",
        ["S-1-5-32-562"] = "Distributed COM Users",
        ["S-1-5-32-568"] = "IIS_IUSRS",
        ["S-1-5-32-578"] = "Hyper-V Administrators",
        ["S-1-5-113"] = "Local Account",
        ["S-1-5-114"] = "Local Account and member of Administrators group",
        ["S-1-15-2-1"] = "All App Packages",
        ["S-1-16-0"] = "Untrusted Mandatory Level",
        ["S-1-16-4096"] = "Low Mandatory Level",
        ["S-1-16-8192"] = "Medium Mandatory Level",
        ["S-1-16-8448"] = "Medium Plus Mandatory Level",
        ["S-1-16-12288"] = "High Mandatory Level",
        ["S-1-16-16384"] = "System Mandatory Level",
        ["S-1-16-20480"] = "Protected Process Mandatory Level",
        ["S-1-16-28672"] = "Secure Process Mandatory Level",
    };

    /// <summary>The well-known name of a SID (fixed SIDs, and domain/logon-session/service patterns), or null.</summary>
    public static string? WellKnownName(string sid)
    {
        if (s_wellKnown.TryGetValue(sid, out string? name))
        {
            return name;
        }
        string[] parts = sid.Split('-');
        if (sid.StartsWith("S-1-5-5-", StringComparison.Ordinal) && parts.Length == 6)
        {
            return "Logon Session";
        }
        if (sid.StartsWith("S-1-5-80-", StringComparison.Ordinal))
        {
            return "Service SID";
        }
        if (sid.StartsWith("S-1-5-21-", StringComparison.Ordinal) && parts.Length == 8)
        {
            return parts[^1] switch
            {
                "500" => "Administrator",
                "501" => "Guest",
                "502" => "KRBTGT",
                "512" => "Domain Admins",
                "513" => "Domain Users",
                "514" => "Domain Guests",
                "515" => "Domain Computers",
                "516" => "Domain Controllers",
                "518" => "Schema Admins",
                "519" => "Enterprise Admins",
                _ => null,
            };
        }
        return null;
    }

    /// <summary>The token's SIDs (user first) with attributes and the integrity-level index, or a note why not (all of them).</summary>
    public static (List<(string Sid, uint Attributes, bool Integrity)> Sids, List<string> Notes) Sids(WindowsKernel kernel, WindowsProcess process)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(process);
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        var reader = new WindowsMemoryReader(kernel.Kernel);
        var sids = new List<(string, uint, bool)>();
        var notes = new List<string>();
        if (!reader.TryUInt64(process.Offset + (ulong)layout.ProcessToken, out ulong fastRef))
        {
            notes.Add(reader.Describe("_EPROCESS.Token"));
            return (sids, notes);
        }
        ulong token = fastRef & ~FastRefMask;
        if (token == 0)
        {
            notes.Add("no token (_EPROCESS.Token is null)");
            return (sids, notes);
        }
        if (!reader.TryUInt32(token + (ulong)layout.TokenUserAndGroupCount, out uint count)
            || !reader.TryUInt64(token + (ulong)layout.TokenUserAndGroups, out ulong array))
        {
            notes.Add(reader.Describe($"_TOKEN at 0x{token:X}"));
            return (sids, notes);
        }
        int maxSids = AnalysisLimits.Default.MaxSids;
        if (count > maxSids)
        {
            notes.Add($"_TOKEN at 0x{token:X}: UserAndGroupCount {count} is more than {maxSids}; token not read");
            return (sids, notes);
        }
        uint integrityIndex = uint.MaxValue;
        if (layout.TokenIntegrityLevelIndex is int ii && reader.TryUInt32(token + (ulong)ii, out uint index))
        {
            integrityIndex = index;
        }
        for (uint i = 0; i < count; i++)
        {
            ulong entry = array + i * (ulong)layout.SidAndAttributesSize;
            if (!reader.TryUInt64(entry + (ulong)layout.SidAndAttributesSid, out ulong sidAddress)
                || !reader.TryUInt32(entry + (ulong)layout.SidAndAttributesAttributes, out uint attributes))
            {
                notes.Add($"_SID_AND_ATTRIBUTES {i} of {count}: {reader.Failure}; stopped");
                break;
            }
            string? sid = ReadSid(reader, layout, sidAddress, out string? problem);
            if (sid is null)
            {
                notes.Add($"SID {i} of {count} at 0x{sidAddress:X}: {problem}; stopped");
                break;
            }
            sids.Add((sid, attributes, i == integrityIndex));
        }
        return (sids, notes);
    }

    /// <summary>windows.getsids.</summary>
    public static RowsReport<WindowsSid> GetSids(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsSid>();
        foreach (WindowsProcess p in processes)
        {
            ct.ThrowIfCancellationRequested();
            (List<(string Sid, uint Attributes, bool Integrity)> sids, List<string> sidNotes) = Sids(kernel, p);
            rows.AddRange(sids.Select(s => new WindowsSid(p.Pid, p.ImageFileName, s.Sid, WellKnownName(s.Sid), s.Attributes, s.Integrity)));
            notes.AddRange(sidNotes.Select(n => $"{p.Pid} {p.ImageFileName}: {n}"));
        }
        return new RowsReport<WindowsSid>("windows.getsids", rows, notes);
    }

    /// <summary>Reads a _SID: revision 1, at most 15 sub-authorities, 48-bit big-endian identifier authority.</summary>
    private static string? ReadSid(WindowsMemoryReader reader, WindowsUserLayout layout, ulong va, out string? problem)
    {
        problem = null;
        Span<byte> head = stackalloc byte[8];
        Span<byte> authority = stackalloc byte[6];
        if (!reader.TryRead(va + (ulong)layout.SidRevision, head[..1]) || !reader.TryRead(va + (ulong)layout.SidSubAuthorityCount, head.Slice(1, 1))
            || !reader.TryRead(va + (ulong)layout.SidIdentifierAuthority, authority))
        {
            problem = reader.Failure;
            return null;
        }
        int count = head[1];
        if (head[0] != 1 || count > MaxSubAuthorities)
        {
            problem = $"not a SID (revision {head[0]}, {count} sub-authorities)";
            return null;
        }
        Span<byte> subs = stackalloc byte[4 * MaxSubAuthorities];
        if (!reader.TryRead(va + (ulong)layout.SidSubAuthority, subs[..(4 * count)]))
        {
            problem = reader.Failure;
            return null;
        }
        ulong identifier = 0;
        foreach (byte b in authority)
        {
            identifier = (identifier << 8) | b;
        }
        var text = new StringBuilder("S-1-");
        text.Append(identifier >= 1UL << 32 ? $"0x{identifier:X12}" : identifier.ToString(CultureInfo.InvariantCulture));
        for (int i = 0; i < count; i++)
        {
            text.Append('-').Append(BinaryPrimitives.ReadUInt32LittleEndian(subs[(4 * i)..]).ToString(CultureInfo.InvariantCulture));
        }
        return text.ToString();
    }
}
