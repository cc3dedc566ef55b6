namespace CloudMem.ImageBuilder;

/// <summary>
/// The primary token: a _TOKEN object (pool tag 'Toke') referenced by _EPROCESS.Token as an _EX_FAST_REF (low 4 bits a
/// reference count), with UserAndGroups pointing at an array of _SID_AND_ATTRIBUTES in the token's variable part and
/// the _SID structures after it, UserAndGroupCount and IntegrityLevelIndex.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>The user account every non-system process of the scenarios runs as (the account of the Key handle's hive).</summary>
    public const string UserSid = "S-1-5-21-1004336348-1177238915-682003330-1001";

    /// <summary>The reference count kept in the low bits of _EPROCESS.Token.</summary>
    public const ulong TokenRefCount = 0xA;

    private const uint SeGroupMandatory = 1, SeGroupEnabledByDefault = 2, SeGroupEnabled = 4, SeGroupOwner = 8, SeGroupIntegrity = 0x20, SeGroupIntegrityEnabled = 0x40;

    /// <summary>The token SIDs (user first, then groups, the integrity level last) of a process the scenario gives none for.</summary>
    public static IReadOnlyList<string> DefaultSids(WindowsScenarioProcess p)
        => p.Pid < 1000
            ? ["S-1-5-18", "S-1-5-32-544", "S-1-1-0", "S-1-5-11", "S-1-16-16384"]
            : [UserSid, "S-1-1-0", "S-1-5-32-545", "S-1-5-11", "S-1-16-8192"];

    partial void LayOutToken(ProcessLayout process)
    {
        ProcessLayout p = process;
        IReadOnlyList<string> sids = p.Scenario.Sids ?? DefaultSids(p.Scenario);
        byte[][] encoded = [.. sids.Select(EncodeSid)];
        int entrySize = SizeOf("_SID_AND_ATTRIBUTES");
        int variable = Off("_TOKEN", "VariablePart");
        int arrayBytes = sids.Count * entrySize;
        int sidBytes = encoded.Sum(e => (e.Length + 3) & ~3);
        int bodySize = Math.Max(SizeOf("_TOKEN"), variable + arrayBytes + sidBytes);
        ulong token = AllocateObject(Tag("Toke"), "Token", bodySize);
        ulong array = token + (ulong)variable;
        ulong sidAt = array + (ulong)arrayBytes;
        int integrity = -1;
        for (int i = 0; i < sids.Count; i++)
        {
            ulong entry = array + (ulong)(i * entrySize);
            _image.WriteVa(Dtb, sidAt, encoded[i]);
            bool isIntegrity = sids[i].StartsWith("S-1-16-", StringComparison.Ordinal);
            uint attributes = i == 0 ? 0
                : isIntegrity ? SeGroupIntegrity | SeGroupIntegrityEnabled
                : sids[i] == "S-1-5-32-544" ? SeGroupMandatory | SeGroupEnabledByDefault | SeGroupEnabled | SeGroupOwner
                : SeGroupMandatory | SeGroupEnabledByDefault | SeGroupEnabled;
            PutKernel(entry, "_SID_AND_ATTRIBUTES", "Sid", sidAt);
            PutKernel(entry, "_SID_AND_ATTRIBUTES", "Attributes", attributes);
            if (isIntegrity)
            {
                integrity = i;
            }
            sidAt += (ulong)((encoded[i].Length + 3) & ~3);
        }
        PutKernel(token, "_TOKEN", "UserAndGroups", array);
        PutKernel(token, "_TOKEN", "UserAndGroupCount", (ulong)sids.Count);
        if (integrity >= 0 && Has("_TOKEN", "IntegrityLevelIndex"))
        {
            PutKernel(token, "_TOKEN", "IntegrityLevelIndex", (ulong)integrity);
        }
        PutKernel(p.Eprocess, "_EPROCESS", "Token", token | TokenRefCount);
        p.LaidOut.Sids.AddRange(sids);
    }

    /// <summary>A SID's binary form: revision, sub-authority count, 48-bit big-endian identifier authority, sub-authorities (little-endian).</summary>
    public static byte[] EncodeSid(string sid)
    {
        string[] parts = sid.Split('-');
        if (parts.Length < 3 || parts[0] != "S" || parts[1] != "1" || parts.Length - 3 > 15)
        {
            throw new InvalidOperationException($"not a SID: {sid}");
        }
        ulong authority = ulong.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture);
        int count = parts.Length - 3;
        byte[] bytes = new byte[8 + 4 * count];
        bytes[0] = 1;
        bytes[1] = (byte)count;
        for (int b = 0; b < 6; b++)
        {
            bytes[2 + b] = (byte)(authority >> (8 * (5 - b)));
        }
        for (int i = 0; i < count; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8 + 4 * i), uint.Parse(parts[3 + i], System.Globalization.CultureInfo.InvariantCulture));
        }
        return bytes;
    }
}
