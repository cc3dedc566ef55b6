using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>
/// The members of the kernel's ISF that a Windows walk cannot do without: a missing one is a
/// <see cref="KernelNotFoundException"/> naming the symbol table and the member (the one place that says so).
/// </summary>
internal static class WindowsTypes
{
    /// <summary>Byte offset of <paramref name="field"/> (a dotted path) in <paramref name="structName"/>.</summary>
    internal static int RequiredOffset(this TypeModel t, string structName, string field)
        => t.TryGetOffset(structName, field, out int offset) ? offset : throw Missing(t, $"{structName}.{field}");

    /// <summary>The member <paramref name="field"/> of <paramref name="structName"/> (with its bit position).</summary>
    internal static FieldInfo RequiredField(this TypeModel t, string structName, string field)
        => t.FindField(structName, field) ?? throw Missing(t, $"{structName}.{field}");

    /// <summary>Size in bytes of <paramref name="structName"/>.</summary>
    internal static int RequiredSize(this TypeModel t, string structName)
        => t.TryGetSize(structName, out int size) ? size : throw Missing(t, structName);

    private static KernelNotFoundException Missing(TypeModel t, string what) => new($"{t.Source} has no {what}");
}
