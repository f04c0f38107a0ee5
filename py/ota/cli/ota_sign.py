"""ota_sign --key KEY [--key KEY2] --in PKG --out SIGNED: signs an OTA package's manifest.

Signing is a separate step from building on purpose: a production private key must never become
the input of a Bazel action, which a remote cache or remote executor would receive. Run this on the
signing host, over the unsigned package the build produced (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from ota.actions import toolchain_identity
from ota.errors import UsageError
from ota.format import signing
from ota.io import fileio, runner

_KEYS = flags.DEFINE_multi_string(
    "key",
    [],
    "PEM private key (Ed25519, or RSA of 3072+ bits signed with RSA-PSS-SHA256). Repeat "
    "for several signatures (key rotation: sign with the old and the new key).",
)
_IN = flags.DEFINE_string("in", None, "The unsigned package zip.")
_OUT = flags.DEFINE_string("out", None, "Where to write the signed package.")
_PASSWORD_FILE = flags.DEFINE_string(
    "password_file", None, "File whose first line is the password of encrypted PEM keys."
)
_PRINT_KEY_ID = flags.DEFINE_bool(
    "print_key_id", False, "Print each signing key's id (SHA-256 of its public key DER) on stdout after signing."
)


def _password() -> bytes | None:
    if _PASSWORD_FILE.value is None:
        return None
    return fileio.read_file(_PASSWORD_FILE.value, fileio.MAX_SMALL_INPUT_BYTES).split(b"\n", 1)[0].rstrip(b"\r")


def main(argv: Sequence[str]) -> None:
    toolchain_identity.verify_flag()
    if len(argv) != 1:
        raise UsageError(f"unexpected arguments {' '.join(argv[1:])}; use --key, --in and --out")
    if not _KEYS.value or _IN.value is None or _OUT.value is None:
        raise UsageError("--key, --in and --out are required")
    fileio.require_seekable(_IN.value)
    password = _password()
    keys = [signing.load_private_key(path, password) for path in _KEYS.value]
    signing.sign(_IN.value, _OUT.value, keys)
    if _PRINT_KEY_ID.value:
        for key in keys:
            print(signing.key_id(key))


def run() -> None:
    runner.run_absl("ota_sign", main)


if __name__ == "__main__":
    run()
