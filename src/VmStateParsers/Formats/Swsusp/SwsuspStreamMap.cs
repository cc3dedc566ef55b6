namespace CloudMem.VmStateParsers.Formats.Swsusp;

/// <summary>
/// Where each page of the image stream (swsusp_info, PFN list, data or compressed chunks, in write order) lies in
/// the file, kept as extents of consecutive pages (a stream page per swap_map_page entry).
/// </summary>
internal sealed class SwsuspStreamMap
{
    private long[] _start = new long[64];   // first stream page of the extent
    private long[] _file = new long[64];    // file offset of that page
    private int _count;

    /// <summary>Stream pages recorded.</summary>
    public long Pages { get; private set; }

    /// <summary>Extents (runs of pages consecutive in the file).</summary>
    public int Extents => _count;

    public void Add(long fileOffset)
    {
        if (_count > 0 && _file[_count - 1] + ((Pages - _start[_count - 1]) * SwsuspLayout.PageSize) == fileOffset)
        {
            Pages++;
            return;
        }
        if (_count == _start.Length)
        {
            Array.Resize(ref _start, _count * 2);
            Array.Resize(ref _file, _count * 2);
        }
        _start[_count] = Pages;
        _file[_count] = fileOffset;
        _count++;
        Pages++;
    }

    /// <summary>File offset of stream page <paramref name="page"/> (0 &lt;= page &lt; Pages).</summary>
    public long FileOffset(long page) => FileOffset(page, out _);

    /// <summary>File offset of stream page <paramref name="page"/> and how many pages from it on are consecutive in the file.</summary>
    public long FileOffset(long page, out long contiguousPages)
    {
        int lo = 0;
        int hi = _count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (_start[mid] <= page)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }
        long end = lo + 1 < _count ? _start[lo + 1] : Pages;
        contiguousPages = end - page;
        return _file[lo] + ((page - _start[lo]) * SwsuspLayout.PageSize);
    }
}
