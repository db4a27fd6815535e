"""cloudtaser - Python binding to libcloudtaser through its C ABI (ctypes).

Wraps the library's pure functions: version queries, fingerprint
canonicalisation, the beacon room hashes and SHA-256, and the error names and
messages. Nothing here handles key material: secrets stay inside the C
library (ct_secret), so the binding does not expose ct_init_psk or any key
or credential call.

Loading, first match wins:
  1. the path in the environment variable CLOUDTASER_LIB (a file name or a
     full path to libcloudtaser.so.N);
  2. ctypes.util.find_library("cloudtaser") (the system library path, i.e.
     what `meson install` into /usr/local or a distribution package gives);
  3. "libcloudtaser.so.<ABI>" through the dynamic loader (LD_LIBRARY_PATH).
The loaded library must have the ABI this module was written for
(ct_abi_version() == ABI_VERSION), otherwise ImportError.

Errors: every failing call raises CloudtaserError, whose .code is the
negative ct_err value, .name its symbolic name ("CT_E_INVALID") and .message
the library's message (from the caller-owned ct_error), so a caller can act
on it. The module keeps no state beyond the loaded library; every function
is thread-safe (the C functions it calls are).

Example:
    import cloudtaser
    fp = cloudtaser.fingerprint_canonical("0AD50C05-1153-4508-9237-4CB2912E2C23")
    print(cloudtaser.room_hash_init(fp).hex())
"""

import ctypes
import ctypes.util
import os

__all__ = [
    "ABI_VERSION", "CloudtaserError", "ERRORS", "FINGERPRINT_LEN", "ROOM_HASH_LEN",
    "abi_version", "err_name", "fingerprint_canonical", "library_path",
    "room_hash_init", "room_hash_operational", "sha256", "strerror", "version",
    "version_num",
]

ABI_VERSION = 0          # CT_ABI_VERSION this binding was written against
ROOM_HASH_LEN = 32       # CT_ROOM_HASH_LEN
FINGERPRINT_LEN = 36     # CT_FINGERPRINT_LEN
CT_OK = 0


class _CtError(ctypes.Structure):
    """struct ct_error (common.h): frozen layout."""
    _fields_ = [
        ("code", ctypes.c_int32),
        ("os_error", ctypes.c_int32),
        ("message", ctypes.c_char * 256),
    ]


def _load():
    candidates = []
    env = os.environ.get("CLOUDTASER_LIB")
    if env:
        candidates.append(env)
    found = ctypes.util.find_library("cloudtaser")
    if found:
        candidates.append(found)
    candidates.append("libcloudtaser.so.%d" % ABI_VERSION)
    errors = []
    for name in candidates:
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            errors.append("%s: %s" % (name, e))
            if name == env:
                # An explicit path that does not load is a configuration error,
                # not something to paper over with another copy of the library.
                break
    raise ImportError("cloudtaser: cannot load libcloudtaser (set CLOUDTASER_LIB to the path of "
                      "libcloudtaser.so.%d, or install it): %s" % (ABI_VERSION, "; ".join(errors)))


_lib, _lib_name = _load()


def _fn(name, restype, argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


_u8p = ctypes.POINTER(ctypes.c_uint8)
_errp = ctypes.POINTER(_CtError)

_ct_version = _fn("ct_version", ctypes.c_char_p, [])
_ct_version_num = _fn("ct_version_num", ctypes.c_uint32, [])
_ct_abi_version = _fn("ct_abi_version", ctypes.c_int, [])
_ct_global_init = _fn("ct_global_init", ctypes.c_int, [])
_ct_strerror = _fn("ct_strerror", ctypes.c_char_p, [ctypes.c_int])
_ct_err_name = _fn("ct_err_name", ctypes.c_char_p, [ctypes.c_int])
_ct_fingerprint_canonical = _fn("ct_fingerprint_canonical", ctypes.c_int,
                                [ctypes.c_char_p, ctypes.c_char_p, _errp])
_ct_room_hash_init = _fn("ct_room_hash_init", ctypes.c_int, [ctypes.c_char_p, _u8p, _errp])
_ct_room_hash_operational = _fn("ct_room_hash_operational", ctypes.c_int,
                                [ctypes.c_char_p, ctypes.c_size_t, _u8p, _errp])
_ct_sha256 = _fn("ct_sha256", ctypes.c_int, [ctypes.c_char_p, ctypes.c_size_t, _u8p])

if _ct_abi_version() != ABI_VERSION:
    raise ImportError("cloudtaser: %s has ABI %d, this binding needs ABI %d"
                      % (_lib_name, _ct_abi_version(), ABI_VERSION))


class CloudtaserError(Exception):
    """A libcloudtaser error: .code (negative ct_err), .name, .message, .os_error."""

    def __init__(self, code, message=None, os_error=0):
        self.code = int(code)
        self.name = err_name(self.code)
        self.message = message or strerror(self.code)
        self.os_error = int(os_error)
        super().__init__("%s: %s" % (self.name, self.message))


def _check(rc, err=None):
    if rc == CT_OK:
        return
    if err is not None and err.code == rc and err.message:
        raise CloudtaserError(rc, err.message.decode("utf-8", "replace"), err.os_error)
    raise CloudtaserError(rc)


def _text(s, what):
    if isinstance(s, str):
        s = s.encode("utf-8")
    if not isinstance(s, (bytes, bytearray)):
        raise TypeError("%s must be str or bytes, not %s" % (what, type(s).__name__))
    if b"\0" in s:
        raise CloudtaserError(-1, "%s contains a NUL character" % what)
    return bytes(s)


def _bytes(b, what):
    if isinstance(b, (bytes, bytearray, memoryview)):
        return bytes(b)
    raise TypeError("%s must be bytes, not %s" % (what, type(b).__name__))


def version():
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _ct_version().decode("ascii")


def version_num():
    """The loaded library's version as (MAJOR << 16) | (MINOR << 8) | PATCH."""
    return int(_ct_version_num())


def abi_version():
    """The loaded library's CT_ABI_VERSION (its soname number)."""
    return int(_ct_abi_version())


def library_path():
    """The name or path the library was loaded from."""
    return _lib_name


def strerror(code):
    """The library's static description of an error code ("invalid argument")."""
    return _ct_strerror(int(code)).decode("utf-8", "replace")


def err_name(code):
    """The symbolic name of an error code ("CT_E_INVALID"; "CT_E_UNKNOWN" if none)."""
    return _ct_err_name(int(code)).decode("ascii")


def _error_table():
    # The codes themselves come from the library (its X-macro list), not from
    # a copy here: every value from 0 down whose name is known.
    table = {}
    for code in range(0, -256, -1):
        name = err_name(code)
        if name != "CT_E_UNKNOWN":
            table[name] = code
    return table


ERRORS = _error_table()
"""{"CT_OK": 0, "CT_E_INVALID": -1, ...}: every error code of the loaded library."""


def fingerprint_canonical(fingerprint):
    """Validates a cluster fingerprint (a UUID, either case) and returns its
    canonical lowercase form. Raises CloudtaserError (CT_E_INVALID) saying
    what is wrong."""
    fp = _text(fingerprint, "fingerprint")
    out = ctypes.create_string_buffer(FINGERPRINT_LEN + 1)
    err = _CtError()
    _check(_ct_fingerprint_canonical(fp, out, ctypes.byref(err)), err)
    return out.value.decode("ascii")


def room_hash_init(fingerprint):
    """The init room hash, SHA-256("cloudtaser-init:" + canonical fingerprint),
    as 32 bytes. Raises CloudtaserError (CT_E_INVALID) for a bad fingerprint."""
    fp = _text(fingerprint, "fingerprint")
    out = (ctypes.c_uint8 * ROOM_HASH_LEN)()
    err = _CtError()
    _check(_ct_room_hash_init(fp, out, ctypes.byref(err)), err)
    return bytes(out)


def room_hash_operational(ca_der):
    """The operational room hash, SHA-256 of the cluster CA certificate in DER,
    as 32 bytes. Raises CloudtaserError (CT_E_INVALID) for empty input or PEM."""
    der = _bytes(ca_der, "ca_der")
    out = (ctypes.c_uint8 * ROOM_HASH_LEN)()
    err = _CtError()
    _check(_ct_room_hash_operational(der, len(der), out, ctypes.byref(err)), err)
    return bytes(out)


def sha256(data):
    """SHA-256 of data (bytes), computed by the library, as 32 bytes."""
    b = _bytes(data, "data")
    out = (ctypes.c_uint8 * 32)()
    _check(_ct_sha256(b, len(b), out))
    return bytes(out)


_check(_ct_global_init())
