#!/usr/bin/python3
"""Independent reader for windows.hashdump: impacket's secretsdump LOCAL parsing (Debian python3-impacket) of a SAM
and a SYSTEM hive file. Prints one line per account, as secretsdump does: user:rid:lmhash:nthash:::
Usage: windows-hashdump-impacket.py SYSTEM.hive SAM.hive   (exit 3 when impacket is not installed)"""
import sys

try:
    from impacket.examples.secretsdump import LocalOperations, SAMHashes
except ImportError as e:
    print(f"impacket not available: {e}", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    boot_key = LocalOperations(sys.argv[1]).getBootKey()
    print(f"bootkey:{boot_key.hex()}")
    lines = []
    sam = SAMHashes(sys.argv[2], boot_key, isRemote=False, perSecretCallback=lines.append)
    sam.dump()
    sam.finish()
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
