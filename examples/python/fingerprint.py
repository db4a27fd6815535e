#!/usr/bin/env python3
"""fingerprint.py - libcloudtaser from Python through its C ABI (ctypes).

Usage: fingerprint.py FINGERPRINT [CA_DER_FILE]

Prints the canonical fingerprint (only its first 8 characters, as the tools
do), the init room hash the operator and the bridge present to the beacon
and, given the cluster CA certificate (DER), the operational room hash.
Exit status: 0 success, 1 the library refused the input, 2 bad usage.

The binding is bindings/python/cloudtaser.py; it finds the library through
CLOUDTASER_LIB, the system library path or LD_LIBRARY_PATH, e.g.
  CLOUDTASER_LIB=build/libcloudtaser/libcloudtaser.so.0 \\
  PYTHONPATH=bindings/python examples/python/fingerprint.py 0ad50c05-1153-4508-9237-4cb2912e2c23
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "bindings", "python"))
import cloudtaser  # noqa: E402


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: %s FINGERPRINT [CA_DER_FILE]" % os.path.basename(argv[0]), file=sys.stderr)
        return 2
    try:
        fp = cloudtaser.fingerprint_canonical(argv[1])
        print("libcloudtaser %s (ABI %d)" % (cloudtaser.version(), cloudtaser.abi_version()))
        print("fingerprint: %s..." % fp[:8])
        print("init room hash: %s" % cloudtaser.room_hash_init(fp).hex())
        if len(argv) == 3:
            with open(argv[2], "rb") as f:
                ca = f.read()
            print("operational room hash: %s" % cloudtaser.room_hash_operational(ca).hex())
    except cloudtaser.CloudtaserError as e:
        print("error: %s (%s)" % (e.message, e.name), file=sys.stderr)
        return 1
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
