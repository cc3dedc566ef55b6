using System.Globalization;

namespace CloudMem.Engine.Output;

/// <summary>Formatting helpers shared by reports.</summary>
public static class Hex
{
    /// <summary>"0x1F000".</summary>
    public static string Of(ulong value) => "0x" + value.ToString("X", CultureInfo.InvariantCulture);

    /// <summary>"0x1F000", or "-" for negative (meaning not applicable).</summary>
    public static string Of(long value) => value < 0 ? "-" : "0x" + value.ToString("X", CultureInfo.InvariantCulture);

    /// <summary>A signed value in hex: "0x1000" or "-0x23800000" (magnitude after the sign; long.MinValue included).</summary>
    public static string Signed(long value) => value < 0 ? "-" + Of((ulong)(-(value + 1)) + 1) : Of((ulong)value);

    /// <summary>Human size, e.g. "256.0 MiB".</summary>
    public static string Size(ulong bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return unit == 0 ? $"{bytes} B" : value.ToString("0.0", CultureInfo.InvariantCulture) + " " + units[unit];
    }

    /// <summary>Invariant decimal.</summary>
    public static string Dec(ulong value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Invariant decimal.</summary>
    public static string Dec(long value) => value.ToString(CultureInfo.InvariantCulture);
}
