#!/usr/bin/python3
"""Independent check of a swsusp swap file written by `cloudmem convert --to swsusp`.

Walks the swap header, the swap_map_page chain, swsusp_info and the PFN list in plain Python,
decompresses every LZO chunk with Debian's python3-lzo (liblzo2's lzo1x_decompress_safe), and
compares every saved page with the raw memory image it was made from.

usage: swsusp-python-lzo.py IMAGE.swap MEMORY.raw
Skips (exit 0 with a message) when python3-lzo is not installed.
"""
import struct
import sys

try:
    import lzo
except ImportError:
    print("skip: python3-lzo is not installed (apt-get install python3-lzo)")
    sys.exit(0)

PAGE = 4096


def main(image_path, raw_path):
    img = open(image_path, "rb").read()
    raw = open(raw_path, "rb")
    assert img[0xFF6:0x1000] == b"S1SUSPEND\0", "no S1SUSPEND signature"
    image, flags = struct.unpack_from("<QI", img, 0xFE0)
    crc_expected = struct.unpack_from("<I", img, 0xFDC)[0]
    compressed = not (flags & 2)
    if flags & 16:
        print("skip: LZ4 image (this check is for LZO)")
        return 0
    entries = []
    sector = image
    seen = set()
    while sector:
        assert sector not in seen, "map loop"
        seen.add(sector)
        page = img[sector * PAGE:(sector + 1) * PAGE]
        vals = struct.unpack_from("<512Q", page)
        for v in vals[:511]:
            if v == 0:
                break
            entries.append(v)
        else:
            sector = vals[511]
            continue
        break
    stream = lambda i: img[entries[i] * PAGE:(entries[i] + 1) * PAGE]
    info = stream(0)
    image_pages, pages = struct.unpack_from("<QQ", info, 0x1A0)
    meta = pages - image_pages - 1
    unc = []  # uncompressed stream pages after swsusp_info
    crc = 0
    if compressed:
        i = 1
        remaining = pages - 1
        chunks = 0
        while remaining > 0:
            first = stream(i)
            length = struct.unpack_from("<Q", first)[0]
            need = (length + 8 + PAGE - 1) // PAGE
            data = b"".join(stream(i + k) for k in range(need))[8:8 + length]
            n = min(32, remaining)
            out = lzo.decompress(data, False, n * PAGE)
            assert len(out) == n * PAGE, f"chunk {chunks}: {len(out)} bytes"
            unc.extend(out[k * PAGE:(k + 1) * PAGE] for k in range(n))
            i += need
            remaining -= n
            chunks += 1
        # the kernel's crc32_le(0, ...) has no pre/post inversion: undo zlib's
        crc = 0
        table = []
        for b in range(256):
            c = b
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            table.append(c)
        for p in unc:
            for byte in p:
                crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        assert crc == crc_expected, f"crc32 0x{crc:08X} != header 0x{crc_expected:08X}"
        print(f"{chunks} LZO chunks decoded by python-lzo; crc32 0x{crc:08X} matches the header")
    else:
        unc = [stream(i) for i in range(1, pages)]
    pfns = []
    for m in range(meta):
        for v in struct.unpack_from("<512Q", unc[m]):
            if v == 0xFFFFFFFFFFFFFFFF:
                break
            pfns.append(v)
    data_index = meta
    checked = zeros = 0
    for v in pfns:
        pfn = v & ~(1 << 63)
        raw.seek(pfn * PAGE)
        want = raw.read(PAGE).ljust(PAGE, b"\0")
        if v >> 63:
            got = bytes(PAGE)
            zeros += 1
        else:
            got = unc[data_index]
            data_index += 1
        assert got == want, f"pfn 0x{pfn:X} differs"
        checked += 1
    assert data_index == meta + image_pages
    print(f"ok: {checked} pages ({zeros} flagged zero) equal {raw_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
