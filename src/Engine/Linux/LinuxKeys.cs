using System.Runtime.CompilerServices;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>key.state: whether the key has been given its payload.</summary>
public enum KeyState
{
    /// <summary>KEY_IS_UNINSTANTIATED: created, payload not yet supplied (a request in progress).</summary>
    Uninstantiated,
    /// <summary>KEY_IS_POSITIVE: has a payload.</summary>
    Positive,
    /// <summary>Negatively instantiated: a lookup failed and the error is cached.</summary>
    Negative,
}

/// <summary>A key of the kernel's key management (linux.keys), as /proc/keys shows it, with user/logon payloads.</summary>
/// <param name="Serial">key.serial (what keyctl and /proc/keys show, decimal here).</param>
/// <param name="Type">key.type->name: user, logon, keyring, asymmetric, big_key, trusted, encrypted, ...</param>
/// <param name="Description">key.description (keyrings: _uid.0, _ses, ...).</param>
/// <param name="Uid">key.uid (the owner).</param>
/// <param name="Gid">key.gid.</param>
/// <param name="Permissions">key.perm: possessor, user, group, other bytes (as /proc/keys's 8 hex digits).</param>
/// <param name="State">key.state.</param>
/// <param name="Flags">key.flags (KEY_FLAG_*: 0x1 dead, 0x2 revoked, 0x20 invalidated).</param>
/// <param name="Expiry">key.expiry (UTC), null when the key does not expire.</param>
/// <param name="PayloadLength">key.datalen: the payload's length in bytes.</param>
/// <param name="Preview">user and logon keys: the payload's first characters and its length (redacted); null for other types.</param>
/// <param name="Value">user and logon keys: the whole payload (text, or hex when not text), only with --reveal; null otherwise.</param>
/// <param name="Key">The struct key.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxKey(int Serial, string Type, string Description, int? Uid, int? Gid, [property: Hex] uint? Permissions, KeyState? State,
    [property: Hex] ulong? Flags, DateTimeOffset? Expiry, int? PayloadLength, string? Preview, string? Value, [property: Hex] ulong Key, string? Doubt);

/// <summary>
/// linux.keys: every key in the kernel's key_serial_tree (the red-black tree of all keys by serial, what /proc/keys walks),
/// including keys in no process's keyrings view. User and logon keys (passwords, tokens, session secrets handed to the
/// kernel) carry their payload, redacted unless the caller asks for it. Types from BTF.
/// </summary>
public static class LinuxKeys
{
    private const int MaxKeys = 1 << 18;
    private const int MaxPayload = 32 << 10; // user_key_payload data is at most 32767 bytes

    /// <summary>linux.keys.</summary>
    public static RowsReport<LinuxKey> List(LinuxContext context, bool reveal = false, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxKey>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        int O(string s, string f) => t.OptionalOffset(s, f);
        int node = O("key", "serial_node"), serial = O("key", "serial"), type = O("key", "type"), description = O("key", "description"),
            uid = O("key", "uid"), gid = O("key", "gid"), perm = O("key", "perm"), state = O("key", "state"), flags = O("key", "flags"),
            expiry = O("key", "expiry"), datalen = O("key", "datalen"), payload = O("key", "payload"), typeName = O("key_type", "name"),
            userData = O("user_key_payload", "data"), userLength = O("user_key_payload", "datalen"),
            right = O("rb_node", "rb_right"), left = O("rb_node", "rb_left");
        if (!context.Kernel.Symbols.TryGetAddress("key_serial_tree", out ulong tree) || node < 0 || serial < 0 || type < 0 || description < 0
            || typeName < 0 || right < 0 || left < 0)
        {
            notes.Add($"key_serial_tree (kallsyms; a kernel without CONFIG_KEYS?) or key.serial_node/serial/type/description, key_type.name, rb_node ({t.Source}) is not available");
            return new RowsReport<LinuxKey>("linux.keys", rows, notes);
        }
        if (!k.TryReadUInt64(tree, out ulong root))
        {
            notes.Add($"key_serial_tree at 0x{tree:X} is unreadable");
            return new RowsReport<LinuxKey>("linux.keys", rows, notes);
        }
        foreach (ulong rb in InOrder(k, root, right, left, notes, ct))
        {
            ulong key = rb - (ulong)node;
            var doubts = new List<string>();
            int? I32(int offset) => offset >= 0 && k.TryReadUInt32(key + (ulong)offset, out uint v) ? (int)v : null;
            ulong? U64(int offset) => offset >= 0 && k.TryReadUInt64(key + (ulong)offset, out ulong v) ? v : null;
            string? Text(ulong? at, int max) => at is ulong p && p != 0 ? k.ReadCString(p, max) : null;
            int? keySerial = I32(serial);
            string? typeText = U64(type) is ulong tp && tp != 0 && k.TryReadUInt64(tp + (ulong)typeName, out ulong np) ? Text(np, 64) : null;
            string? descriptionText = Text(U64(description), 4096);
            if (keySerial is null || typeText is null)
            {
                doubts.Add("key.serial or key.type->name unreadable");
            }
            int? stateValue = state >= 0 && LinuxSockets.ReadBytes(k, key + (ulong)state, 2) is { } sb ? BitConverter.ToInt16(sb) : null;
            KeyState? keyState = stateValue switch { null => null, 0 => KeyState.Uninstantiated, > 0 => KeyState.Positive, _ => KeyState.Negative };
            long? expires = U64(expiry) is ulong e ? (long)e : null;
            int? length = datalen >= 0 ? LinuxSockets.ReadU16(k, key + (ulong)datalen) : null;
            string? preview = null, value = null;
            if (typeText is "user" or "logon" && keyState == KeyState.Positive && userData >= 0 && userLength >= 0 && payload >= 0)
            {
                (preview, value, string? problem) = UserPayload(k, U64(payload) ?? 0, userData, userLength, length);
                if (problem is not null)
                {
                    doubts.Add(problem);
                }
            }
            rows.Add(new LinuxKey(keySerial ?? 0, typeText ?? "?", descriptionText ?? "", I32(uid), I32(gid), I32(perm) is int p ? (uint)p : null, keyState,
                U64(flags), expires is > 0 and < 253402300800 ? DateTimeOffset.FromUnixTimeSeconds(expires.Value) : null, length, preview,
                reveal ? value : null, key, doubts.Count == 0 ? null : string.Join("; ", doubts)));
        }
        return new RowsReport<LinuxKey>("linux.keys", rows, notes);
    }

    /// <summary>A user/logon key's payload (payload.data[0] -> struct user_key_payload): the redacted preview, the value and what went wrong.</summary>
    private static (string? Preview, string? Value, string? Problem) UserPayload(IVirtualMemory k, ulong at, int dataOffset, int lengthOffset, int? keyLength)
    {
        if (at == 0 || LinuxSockets.ReadU16(k, at + (ulong)lengthOffset) is not ushort length)
        {
            return (null, null, $"user_key_payload at 0x{at:X} unreadable");
        }
        if (length > MaxPayload || (keyLength is int kl && kl != length))
        {
            return (null, null, $"user_key_payload.datalen {length} does not match key.datalen {keyLength}");
        }
        if (LinuxSockets.ReadBytes(k, at + (ulong)dataOffset, length) is not { } data)
        {
            return (null, null, $"user_key_payload data at 0x{at + (ulong)dataOffset:X} ({length} bytes) unreadable");
        }
        bool text = data.All(b => b is >= 0x20 and < 0x7F or (byte)'\n' or (byte)'\t');
        string value = text ? Encoding.ASCII.GetString(data) : System.Convert.ToHexStringLower(data);
        return (text ? LinuxSecrets.Redact(value) : $"{length} bytes (binary)", value, null);
    }

    /// <summary>The nodes of a kernel red-black tree in key order, from its root; a bad pointer, a loop or <see cref="MaxKeys"/> ends the walk with a note.</summary>
    private static List<ulong> InOrder(IVirtualMemory k, ulong root, int right, int left, List<string> notes, CancellationToken ct)
    {
        var nodes = new List<ulong>();
        var seen = new HashSet<ulong>();
        var stack = new Stack<ulong>();
        ulong current = root;
        while (current != 0 || stack.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            while (current != 0)
            {
                if (!KernelLists.IsKernelAddress(current) || !seen.Add(current) || seen.Count > MaxKeys)
                {
                    notes.Add(seen.Count > MaxKeys ? $"key_serial_tree: more than {MaxKeys} keys, the rest not listed"
                        : $"key_serial_tree: node 0x{current:X} is not a kernel address or was seen before (smeared or damaged memory?)");
                    return nodes;
                }
                stack.Push(current);
                current = k.TryReadUInt64(current + (ulong)left, out ulong l) ? l : 0;
            }
            current = stack.Pop();
            nodes.Add(current);
            if (!k.TryReadUInt64(current + (ulong)right, out current))
            {
                notes.Add($"key_serial_tree: node 0x{nodes[^1]:X} is unreadable");
                current = 0;
            }
        }
        return nodes;
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("linux.keys",
            "Kernel keys (key_serial_tree, what /proc/keys lists): serial, type, description, owner, permissions, expiry; user and logon key payloads redacted (--reveal: in full)",
            TargetOs.Linux, PluginInputs.RevealSecrets), (c, a, ct) => List(c.Linux(ct), a.RevealSecrets, ct));
}
