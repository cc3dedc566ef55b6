using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Services;

namespace CloudMem.ImageBuilder;

/// <summary>A local account of the built SAM and the hashes its password gives (computed here: MD4 and DES).</summary>
public sealed record SamUser(string Name, uint Rid, string? Password, bool StoreLm = false)
{
    /// <summary>The NT hash (MD4 of the UTF-16LE password), hex; the empty password's hash when none.</summary>
    public string NtHash => Convert.ToHexString(Md4.Hash(Encoding.Unicode.GetBytes(Password ?? ""))).ToLowerInvariant();

    /// <summary>The LM hash when stored (only before the AES era here; else the empty LM hash, as readers print it).</summary>
    public string LmHashFor(bool aes) => StoreLm && !aes && Password is not null ? Convert.ToHexString(Lm(Password)).ToLowerInvariant() : WindowsHashDump.EmptyLm;

    /// <summary>LM: the upper-case password (14 bytes, zero padded), each half a DES key encrypting "KGS!@#$%".</summary>
    public static byte[] Lm(string password)
    {
        byte[] padded = new byte[14];
        Encoding.ASCII.GetBytes(password.ToUpperInvariant()).AsSpan(0, Math.Min(14, password.Length)).CopyTo(padded);
        byte[] hash = new byte[16];
        for (int half = 0; half < 2; half++)
        {
#pragma warning disable CA5351 // LM is DES by definition; test data only
            using var des = DES.Create();
#pragma warning restore CA5351
            des.Key = SamCrypto.DesKey(padded.AsSpan(half * 7, 7));
            des.EncryptEcb("KGS!@#$%"u8, hash.AsSpan(half * 8, 8), PaddingMode.None);
        }
        return hash;
    }
}

/// <summary>
/// The registry of the "registry" scenario: SYSTEM (Select, the LSA boot-key class names, a service persistence),
/// SOFTWARE (Run keys, Winlogon), SAM (accounts with known passwords, RC4 or AES era) and a user's NTUSER.DAT (Run,
/// UserAssist), written by hivexregedit. <see cref="Hives"/> lays them out; the fields are the truth tests compare with.
/// </summary>
public sealed class RegistryScenario
{
    /// <summary>The boot key (its scrambled form is the class names of JD, Skew1, GBG, Data).</summary>
    public static readonly byte[] BootKey = Convert.FromHexString("2A1F8C3D4E5B6A7980B1C2D3E4F50617");

    /// <summary>The hashed boot key the SAM's F value encrypts.</summary>
    public static readonly byte[] HashedBootKey = Convert.FromHexString("7E3A9C21D4F6083B5A6C7D8E9F0A1B2C");

    /// <summary>The alice SID (NTUSER.DAT's registry path).</summary>
    public const string AliceSid = "S-1-5-21-1004336348-1177238915-682003330-1001";

    /// <summary>The accounts.</summary>
    public static IReadOnlyList<SamUser> Users { get; } =
    [
        new("Administrator", 500, "password", StoreLm: true),
        new("Guest", 501, null),
        new("alice", 1001, "Summer2024!"),
        new("svc_backup", 1002, "Backup#99"),
    ];

    /// <summary>Whether <paramref name="builder"/>'s Windows stores AES-era SAM hashes (Windows 10 1607, build 14393, and later).</summary>
    public static bool UsesAes(WindowsImageBuilder builder) => builder.EffectiveVersion.Build >= 14393;

    /// <summary><paramref name="scenario"/> plus the five hives (in the SAM era of <paramref name="builder"/>'s Windows), a service table hook and notification callbacks.</summary>
    public static WindowsScenario With(WindowsScenario scenario, WindowsImageBuilder builder, IReadOnlyList<int>? samPagedOutBins = null, bool preVistaLsa = false)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        ArgumentNullException.ThrowIfNull(builder);
        // The hidden driver sits within 128 MiB of the kernel so that a service table entry can reach it, and hooks one.
        IReadOnlyList<ScenarioDriver>? drivers = scenario.Drivers?.Select(d => d.Name == HookDriver ? d with { Base = builder.KernelBase + HookDriverDistance } : d).ToList();
        return scenario with
        {
            Name = "registry",
            Hives = Hives(UsesAes(builder), samPagedOutBins, preVistaLsa),
            Drivers = drivers,
            ServiceTable = drivers?.Any(d => d.Name == HookDriver) == true ? new ScenarioServiceTable { Hooks = [new(HookedService, HookDriver, HookOffset)] } : null,
            Callbacks = drivers?.Any(d => d.Name == HookDriver) == true ? Callbacks : null,
            Services = scenario.Processes.Any(p => p.ImageFileName == "services.exe") ? Services : null,
            MftRecords = MftRecords,
            CachedFiles = [new(CachedFileName, CachedFileContent) { MissingPages = [2], TransitionPages = [3] }],
            DriverObjects = drivers?.Any(d => d.Name == HookDriver) == true && drivers.Any(d => d.Name == "tcpip.sys") ? DriverObjects : null,
        };
    }

    /// <summary>
    /// Driver objects: tcpip's, whose IRP_MJ_DEVICE_CONTROL points into the hidden rootkit.sys and whose
    /// IRP_MJ_INTERNAL_DEVICE_CONTROL points at code in the kernel pool (no module), and the rootkit's own.
    /// </summary>
    public static IReadOnlyList<ScenarioDriverObject> DriverObjects { get; } =
    [
        new(@"\Driver\Tcpip", "tcpip.sys") { Hooks = [new(IrpHookMajor, HookDriver, IrpHookOffset), new(15, null, 0)] },
        new(@"\Driver\rootkit", HookDriver),
    ];

    /// <summary>The hooked IRP major of \Driver\Tcpip (IRP_MJ_DEVICE_CONTROL) and the hook's offset in rootkit.sys.</summary>
    public const int IrpHookMajor = 14;

    public const uint IrpHookOffset = 0x2800;

    /// <summary>The cached file's name (_FILE_OBJECT.FileName).</summary>
    public const string CachedFileName = @"\Windows\Temp\evilsvc.log";

    /// <summary>The cached file's four pages: numbered log lines (page 2 is paged out, page 3 on the standby list).</summary>
    public static byte[] CachedFileContent { get; } = [.. System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 1000).Select(i => $"beacon {i:D5} ok\n")))
        .Concat(new byte[4 * 4096]).Take(4 * 4096)];

    /// <summary>The resident content of evilsvc.cfg (small enough to live in its MFT record).</summary>
    public static readonly byte[] EvilConfig = System.Text.Encoding.ASCII.GetBytes("c2=203.0.113.7:443\nsleep=60\njitter=0.2\n");

    /// <summary>
    /// MFT records: C:\Windows\Temp (a directory), evilsvc.exe in it with $STANDARD_INFORMATION times stomped back to 2019,
    /// evilsvc.cfg with resident data, a deleted dropper whose record is not reused, and a record torn in its second sector.
    /// </summary>
    public static IReadOnlyList<ScenarioMftRecord> MftRecords { get; } =
    [
        new(0x1F3A, "Temp", 0x1C, new DateTime(2021, 3, 4, 8, 0, 0, DateTimeKind.Utc), new DateTime(2021, 3, 4, 8, 0, 0, DateTimeKind.Utc)) { Directory = true },
        new(0x2A41, "evilsvc.exe", 0x1F3A, new DateTime(2024, 7, 7, 10, 12, 5, DateTimeKind.Utc), new DateTime(2019, 12, 7, 9, 9, 27, DateTimeKind.Utc)) { NonResidentSize = 73_728 },
        new(0x2A42, "evilsvc.cfg", 0x1F3A, new DateTime(2024, 7, 7, 10, 12, 9, DateTimeKind.Utc), new DateTime(2024, 7, 7, 10, 12, 9, DateTimeKind.Utc)) { Content = EvilConfig },
        new(0x2A43, "dropper.ps1", 0x1F3A, new DateTime(2024, 7, 7, 10, 11, 0, DateTimeKind.Utc), new DateTime(2024, 7, 7, 10, 11, 0, DateTimeKind.Utc)) { Deleted = true, Sequence = 3, Content = [0x23, 0x20, 0x78] },
        new(0x2A44, "notes.txt", 0x1F3A, new DateTime(2024, 7, 6, 18, 0, 0, DateTimeKind.Utc), new DateTime(2024, 7, 6, 18, 0, 0, DateTimeKind.Utc)) { Torn = true, Content = [0x68, 0x69] },
    ];

    /// <summary>
    /// services.exe's records of the SYSTEM hive's services: tcpip (a running boot driver), EvilDll (running in the
    /// hollowed svchost 844), Fax (stopped) and EvilSvc (running from %SystemRoot%\Temp as pid 1288).
    /// </summary>
    public static IReadOnlyList<ScenarioService> Services { get; } =
    [
        new("Tcpip", ServiceTypes.KernelDriver, ServiceStartType.Boot, ServiceState.Running) { DisplayName = "TCP/IP Protocol Driver", Binary = @"\Driver\Tcpip" },
        new("EvilDll", ServiceTypes.Win32ShareProcess, ServiceStartType.Automatic, ServiceState.Running) { Binary = @"C:\Windows\system32\svchost.exe -k netsvcs", Pid = 844 },
        new("Fax", ServiceTypes.Win32OwnProcess, ServiceStartType.Manual, ServiceState.Stopped),
        new("EvilSvc", ServiceTypes.Win32OwnProcess, ServiceStartType.Automatic, ServiceState.Running) { DisplayName = "Windows Update Helper", Binary = @"C:\Windows\Temp\evilsvc.exe", Pid = 1288 },
    ];

    /// <summary>The notification callbacks: ordinary ones in the kernel and tcpip.sys, two in the hidden driver, and a registry callback (CmRegisterCallbackEx) in it.</summary>
    public static IReadOnlyList<ScenarioCallback> Callbacks { get; } =
    [
        new("PspCreateProcessNotifyRoutine", "ntoskrnl.exe", 0x1000),
        new("PspCreateProcessNotifyRoutine", HookDriver, 0x2000),
        new("PspCreateThreadNotifyRoutine", "tcpip.sys", 0x5000),
        new("PspLoadImageNotifyRoutine", HookDriver, 0x2400),
        new(WindowsImageBuilder.RegistryCallbackList, HookDriver, 0x2600),
    ];

    /// <summary>The unlinked driver (of the attack scenario) that hooks a system service.</summary>
    public const string HookDriver = "rootkit.sys";

    /// <summary>Where the hook driver is placed, above the kernel base.</summary>
    public const ulong HookDriverDistance = 0x6000000;

    /// <summary>The hooked KiServiceTable index.</summary>
    public const int HookedService = 38;

    /// <summary>The hook's offset in the driver.</summary>
    public const uint HookOffset = 0x1230;

    /// <summary>The ServiceDll of the planted EvilDll service (svchost-hosted).</summary>
    public const string EvilServiceDll = @"C:\ProgramData\Microsoft\Crypto\evil.dll";

    /// <summary>The planted Wow6432Node Run value: PowerShell with an encoded command.</summary>
    public const string EncodedPowerShell = "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=";

    /// <summary>The Task Scheduler's cache key in SOFTWARE.</summary>
    public const string TaskCache = @"Microsoft\Windows NT\CurrentVersion\Schedule\TaskCache";

    /// <summary>The id of an ordinary task (in the tree with its SD).</summary>
    public const string ScanTaskId = "{2E5A8F0C-7B1D-4C39-9A64-0D8E3F2B1A57}";

    /// <summary>The id of a task hidden from the scheduler: its tree key has no SD value.</summary>
    public const string HiddenTaskId = "{9F3C2B1A-5D4E-4F60-8A7B-6C5D4E3F2A10}";

    /// <summary>What the hidden task runs.</summary>
    public const string HiddenTaskCommand = @"C:\ProgramData\svc\health.exe";

    /// <summary>A version 3 Actions blob with one exec action (counted UTF-16 strings: context, id, command, arguments, directory; flags).</summary>
    public static byte[] TaskActions(string context, string command, string arguments)
    {
        var blob = new List<byte>();
        void Text(string text)
        {
            byte[] bytes = Encoding.Unicode.GetBytes(text);
            blob.AddRange(BitConverter.GetBytes(bytes.Length));
            blob.AddRange(bytes);
        }
        blob.AddRange(BitConverter.GetBytes((ushort)3));
        Text(context);
        blob.AddRange(BitConverter.GetBytes((ushort)0x6666));
        Text("");
        Text(command);
        Text(arguments);
        Text("");
        blob.AddRange(BitConverter.GetBytes((ushort)0));
        return [.. blob];
    }

    /// <summary>The SECURITY hive's file path in the hive list.</summary>
    public const string SecurityPath = @"\REGISTRY\MACHINE\SECURITY";

    /// <summary>The index of the bin of <paramref name="regf"/> that holds <paramref name="needle"/> (-1: none).</summary>
    public static int BinHolding(byte[] regf, ReadOnlySpan<byte> needle)
    {
        int found = regf.AsSpan().IndexOf(needle);
        int index = 0;
        for (int at = 0x1000; found >= 0 && at + 0x20 <= regf.Length && BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(at)) == 0x6E696268; index++)
        {
            at += (int)BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(at + 8));
            if (found < at)
            {
                return index;
            }
        }
        return -1;
    }

    /// <summary>The number of bins of a regf file.</summary>
    public static int BinCount(byte[] regf)
    {
        int count = 0;
        for (int at = 0x1000; at + 0x20 <= regf.Length && BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(at)) == 0x6E696268; count++)
        {
            at += (int)BinaryPrimitives.ReadUInt32LittleEndian(regf.AsSpan(at + 8));
        }
        return count;
    }

    /// <summary>
    /// The five hives (SYSTEM, SOFTWARE, SAM, NTUSER.DAT, SECURITY); <paramref name="aes"/> picks the SAM's era;
    /// <paramref name="preVistaLsa"/> writes the SECURITY hive with pre-Vista LSA encryption (RC4/DES).
    /// </summary>
    public static IReadOnlyList<ScenarioHive> Hives(bool aes, IReadOnlyList<int>? samPagedOutBins = null, bool preVistaLsa = false)
    {
        string[] lsaClasses = SamCrypto.ClassNames(BootKey);
        var system = new RegText(@"HKEY_LOCAL_MACHINE\SYSTEM")
            .Key("Select").Dword("Current", 1).Dword("Default", 1).Dword("LastKnownGood", 2)
            .Key(@"ControlSet001\Control\ComputerName\ComputerName").Sz("ComputerName", "WS-ALICE")
            .Key(@"ControlSet001\Control\Lsa").Dword("LmCompatibilityLevel", 3)
            .Key(@"ControlSet001\Control\Lsa\JD").Key(@"ControlSet001\Control\Lsa\Skew1")
            .Key(@"ControlSet001\Control\Lsa\GBG").Key(@"ControlSet001\Control\Lsa\Data")
            .Key(@"ControlSet001\Services\EvilSvc")
            .Typed("ImagePath", 2, Encoding.Unicode.GetBytes(@"%SystemRoot%\Temp\evilsvc.exe" + "\0"))
            .Sz("DisplayName", "Windows Update Helper").Dword("Start", 2).Dword("Type", 0x10).Sz("ObjectName", "LocalSystem")
            .Key(@"ControlSet001\Services\EvilDll")
            .Typed("ImagePath", 2, Encoding.Unicode.GetBytes(@"%SystemRoot%\system32\svchost.exe -k netsvcs" + "\0"))
            .Dword("Start", 2).Dword("Type", 0x20).Sz("ObjectName", "LocalSystem")
            .Key(@"ControlSet001\Services\EvilDll\Parameters").Typed("ServiceDll", 2, Encoding.Unicode.GetBytes(EvilServiceDll + "\0"))
            .Key(@"ControlSet001\Services\Fax").Typed("ImagePath", 2, Encoding.Unicode.GetBytes(@"%systemroot%\system32\fxssvc.exe" + "\0"))
            .Dword("Start", 3).Dword("Type", 0x10)
            .Key(@"ControlSet001\Services\Tcpip").Sz("ImagePath", @"System32\drivers\tcpip.sys").Dword("Start", 0).Dword("Type", 1)
            .Key(@"ControlSet001\Services\Tcpip\Parameters").Sz("Hostname", "WS-ALICE");
        byte[] systemHive = RegistryHiveFiles.WithClassNames(RegistryHiveFiles.Merge("SYSTEM", @"HKEY_LOCAL_MACHINE\SYSTEM", system.ToString()), "Lsa",
            new Dictionary<string, string> { ["JD"] = lsaClasses[0], ["Skew1"] = lsaClasses[1], ["GBG"] = lsaClasses[2], ["Data"] = lsaClasses[3] });

        byte[] big = new byte[20000];
        for (int i = 0; i < big.Length; i++)
        {
            big[i] = (byte)(i * 7);
        }
        var software = new RegText(@"HKEY_LOCAL_MACHINE\SOFTWARE")
            .Key(@"Microsoft\Windows\CurrentVersion\Run")
            .Typed("SecurityHealth", 2, Encoding.Unicode.GetBytes(@"%windir%\system32\SecurityHealthSystray.exe" + "\0"))
            .Sz("Updater", @"C:\Users\Public\update.exe")
            .Key(@"Microsoft\Windows\CurrentVersion\RunOnce")
            .Key(@"Microsoft\Windows NT\CurrentVersion").Sz("ProductName", "Windows 10 Pro").Sz("CurrentBuild", "19041")
            .Typed("InstallTime", 11, BitConverter.GetBytes(new DateTime(2024, 1, 15, 10, 0, 0, DateTimeKind.Utc).ToFileTimeUtc()))
            .Typed("Tags", 7, Encoding.Unicode.GetBytes("alpha\0beta\0\0"))
            .Typed("Blob", 3, big)
            .Key(@"Microsoft\Windows NT\CurrentVersion\Winlogon").Sz("Shell", "explorer.exe").Sz("Userinit", @"C:\Windows\system32\userinit.exe,")
            .Key(@"Microsoft\Windows NT\CurrentVersion\Image File Execution Options\sethc.exe").Sz("Debugger", @"C:\Windows\System32\cmd.exe")
            .Key(@"Microsoft\Windows NT\CurrentVersion\Image File Execution Options\notepad.exe").Dword("GlobalFlag", 0x200)
            .Key(@"Wow6432Node\Microsoft\Windows\CurrentVersion\Run").Sz("AdobeHelper", EncodedPowerShell)
            .Key($@"{TaskCache}\Tree\Microsoft\Windows\UpdateOrchestrator\Schedule Scan").Sz("Id", ScanTaskId).Typed("SD", 3, [1, 0, 4, 0x80]).Dword("Index", 3)
            .Key($@"{TaskCache}\Tree\SystemHealthCheck").Sz("Id", HiddenTaskId).Dword("Index", 3)
            .Key($@"{TaskCache}\Tasks\{ScanTaskId}").Sz("Path", @"\Microsoft\Windows\UpdateOrchestrator\Schedule Scan")
            .Typed("Actions", 3, TaskActions("LocalSystem", @"%systemroot%\system32\usoclient.exe", "StartScan"))
            .Key($@"{TaskCache}\Tasks\{HiddenTaskId}").Sz("Path", @"\SystemHealthCheck")
            .Typed("Actions", 3, TaskActions("Author", HiddenTaskCommand, "-silent"));
        var ntuser = new RegText(@"HKEY_CURRENT_USER")
            .Key(@"Software\Microsoft\Windows\CurrentVersion\Run").Sz("OneDriveSync", @"C:\Users\alice\AppData\Roaming\sync.exe -bg")
            .Key(@"Software\Microsoft\Windows\CurrentVersion\Explorer\UserAssist\{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}\Count")
            .Typed(WindowsRegistry.Rot13(@"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\cmd.exe"), 3, UserAssistData(7, 3, 42_000, new DateTime(2024, 7, 7, 10, 15, 0, DateTimeKind.Utc)))
            .Typed(WindowsRegistry.Rot13(@"C:\Users\alice\Downloads\invoice.docm"), 3, UserAssistData(1, 1, 5_000, new DateTime(2024, 7, 7, 10, 12, 0, DateTimeKind.Utc)));
        return
        [
            new(@"\REGISTRY\MACHINE\SYSTEM")
            {
                FileUserName = @"\SystemRoot\System32\Config\SYSTEM", Bytes = systemHive,
                VolatileLinks = new Dictionary<string, string> { ["CurrentControlSet"] = @"\REGISTRY\MACHINE\SYSTEM\ControlSet001" },
            },
            new(@"\REGISTRY\MACHINE\SOFTWARE") { FileUserName = @"\SystemRoot\System32\Config\SOFTWARE", Bytes = RegistryHiveFiles.Merge("SOFTWARE", @"HKEY_LOCAL_MACHINE\SOFTWARE", software.ToString()) },
            new(@"\REGISTRY\MACHINE\SAM") { FileUserName = @"\SystemRoot\System32\Config\SAM", Bytes = Sam(aes), PagedOutBins = samPagedOutBins },
            new($@"\REGISTRY\USER\{AliceSid}") { FileUserName = @"\??\C:\Users\alice\ntuser.dat", Bytes = RegistryHiveFiles.Merge("USER", "HKEY_CURRENT_USER", ntuser.ToString()) },
            new(SecurityPath) { FileUserName = @"\SystemRoot\System32\Config\SECURITY", Bytes = SecurityHive.Hive(BootKey, vista: !preVistaLsa) },
        ];
    }

    /// <summary>The SAM hive with <see cref="Users"/>: RC4 (domain F revision 2, Key0 revision 1) or AES (3 and 2).</summary>
    public static byte[] Sam(bool aes)
    {
        var sam = new RegText(@"HKEY_LOCAL_MACHINE\SAM")
            .Key(@"SAM\Domains\Account").Typed("F", 3, DomainF(aes))
            .Key(@"SAM\Domains\Account\Users");
        foreach (SamUser user in Users)
        {
            sam.Key($@"SAM\Domains\Account\Users\{user.Rid:X8}").Typed("F", 3, new byte[0x50]).Typed("V", 3, UserV(user, aes));
        }
        foreach (SamUser user in Users)
        {
            sam.Key($@"SAM\Domains\Account\Users\Names\{user.Name}").Typed("", user.Rid, []);
        }
        sam.Key(@"SAM\Domains\Builtin");
        return RegistryHiveFiles.Merge("SAM", @"HKEY_LOCAL_MACHINE\SAM", sam.ToString());
    }

    private static byte[] DomainF(bool aes)
    {
        byte[] f = new byte[0x68 + 0x40 + 0x30];
        BinaryPrimitives.WriteUInt32LittleEndian(f, aes ? 3u : 2u);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x48), 1003);          // NextRid
        Span<byte> key0 = f.AsSpan(0x68);
        byte[] salt = Convert.FromHexString("00112233445566778899AABBCCDDEEFF");
        salt.CopyTo(key0[(aes ? 16 : 8)..]);
        if (aes)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(key0, 2);
            BinaryPrimitives.WriteUInt32LittleEndian(key0[4..], 0x40);
            BinaryPrimitives.WriteUInt32LittleEndian(key0[8..], 0x10);
            BinaryPrimitives.WriteUInt32LittleEndian(key0[12..], 0x20);
            byte[] plain = [.. HashedBootKey, .. SHA256.HashData(HashedBootKey).AsSpan(0, 16)];
            SamCrypto.AesCbc(BootKey, salt, plain, encrypt: true).CopyTo(key0[32..]);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(key0, 1);
            BinaryPrimitives.WriteUInt32LittleEndian(key0[4..], 0x28);
            byte[] rc4Key = SamCrypto.Md5(salt, SamCrypto.Qwerty.ToArray(), BootKey, SamCrypto.Digits.ToArray());
            byte[] check = SamCrypto.Md5(HashedBootKey, SamCrypto.Digits.ToArray(), HashedBootKey, SamCrypto.Qwerty.ToArray());
            SamCrypto.Rc4(rc4Key, [.. HashedBootKey, .. check]).CopyTo(key0[24..]);
        }
        return f;
    }

    /// <summary>A user's V value: 0xCC header of (offset, length, unknown) entries, then name, LM and NT hash records.</summary>
    private static byte[] UserV(SamUser user, bool aes)
    {
        byte[] name = Encoding.Unicode.GetBytes(user.Name);
        // A long comment, as accounts often carry: the V values then spread over several bins (paging tests).
        byte[] comment = Encoding.Unicode.GetBytes(string.Concat(Enumerable.Repeat($"Account {user.Name} of WS-ALICE, managed by the IT desk. ", 24)));
        byte[] lm = HashRecord(user, aes, lm: true), nt = HashRecord(user, aes, lm: false);
        int nameAt = 0, commentAt = Align4(name.Length), lmAt = commentAt + Align4(comment.Length), ntAt = lmAt + Align4(lm.Length);
        byte[] v = new byte[0xCC + ntAt + Align4(nt.Length)];
        void Entry(int at, int offset, int length)
        {
            BinaryPrimitives.WriteInt32LittleEndian(v.AsSpan(at), offset);
            BinaryPrimitives.WriteInt32LittleEndian(v.AsSpan(at + 4), length);
        }
        Entry(0x0C, nameAt, name.Length);
        Entry(0x24, commentAt, comment.Length);
        comment.CopyTo(v, 0xCC + commentAt);
        Entry(0x9C, lmAt, lm.Length);
        Entry(0xA8, ntAt, nt.Length);
        name.CopyTo(v, 0xCC + nameAt);
        lm.CopyTo(v, 0xCC + lmAt);
        nt.CopyTo(v, 0xCC + ntAt);
        return v;
    }

    /// <summary>SAM_HASH (revision 1, RC4) or SAM_HASH_AES (revision 2); without a hash only the header (and the AES salt).</summary>
    private static byte[] HashRecord(SamUser user, bool aes, bool lm)
    {
        byte[]? hash = lm ? (user.StoreLm && !aes && user.Password is not null ? SamUser.Lm(user.Password) : null)
            : user.Password is null ? null : Md4.Hash(Encoding.Unicode.GetBytes(user.Password));
        if (aes)
        {
            byte[] salt = MD5.HashData(Encoding.ASCII.GetBytes($"{user.Rid}{(lm ? "lm" : "nt")}"));
            if (hash is null)
            {
                return lm ? [0, 0, 2, 0] : [0, 0, 2, 0, 0, 0, 0, 0, .. salt];
            }
            byte[] padded = [.. SamCrypto.DesRid(user.Rid, hash, encrypt: true), .. Enumerable.Repeat((byte)16, 16)];
            return [0, 0, 2, 0, 0x10, 0, 0, 0, .. salt, .. SamCrypto.AesCbc(HashedBootKey, salt, padded, encrypt: true)];
        }
        if (hash is null)
        {
            return [0, 0, 1, 0];
        }
        byte[] rid = BitConverter.GetBytes(user.Rid);
        byte[] rc4Key = SamCrypto.Md5(HashedBootKey, rid, (lm ? SamCrypto.LmPassword : SamCrypto.NtPassword).ToArray());
        return [0, 0, 1, 0, .. SamCrypto.Rc4(rc4Key, SamCrypto.DesRid(user.Rid, hash, encrypt: true))];
    }

    /// <summary>A Windows 7+ UserAssist record: count, focus count, focus time (ms), last run.</summary>
    public static byte[] UserAssistData(uint count, uint focus, uint focusMs, DateTime lastRun)
    {
        byte[] d = new byte[72];
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(4), count);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), focus);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), focusMs);
        BinaryPrimitives.WriteInt64LittleEndian(d.AsSpan(0x3C), lastRun.ToFileTimeUtc());
        return d;
    }

    private static int Align4(int n) => (n + 3) & ~3;
}
