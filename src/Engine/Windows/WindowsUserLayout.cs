using CloudMem.Engine.Core;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>
/// Offsets of the process, PEB, loader, thread and token structures, resolved once per kernel from its ISF (never
/// hard-coded). Fields that not every build has are nullable.
/// </summary>
internal sealed class WindowsUserLayout
{
    private static readonly ConditionalWeakTable<WindowsKernel, WindowsUserLayout> s_cache = [];

    private WindowsUserLayout(TypeModel t)
    {
        int Off(string s, string f) => t.RequiredOffset(s, f);
        int? Opt(string s, string f) => t.TryGetOffset(s, f, out int o) ? o : null;

        ProcessPid = Off("_EPROCESS", "UniqueProcessId");
        ProcessName = Off("_EPROCESS", "ImageFileName");
        ProcessDtb = Off("_EPROCESS", "Pcb") + Off("_KPROCESS", "DirectoryTableBase");
        ProcessPpid = Off("_EPROCESS", "InheritedFromUniqueProcessId");
        ProcessCreateTime = Off("_EPROCESS", "CreateTime");
        ProcessPeb = Off("_EPROCESS", "Peb");
        ProcessThreads = Off("_EPROCESS", "ThreadListHead");
        ProcessToken = Off("_EPROCESS", "Token");

        PebLdr = Off("_PEB", "Ldr");
        PebParameters = Off("_PEB", "ProcessParameters");
        PebImageBase = Off("_PEB", "ImageBaseAddress");

        ParamsCommandLine = Off("_RTL_USER_PROCESS_PARAMETERS", "CommandLine");
        ParamsImagePath = Off("_RTL_USER_PROCESS_PARAMETERS", "ImagePathName");
        ParamsEnvironment = Off("_RTL_USER_PROCESS_PARAMETERS", "Environment");
        ParamsEnvironmentSize = Opt("_RTL_USER_PROCESS_PARAMETERS", "EnvironmentSize");

        LdrLists = [Off("_PEB_LDR_DATA", "InLoadOrderModuleList"), Off("_PEB_LDR_DATA", "InMemoryOrderModuleList"), Off("_PEB_LDR_DATA", "InInitializationOrderModuleList")];
        EntryLinks = [Off("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks"), Off("_LDR_DATA_TABLE_ENTRY", "InMemoryOrderLinks"), Off("_LDR_DATA_TABLE_ENTRY", "InInitializationOrderLinks")];
        EntryDllBase = Off("_LDR_DATA_TABLE_ENTRY", "DllBase");
        EntrySize = Off("_LDR_DATA_TABLE_ENTRY", "SizeOfImage");
        EntryFullName = Off("_LDR_DATA_TABLE_ENTRY", "FullDllName");
        EntryBaseName = Off("_LDR_DATA_TABLE_ENTRY", "BaseDllName");
        EntryLoadTime = Opt("_LDR_DATA_TABLE_ENTRY", "LoadTime");

        UnicodeString = new UnicodeStringLayout(Off("_UNICODE_STRING", "Length"), Off("_UNICODE_STRING", "Buffer"));

        ThreadListEntry = Off("_ETHREAD", "ThreadListEntry");
        ThreadPid = Off("_ETHREAD", "Cid.UniqueProcess");
        ThreadTid = Off("_ETHREAD", "Cid.UniqueThread");
        ThreadStart = Off("_ETHREAD", "StartAddress");
        ThreadWin32Start = Off("_ETHREAD", "Win32StartAddress");
        ThreadCreateTime = Off("_ETHREAD", "CreateTime");
        ThreadExitTime = Opt("_ETHREAD", "ExitTime");

        TokenUserAndGroups = Off("_TOKEN", "UserAndGroups");
        TokenUserAndGroupCount = Off("_TOKEN", "UserAndGroupCount");
        TokenIntegrityLevelIndex = Opt("_TOKEN", "IntegrityLevelIndex");
        SidAndAttributesSize = t.RequiredSize("_SID_AND_ATTRIBUTES");
        SidAndAttributesSid = Off("_SID_AND_ATTRIBUTES", "Sid");
        SidAndAttributesAttributes = Off("_SID_AND_ATTRIBUTES", "Attributes");
        SidRevision = Off("_SID", "Revision");
        SidSubAuthorityCount = Off("_SID", "SubAuthorityCount");
        SidIdentifierAuthority = Off("_SID", "IdentifierAuthority");
        SidSubAuthority = Off("_SID", "SubAuthority");
    }

    public static WindowsUserLayout For(WindowsKernel kernel) => s_cache.GetValue(kernel, k => new WindowsUserLayout(k.Types));

    public int ProcessPid { get; }
    public int ProcessPpid { get; }
    public int ProcessName { get; }
    public int ProcessDtb { get; }
    public int ProcessCreateTime { get; }
    public int ProcessPeb { get; }
    public int ProcessThreads { get; }
    public int ProcessToken { get; }
    public int PebLdr { get; }
    public int PebParameters { get; }
    public int PebImageBase { get; }
    public int ParamsCommandLine { get; }
    public int ParamsImagePath { get; }
    public int ParamsEnvironment { get; }
    public int? ParamsEnvironmentSize { get; }

    /// <summary>_PEB_LDR_DATA list heads: load, memory, initialization order.</summary>
    public int[] LdrLists { get; }

    /// <summary>_LDR_DATA_TABLE_ENTRY links in the same order as <see cref="LdrLists"/>.</summary>
    public int[] EntryLinks { get; }

    public int EntryDllBase { get; }
    public int EntrySize { get; }
    public int EntryFullName { get; }
    public int EntryBaseName { get; }
    public int? EntryLoadTime { get; }
    public UnicodeStringLayout UnicodeString { get; }
    public int ThreadListEntry { get; }
    public int ThreadPid { get; }
    public int ThreadTid { get; }
    public int ThreadStart { get; }
    public int ThreadWin32Start { get; }
    public int ThreadCreateTime { get; }
    public int? ThreadExitTime { get; }
    public int TokenUserAndGroups { get; }
    public int TokenUserAndGroupCount { get; }
    public int? TokenIntegrityLevelIndex { get; }
    public int SidAndAttributesSize { get; }
    public int SidAndAttributesSid { get; }
    public int SidAndAttributesAttributes { get; }
    public int SidRevision { get; }
    public int SidSubAuthorityCount { get; }
    public int SidIdentifierAuthority { get; }
    public int SidSubAuthority { get; }
}
