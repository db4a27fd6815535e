"""Tests of the ctypes binding against a built libcloudtaser.

Run: CLOUDTASER_LIB=/path/to/libcloudtaser.so.0 python3 bindings/python/test_cloudtaser.py
(scripts/test.sh runs it against the library installed into its temporary prefix).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cloudtaser  # noqa: E402

FP = "0ad50c05-1153-4508-9237-4cb2912e2c23"
# The same vector examples/consumer checks in scripts/test.sh (the C side).
FP_INIT_ROOM = "5af11b82299622a908c5aa10383bfcfd84f6cd251c7094e2246c7daf419dc463"


class Version(unittest.TestCase):
    def test_version(self):
        v = cloudtaser.version()
        parts = [int(x) for x in v.split(".")]
        self.assertEqual(len(parts), 3)
        self.assertEqual(cloudtaser.version_num(), (parts[0] << 16) | (parts[1] << 8) | parts[2])
        self.assertEqual(cloudtaser.abi_version(), cloudtaser.ABI_VERSION)

    def test_loaded_what_was_asked(self):
        want = os.environ.get("CLOUDTASER_LIB")
        if want:
            self.assertEqual(cloudtaser.library_path(), want)


class Fingerprint(unittest.TestCase):
    def test_canonical_lowercases(self):
        self.assertEqual(cloudtaser.fingerprint_canonical(FP.upper()), FP)
        self.assertEqual(cloudtaser.fingerprint_canonical(FP.encode()), FP)

    def test_room_hash_init_matches_hashlib(self):
        for fp in (FP, FP.upper(), "11111111-2222-4333-8444-555555555555"):
            canonical = fp.lower().encode()
            want = hashlib.sha256(b"cloudtaser-init:" + canonical).digest()
            self.assertEqual(cloudtaser.room_hash_init(fp), want)
        self.assertEqual(cloudtaser.room_hash_init(FP).hex(), FP_INIT_ROOM)

    def test_bad_fingerprints_raise_invalid_with_a_message(self):
        cases = {
            "": "36 characters",
            FP[:-1]: "36 characters",
            FP + "0": "more than",
            FP.replace("-", "x", 1): "expected '-' at position 9",
            "g" + FP[1:]: "non-hexadecimal character at position 1",
        }
        for bad, words in cases.items():
            for fn in (cloudtaser.fingerprint_canonical, cloudtaser.room_hash_init):
                with self.assertRaises(cloudtaser.CloudtaserError) as cm:
                    fn(bad)
                e = cm.exception
                self.assertEqual(e.code, cloudtaser.ERRORS["CT_E_INVALID"])
                self.assertEqual(e.code, -1)
                self.assertEqual(e.name, "CT_E_INVALID")
                self.assertIn(words, e.message)
                self.assertIn("CT_E_INVALID", str(e))

    def test_nul_and_wrong_types(self):
        with self.assertRaises(cloudtaser.CloudtaserError):
            cloudtaser.fingerprint_canonical(FP[:8] + "\0" + FP[9:])
        with self.assertRaises(TypeError):
            cloudtaser.room_hash_init(12345)


class Hashes(unittest.TestCase):
    def test_sha256(self):
        for data in (b"", b"abc", bytes(range(256)) * 300):
            self.assertEqual(cloudtaser.sha256(data), hashlib.sha256(data).digest())

    def test_room_hash_operational_bytes(self):
        der = b"\x30\x82\x01\x00" + bytes(range(200))
        self.assertEqual(cloudtaser.room_hash_operational(der), hashlib.sha256(der).digest())

    def test_room_hash_operational_refuses_pem_and_empty(self):
        for bad in (b"", b"-----BEGIN CERTIFICATE-----\n"):
            with self.assertRaises(cloudtaser.CloudtaserError) as cm:
                cloudtaser.room_hash_operational(bad)
            self.assertEqual(cm.exception.name, "CT_E_INVALID")
            self.assertTrue(cm.exception.message.startswith("room hash:"))

    @unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
    def test_room_hash_operational_real_certificate(self):
        with tempfile.TemporaryDirectory() as d:
            key, der = os.path.join(d, "k.pem"), os.path.join(d, "ca.der")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj",
                            "/CN=test ca", "-days", "1", "-outform", "DER", "-out", der],
                           check=True, capture_output=True)
            with open(der, "rb") as f:
                ca = f.read()
        self.assertEqual(cloudtaser.room_hash_operational(ca), hashlib.sha256(ca).digest())


class Errors(unittest.TestCase):
    def test_table_comes_from_the_library(self):
        e = cloudtaser.ERRORS
        self.assertEqual(e["CT_OK"], 0)
        # a few fixed points of the append-only list in common.h
        for name, code in (("CT_E_INVALID", -1), ("CT_E_NOMEM", -2), ("CT_E_TIMEOUT", -21),
                           ("CT_E_TLS", -40), ("CT_E_AUTH", -42), ("CT_E_NOTFOUND", -60),
                           ("CT_E_CONFLICT", -61), ("CT_E_DENIED", -63), ("CT_E_PROTO", -80),
                           ("CT_E_TOOBIG", -81)):
            self.assertEqual(e[name], code)
        self.assertGreaterEqual(len(e), 25)
        for name, code in e.items():
            self.assertEqual(cloudtaser.err_name(code), name)
            self.assertTrue(cloudtaser.strerror(code))

    def test_messages_and_unknown(self):
        self.assertEqual(cloudtaser.strerror(-21), "operation timed out")
        self.assertEqual(cloudtaser.err_name(-9999), "CT_E_UNKNOWN")
        err = cloudtaser.CloudtaserError(-60)
        self.assertEqual((err.code, err.name, err.message), (-60, "CT_E_NOTFOUND", "not found"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
