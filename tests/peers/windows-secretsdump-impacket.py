#!/usr/bin/python3
"""Independent reader for windows.hashdump, windows.lsadump and windows.cachedump: impacket's secretsdump LOCAL parsing
(Debian python3-impacket) of hive files. Prints the boot key first (bootkey:HEX), then
  sam SYSTEM.hive SAM.hive:           one line per account, as secretsdump prints it: user:rid:lmhash:nthash:::
  security SYSTEM.hive SECURITY.hive: one line per decrypted secret value with its raw plaintext (current values, and
                                      old ones as NAME_history, as secretsdump names them): secret:NAME:HEX; then one
                                      line per cached logon as secretsdump prints it: cached:domain/user:$DCC2$N#user#hash
                                      (cached:domain/user:hash:user before Vista)
Usage: windows-secretsdump-impacket.py sam|security SYSTEM.hive HIVE   (exit 3 when impacket is not installed)"""
import sys

try:
    from impacket.examples.secretsdump import LocalOperations, LSASecrets, SAMHashes
except ImportError as e:
    print(f"impacket not available: {e}", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("sam", "security"):
        print(__doc__, file=sys.stderr)
        return 2
    boot_key = LocalOperations(sys.argv[2]).getBootKey()
    print(f"bootkey:{boot_key.hex()}")
    lines = []
    if sys.argv[1] == "sam":
        sam = SAMHashes(sys.argv[3], boot_key, isRemote=False, perSecretCallback=lines.append)
        sam.dump()
        sam.finish()
        for line in lines:
            print(line)
        return 0
    lsa = LSASecrets(sys.argv[3], boot_key, isRemote=False, history=True,
                     perSecretCallback=lambda kind, secret: lines.append(secret))
    # secretsdump formats each secret for printing (and drops some); take the raw plaintext it decrypted instead.
    lsa._LSASecrets__printSecret = lambda name, item: print(f"secret:{name}:{item.hex()}")
    lsa.dumpSecrets()
    lsa.dumpCachedHashes()
    lsa.finish()
    for line in lines:
        print(f"cached:{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
