"""Package signatures: one signature over `manifest.pb` authenticates the whole package.

The manifest lists the size and SHA-256 of every payload entry, so a device that verifies the
signature over the manifest bytes, and then checks each entry against the manifest, trusts nothing
it has not authenticated. The signature lives in the zip entry `META-INF/ota/signature`, which is
not itself in the manifest's payload list (it cannot hash itself).

Signature block format (UTF-8-free ASCII text, so `unzip -p PKG META-INF/ota/signature` is readable):

    rules_ota signature v1
    <algorithm> <key id> <signature>
    ...

one line per signature (several allow key rotation), each line ending in "\\n", fields separated by
one space: `algorithm` is `ed25519` or `rsa-pss-sha256` (a name matching [a-z0-9-]{1,32} that this
version does not know is skipped, so a future algorithm can be added next to a known one);
`key id` is the lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo; `signature`
is canonical base64 (RFC 4648, padded). Each signature is over `SIGNED_PREFIX + manifest bytes`:
the prefix keeps a signature made for anything else by the same key from passing as a package
signature.

Verification runs before anything else reads the package, so it reads the zip through the package
reader's bounded pre-signature pass (`package_reader.read_signed_parts`, on `ota.format.zipscan`): the
end record first, refused by declared entry count and directory size; the directory in bounded
pieces, refusing names that occur twice anywhere (otherwise one copy could be verified and
another one applied); then only the two entries it needs, each with a size ceiling, stored or
deflated only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NewType

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from ota.errors import OtaError
from ota.format import package_reader
from ota.format.layout import MANIFEST_ENTRY, SIGNATURE_ENTRY
from ota.io import fileio

HEADER_LINE = "rules_ota signature v1"
SIGNED_PREFIX = b"rules_ota package manifest v1\x00"

ED25519 = "ed25519"
RSA_PSS_SHA256 = "rsa-pss-sha256"
ALGORITHMS = (ED25519, RSA_PSS_SHA256)
MIN_RSA_BITS = 3072
# PSS salt = digest length: the usual choice, and fixed so verification accepts exactly one form.
PSS_SALT_BYTES = 32

# Ceilings for what verification reads: the package reader's (docs/security.md, memory bounds).
MAX_MANIFEST_BYTES = package_reader.MAX_MANIFEST_BYTES
MAX_SIGNATURE_BLOCK_BYTES = package_reader.MAX_SIGNATURE_BYTES
MAX_SIGNATURES = 16

_ALGORITHM_NAME = re.compile(r"[a-z0-9-]{1,32}")
_KEY_ID = re.compile(r"[0-9a-f]{64}")

KeyId = NewType("KeyId", str)
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
Package = str | os.PathLike | BinaryIO


@dataclass(frozen=True)
class Signature:
    """One line of the signature block."""

    algorithm: str
    key_id: KeyId
    value: bytes


# ---------------------------------------------------------------------------------------------
# Keys


def key_id(key: PublicKey | PrivateKey) -> KeyId:
    """The SHA-256 (lowercase hex) of the public key's DER SubjectPublicKeyInfo."""
    public = key.public_key() if isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyId(hashlib.sha256(der).hexdigest())


def _check_key_type(key: object, where: str) -> None:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < MIN_RSA_BITS:
            raise OtaError(where, f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
    elif not isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        raise OtaError(where, f"unsupported key type {type(key).__name__} (Ed25519 or RSA {MIN_RSA_BITS}+ only)")


def _read_key_file(path: str) -> bytes:
    try:
        return fileio.read_bounded(path, fileio.MAX_SMALL_INPUT_BYTES)
    except OSError as err:
        raise OtaError(path, f"cannot read key file ({err.strerror})") from None


def load_private_key(path: str, password: bytes | None = None) -> PrivateKey:
    """Loads a PEM (PKCS#8 or traditional) Ed25519 or RSA-3072+ private key."""
    try:
        key = serialization.load_pem_private_key(_read_key_file(path), password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise OtaError(path, f"not a usable PEM private key ({err})") from None
    _check_key_type(key, path)
    return key  # type: ignore[return-value]


def load_public_key(path: str) -> PublicKey:
    """Loads a PEM SubjectPublicKeyInfo Ed25519 or RSA-3072+ public key (a device's trust store)."""
    try:
        key = serialization.load_pem_public_key(_read_key_file(path))
    except (ValueError, UnsupportedAlgorithm) as err:
        raise OtaError(path, f"not a usable PEM public key ({err})") from None
    _check_key_type(key, path)
    return key  # type: ignore[return-value]


def public_key_pem(key: PublicKey | PrivateKey) -> bytes:
    """The PEM of the public half, as `load_public_key` reads it."""
    public = key.public_key() if isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES)


# ---------------------------------------------------------------------------------------------
# The signature block


def sign_manifest(manifest: bytes, keys: Sequence[PrivateKey]) -> bytes:
    """Returns the signature block for `manifest`, one line per key, in the order given."""
    if not keys:
        raise OtaError("signing", "no signing key given")
    if len(keys) > MAX_SIGNATURES:
        raise OtaError("signing", f"{len(keys)} keys given; at most {MAX_SIGNATURES} signatures fit a block")
    message = SIGNED_PREFIX + manifest
    lines = [HEADER_LINE]
    seen: set[str] = set()
    for key in keys:
        _check_key_type(key, "signing key")
        kid = key_id(key)
        if kid in seen:
            raise OtaError("signing", f"key {kid} given twice")
        seen.add(kid)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            algorithm, value = ED25519, key.sign(message)
        else:
            algorithm, value = RSA_PSS_SHA256, key.sign(message, _pss(), hashes.SHA256())
        lines.append(f"{algorithm} {kid} {base64.b64encode(value).decode('ascii')}")
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_block(block: bytes, where: str = SIGNATURE_ENTRY) -> list[Signature]:
    """Parses a signature block strictly; any deviation from the format is `malformed`."""

    def malformed(problem: str) -> OtaError:
        return OtaError(where, f"malformed signature block: {problem}")

    if len(block) > MAX_SIGNATURE_BLOCK_BYTES:
        raise malformed(f"{len(block)} bytes, more than the {MAX_SIGNATURE_BLOCK_BYTES} allowed")
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError as err:
        raise malformed(f"non-ASCII byte at offset {err.start}") from None
    if not text.endswith("\n"):
        raise malformed("does not end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != HEADER_LINE:
        raise malformed(f"line 1 is not {HEADER_LINE!r}")
    if len(lines) < 2:
        raise malformed("holds no signature line")
    if len(lines) - 1 > MAX_SIGNATURES:
        raise malformed(f"{len(lines) - 1} signature lines, more than {MAX_SIGNATURES}")
    signatures: list[Signature] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(" ")
        if len(fields) != 3:
            raise malformed(f"line {number} has {len(fields)} space-separated fields, expected 3")
        algorithm, kid, encoded = fields
        if not _ALGORITHM_NAME.fullmatch(algorithm):
            raise malformed(f"line {number}: algorithm name is not [a-z0-9-]{{1,32}}")
        if not _KEY_ID.fullmatch(kid):
            raise malformed(f"line {number}: key id is not 64 lowercase hex digits")
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise malformed(f"line {number}: signature is not base64") from None
        if not value or base64.b64encode(value).decode("ascii") != encoded:
            raise malformed(f"line {number}: signature is empty or not canonical base64")
        if any(s.key_id == kid and s.algorithm == algorithm for s in signatures):
            raise malformed(f"line {number}: second signature by key {kid}")
        signatures.append(Signature(algorithm, KeyId(kid), value))
    return signatures


def _verify_one(signature: Signature, key: PublicKey, message: bytes) -> bool:
    try:
        if signature.algorithm == ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature.value, message)
            return True
        if signature.algorithm == RSA_PSS_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature.value, message, _pss(), hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    return False  # algorithm does not fit the trusted key's type


def verify_manifest(
    manifest: bytes, block: bytes, trusted_public_keys: Iterable[PublicKey], *, where: str = "package"
) -> KeyId:
    """Checks `block` over `manifest`; returns the id of the trusted key whose signature verifies.

    Succeeds when any signature by a trusted key verifies (key rotation: packages signed by the old
    and the new key install on devices that trust either). Otherwise, in this order of precedence:
    a trusted key's signature that fails is `bad signature`; only unknown algorithm names is
    `unknown algorithm`; else `unknown key`.
    """
    return _check_signatures(manifest, block, _trust_store(trusted_public_keys, where), where)


def _trust_store(trusted_public_keys: Iterable[PublicKey], where: str) -> dict[str, PublicKey]:
    trusted: dict[str, PublicKey] = {}
    for key in trusted_public_keys:
        _check_key_type(key, "trusted key")
        trusted[key_id(key)] = key
    if not trusted:
        raise OtaError(where, "no trusted public key configured; refusing to accept any package")
    return trusted


def _check_signatures(manifest: bytes, block: bytes, trusted: dict[str, PublicKey], where: str) -> KeyId:
    signatures = parse_block(block, f"{where}: {SIGNATURE_ENTRY}")
    message = SIGNED_PREFIX + manifest
    failed: list[Signature] = []
    for signature in signatures:
        key = trusted.get(signature.key_id)
        if key is None or signature.algorithm not in ALGORITHMS:
            continue
        if _verify_one(signature, key, message):
            return signature.key_id
        failed.append(signature)
    if failed:
        first = failed[0]
        raise OtaError(
            where,
            f"bad signature: {first.algorithm} signature by trusted key {first.key_id} does not match {MANIFEST_ENTRY}",
        )
    unknown = sorted({s.algorithm for s in signatures if s.algorithm not in ALGORITHMS})
    if unknown and all(s.algorithm not in ALGORITHMS for s in signatures):
        raise OtaError(where, f"unknown signature algorithm {', '.join(unknown)} (known: {', '.join(ALGORITHMS)})")
    ids = ", ".join(sorted({s.key_id for s in signatures if s.algorithm in ALGORITHMS}))
    raise OtaError(where, f"unknown key: signed only by keys the device does not trust ({ids})")


# ---------------------------------------------------------------------------------------------
# Packages


def _package_name(package: Package) -> str:
    if isinstance(package, (str, os.PathLike)):
        return os.fspath(package)  # type: ignore[return-value]
    return str(getattr(package, "name", "package"))


def _signed_parts(file: BinaryIO, where: str) -> tuple[bytes, bytes | None]:
    """The manifest and signature block, read by the package reader's bounded pre-signature pass."""
    limits = package_reader.Limits(max_manifest_bytes=MAX_MANIFEST_BYTES, max_signature_bytes=MAX_SIGNATURE_BLOCK_BYTES)
    try:
        _, manifest, block = package_reader.read_signed_parts(file, where, limits)
    except OSError as err:
        raise OtaError(where, f"cannot read package ({err.strerror or err})") from None
    return manifest, block


def verify(package: Package, trusted_public_keys: Iterable[PublicKey]) -> KeyId:
    """Verifies a package's signature; returns the id of the trusted key that signed it.

    `package` is a path or an open binary file (pass the same file object to the reader
    afterwards, so the bytes verified are the bytes applied). Only the zip's end record, its
    directory (in bounded pieces) and the two signed parts are read, each under a fixed limit:
    memory and time stay bounded whatever the file claims (docs/security.md).

    Raises:
      OtaError: unsigned, malformed block, unknown algorithm, unknown key, bad signature, or a
        package zip that cannot be read safely — one line each, naming the package.
    """
    where = _package_name(package)
    trusted = _trust_store(trusted_public_keys, where)  # a misconfigured device fails first
    if isinstance(package, (str, os.PathLike)):
        with package_reader.open_file(os.fspath(package)) as file:
            manifest, block = _signed_parts(file, where)
    else:
        manifest, block = _signed_parts(package, where)
    if block is None:
        raise OtaError(where, f"unsigned: no {SIGNATURE_ENTRY} entry")
    return _check_signatures(manifest, block, trusted, where)


def signature_entry_info() -> zipfile.ZipInfo:
    """The fixed metadata of the signature entry, so signing stays byte-reproducible."""
    info = zipfile.ZipInfo(SIGNATURE_ENTRY, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    return info


def sign(package_in: str, package_out: str, keys: Sequence[PrivateKey]) -> bytes:
    """Writes `package_out` = `package_in` plus a signature entry; returns the signature block.

    Every existing entry keeps its exact bytes (the signature is appended, nothing is
    recompressed), so an Ed25519-signed package is as reproducible as the unsigned one. A package
    that already holds a signature is refused: sign the unsigned package with all keys at once.
    """
    if os.path.abspath(package_in) == os.path.abspath(package_out):
        raise OtaError(package_out, "--out must differ from --in")
    with package_reader.open_file(package_in) as file:
        manifest, existing = _signed_parts(file, package_in)
    if existing is not None:
        raise OtaError(
            package_in,
            f"already signed ({SIGNATURE_ENTRY} present); sign the unsigned package with every key in one run",
        )
    block = sign_manifest(manifest, keys)
    tmp = f"{package_out}.tmp"
    try:
        shutil.copyfile(package_in, tmp)
        with zipfile.ZipFile(tmp, "a") as out:
            out.writestr(signature_entry_info(), block)
        os.replace(tmp, package_out)
    except OSError as err:
        raise OtaError(package_out, f"cannot write signed package ({err.strerror or err})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return block
