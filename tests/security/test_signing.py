"""ota.format.signing and ota_sign: sign over manifest.pb, verify with bounded reads, distinct failures."""

from __future__ import annotations

import base64
import hashlib
import pathlib
import subprocess
import sys
import zipfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import hostile_zip
from ota.errors import OtaError
from ota.format import layout, signing
from ota.proto import ota_manifest_pb2

REPO = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): stay inside Bazel runfiles
TEST_KEY = REPO / "release" / "keys" / "TEST_ONLY_ota_ed25519.pem"
TEST_PUB = REPO / "release" / "keys" / "TEST_ONLY_ota_ed25519.pub.pem"


def _manifest(payload: dict[str, bytes]) -> bytes:
    manifest = ota_manifest_pb2.OtaManifest(format_version=1, type=ota_manifest_pb2.OtaManifest.INCREMENTAL)
    manifest.precondition.device.append("example")
    for name in sorted(payload):
        manifest.payload.add(name=name, size=len(payload[name]), sha256=hashlib.sha256(payload[name]).hexdigest())
    return manifest.SerializeToString(deterministic=True)


def write_package(
    path: pathlib.Path,
    payload: dict[str, bytes] | None = None,
    *,
    manifest: bytes | None = None,
    extra: list[tuple[str, bytes]] = (),
) -> pathlib.Path:
    """A minimal package zip: manifest.pb plus payload entries (deterministic)."""
    payload = (
        {"patch/system/bin/app.p": b"BSDIFF40" + b"\0" * 40, "system/etc/new.conf": b"x=1\n" * 50}
        if payload is None
        else payload
    )
    entries = [("manifest.pb", _manifest(payload) if manifest is None else manifest)] + sorted(payload.items())
    path.write_bytes(hostile_zip.write_zip(entries + list(extra)))
    return path


def rsa_key(bits: int = 3072) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def rsa3072() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
def ed() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _error(call) -> str:
    with pytest.raises(OtaError) as info:
        call()
    return str(info.value)


def test_ed25519_sign_verify_is_reproducible_and_keeps_every_entry_byte(tmp_path, ed):
    unsigned = write_package(tmp_path / "u.zip")
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    signing.sign(str(unsigned), str(a), [ed])
    signing.sign(str(unsigned), str(b), [ed])
    assert a.read_bytes() == b.read_bytes()
    assert signing.verify(str(a), [ed.public_key()]) == signing.key_id(ed)
    # Entries are appended, never recompressed: the unsigned archive's local records are a prefix.
    with zipfile.ZipFile(unsigned) as zf:
        records_end = zf.start_dir
        originals = {i.filename: zf.read(i) for i in zf.infolist()}
    assert a.read_bytes()[:records_end] == unsigned.read_bytes()[:records_end]
    with zipfile.ZipFile(a) as zf:
        assert zf.namelist()[-1] == layout.SIGNATURE_ENTRY
        assert {n: zf.read(n) for n in originals} == originals


def test_key_id_is_sha256_of_public_key_der(ed):
    der = ed.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signing.key_id(ed) == signing.key_id(ed.public_key()) == hashlib.sha256(der).hexdigest()


def test_rsa_pss_signatures_verify_but_differ_between_runs(tmp_path, rsa3072):
    unsigned = write_package(tmp_path / "u.zip")
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    block_a = signing.sign(str(unsigned), str(a), [rsa3072])
    block_b = signing.sign(str(unsigned), str(b), [rsa3072])
    assert block_a.split(b" ")[0:2] == block_b.split(b" ")[0:2]  # same header, algorithm and key id
    assert block_a != block_b  # PSS salts are random
    assert block_a.decode().splitlines()[1].startswith(f"rsa-pss-sha256 {signing.key_id(rsa3072)} ")
    for path in (a, b):
        assert signing.verify(str(path), [rsa3072.public_key()]) == signing.key_id(rsa3072)


def test_rsa_below_3072_bits_is_refused(tmp_path):
    small = rsa_key(2048)
    pem = tmp_path / "small.pem"
    pem.write_bytes(
        small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    assert (
        _error(lambda: signing.load_private_key(str(pem)))
        == f"{pem}: RSA key has 2048 bits; at least 3072 are required"
    )
    assert "at least 3072" in _error(
        lambda: signing.verify(str(write_package(tmp_path / "u.zip")), [small.public_key()])
    )


def test_rotation_both_keys_sign_either_key_verifies(tmp_path, ed, rsa3072):
    signed = tmp_path / "s.zip"
    signing.sign(str(write_package(tmp_path / "u.zip")), str(signed), [rsa3072, ed])
    assert signing.verify(str(signed), [ed.public_key()]) == signing.key_id(ed)
    assert signing.verify(str(signed), [rsa3072.public_key()]) == signing.key_id(rsa3072)
    # An open file object works too (the reader can then use the very same file).
    with open(signed, "rb") as f:
        assert signing.verify(f, [ed.public_key()]) == signing.key_id(ed)


def test_unsigned(tmp_path, ed):
    pkg = write_package(tmp_path / "u.zip")
    assert (
        _error(lambda: signing.verify(str(pkg), [ed.public_key()]))
        == f"{pkg}: unsigned: no META-INF/ota/signature entry"
    )


def _resigned_with_block(tmp_path: pathlib.Path, block: bytes, manifest: bytes | None = None) -> pathlib.Path:
    return write_package(tmp_path / "forged.zip", manifest=manifest, extra=[(layout.SIGNATURE_ENTRY, block)])


def test_bad_signature_when_manifest_altered(tmp_path, ed):
    block = signing.sign_manifest(_manifest({"a": b"1"}), [ed])
    pkg = _resigned_with_block(tmp_path, block, manifest=_manifest({"a": b"2"}))
    assert (
        _error(lambda: signing.verify(str(pkg), [ed.public_key()]))
        == f"{pkg}: bad signature: ed25519 signature by trusted key {signing.key_id(ed)} does not match manifest.pb"
    )


def test_bad_signature_when_algorithm_does_not_fit_the_key(tmp_path, ed):
    manifest = _manifest({})
    block = signing.sign_manifest(manifest, [ed]).replace(b"ed25519 ", b"rsa-pss-sha256 ")
    pkg = _resigned_with_block(tmp_path, block, manifest)
    assert ": bad signature: rsa-pss-sha256 signature by trusted key" in _error(
        lambda: signing.verify(str(pkg), [ed.public_key()])
    )


def test_unknown_key(tmp_path, ed):
    signed = tmp_path / "s.zip"
    signing.sign(str(write_package(tmp_path / "u.zip")), str(signed), [ed])
    other = ed25519.Ed25519PrivateKey.generate()
    assert (
        _error(lambda: signing.verify(str(signed), [other.public_key()]))
        == f"{signed}: unknown key: signed only by keys the device does not trust ({signing.key_id(ed)})"
    )


def test_unknown_algorithm_and_forward_compatible_rotation(tmp_path, ed):
    manifest = _manifest({})
    kid = signing.key_id(ed)
    future = f"ml-dsa-65 {kid} {base64.b64encode(b'z' * 40).decode()}\n".encode()
    only_future = _resigned_with_block(tmp_path, f"{signing.HEADER_LINE}\n".encode() + future, manifest)
    assert (
        _error(lambda: signing.verify(str(only_future), [ed.public_key()]))
        == f"{only_future}: unknown signature algorithm ml-dsa-65 (known: ed25519, rsa-pss-sha256)"
    )
    both = tmp_path / "both"
    both.mkdir()
    mixed = _resigned_with_block(both, signing.sign_manifest(manifest, [ed]) + future, manifest)
    assert signing.verify(str(mixed), [ed.public_key()]) == kid


KID = "ab" * 32
SIG = base64.b64encode(b"s" * 64).decode()


@pytest.mark.parametrize(
    "block, problem",
    [
        (b"", "does not end with a newline"),
        (b"rules_ota signature v2\n" + f"ed25519 {KID} {SIG}\n".encode(), "line 1 is not 'rules_ota signature v1'"),
        (b"rules_ota signature v1\n", "holds no signature line"),
        (f"rules_ota signature v1\ned25519 {KID} {SIG}".encode(), "does not end with a newline"),
        (f"rules_ota signature v1\ned25519  {KID} {SIG}\n".encode(), "line 2 has 4 space-separated fields, expected 3"),
        (f"rules_ota signature v1\nEd25519 {KID} {SIG}\n".encode(), "line 2: algorithm name is not [a-z0-9-]{1,32}"),
        (
            f"rules_ota signature v1\ned25519 {KID.upper()} {SIG}\n".encode(),
            "line 2: key id is not 64 lowercase hex digits",
        ),
        (
            f"rules_ota signature v1\ned25519 {KID[:-2]} {SIG}\n".encode(),
            "line 2: key id is not 64 lowercase hex digits",
        ),
        (f"rules_ota signature v1\ned25519 {KID} {SIG[:-1]}!\n".encode(), "line 2: signature is not base64"),
        (
            f"rules_ota signature v1\ned25519 {KID} c3M=\n".replace("c3M=", "c3N=").encode(),
            "line 2: signature is empty or not canonical base64",
        ),
        (
            f"rules_ota signature v1\ned25519 {KID} {SIG}\ned25519 {KID} {SIG}\n".encode(),
            f"line 3: second signature by key {KID}",
        ),
        (
            f"rules_ota signature v1\ned25519 {KID} {SIG}\n\n".encode(),
            "line 3 has 1 space-separated fields, expected 3",
        ),
        ("rules_ota signature v1\n\u00e9d25519\n".encode(), "non-ASCII byte at offset 23"),
        (("rules_ota signature v1\n" + f"ed25519 {KID} {SIG}\n" * 17).encode(), "17 signature lines, more than 16"),
        (b"x" * (64 * 1024 + 1), "65537 bytes, more than the 65536 allowed"),
    ],
)
def test_malformed_blocks(block, problem):
    assert _error(lambda: signing.parse_block(block)) == f"META-INF/ota/signature: malformed signature block: {problem}"


def test_duplicate_entry_names_are_refused(tmp_path, ed):
    manifest = _manifest({})
    block = signing.sign_manifest(manifest, [ed])
    pkg = tmp_path / "dup.zip"
    write_package(
        pkg, {}, manifest=manifest, extra=[(layout.SIGNATURE_ENTRY, block), ("manifest.pb", _manifest({"evil": b"1"}))]
    )
    assert (
        _error(lambda: signing.verify(str(pkg), [ed.public_key()])) == f"{pkg}: zip entry 'manifest.pb': appears twice"
    )


def test_oversized_manifest_is_refused_before_inflating(tmp_path, ed):
    pkg = write_package(
        tmp_path / "bomb.zip",
        {},
        manifest=b"\0" * (signing.MAX_MANIFEST_BYTES + 1),
        extra=[(layout.SIGNATURE_ENTRY, signing.sign_manifest(b"", [ed]))],
    )
    assert pkg.stat().st_size < 200_000  # a deflate bomb: tiny on disk
    assert (
        _error(lambda: signing.verify(str(pkg), [ed.public_key()]))
        == f"{pkg}: manifest.pb: {signing.MAX_MANIFEST_BYTES + 1} bytes, more than the limit of "
        f"{signing.MAX_MANIFEST_BYTES}"
    )


def test_entry_whose_size_field_lies_is_refused(tmp_path, ed):
    manifest = _manifest({})
    pkg = write_package(
        tmp_path / "lie.zip",
        {},
        manifest=manifest,
        extra=[(layout.SIGNATURE_ENTRY, signing.sign_manifest(manifest, [ed]))],
    )
    original = pkg.read_bytes()
    for declared, problem in (
        (3, "holds more than its declared 3 bytes"),
        (10**6, f"holds {len(manifest)} bytes, not its declared 1000000"),
    ):
        raw = bytearray(original)
        hostile_zip.set_declared_size(raw, "manifest.pb", declared)
        pkg.write_bytes(bytes(raw))
        assert _error(lambda: signing.verify(str(pkg), [ed.public_key()])) == f"{pkg}: zip entry manifest.pb: {problem}"


def test_not_a_zip(tmp_path, ed):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x05\x06" + b"\xff" * 30)
    assert (
        _error(lambda: signing.verify(str(junk), [ed.public_key()]))
        == f"{junk}: not a zip file (no end of central directory record)"
    )
    assert (
        _error(lambda: signing.verify(str(tmp_path / "none.zip"), [ed.public_key()]))
        == f"{tmp_path / 'none.zip'}: no such package file"
    )


def test_no_trusted_key_accepts_nothing(tmp_path, ed):
    signed = tmp_path / "s.zip"
    signing.sign(str(write_package(tmp_path / "u.zip")), str(signed), [ed])
    assert (
        _error(lambda: signing.verify(str(signed), []))
        == f"{signed}: no trusted public key configured; refusing to accept any package"
    )


def test_already_signed_package_is_refused(tmp_path, ed):
    signed = tmp_path / "s.zip"
    signing.sign(str(write_package(tmp_path / "u.zip")), str(signed), [ed])
    assert (
        _error(lambda: signing.sign(str(signed), str(tmp_path / "t.zip"), [ed]))
        == f"{signed}: already signed (META-INF/ota/signature present); sign the unsigned package with every key in one run"
    )


def test_committed_test_key_is_marked_and_matches_its_public_half(tmp_path):
    readme = (TEST_KEY.parent / "README.md").read_text()
    assert "NEVER use it" in readme
    key = signing.load_private_key(str(TEST_KEY))
    public = signing.load_public_key(str(TEST_PUB))
    assert signing.key_id(key) == signing.key_id(public)
    assert signing.key_id(public) in readme


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ota.cli.ota_sign", *args], capture_output=True, text=True, check=False
    )


def test_cli_signs_with_the_test_key_and_reports_errors(tmp_path):
    unsigned = write_package(tmp_path / "u.zip")
    out = tmp_path / "s.zip"
    done = _cli("--key", str(TEST_KEY), "--in", str(unsigned), "--out", str(out), "--print_key_id")
    assert done.returncode == 0, done.stderr
    kid = signing.verify(str(out), [signing.load_public_key(str(TEST_PUB))])
    assert done.stdout == kid + "\n"
    again = _cli("--key", str(TEST_KEY), "--in", str(out), "--out", str(tmp_path / "t.zip"))
    assert again.returncode == 1
    assert (
        again.stderr == f"ota_sign: error: {out}: already signed (META-INF/ota/signature present); "
        "sign the unsigned package with every key in one run\n"
    )
    missing = _cli("--key", str(tmp_path / "nokey.pem"), "--in", str(unsigned), "--out", str(out))
    assert (missing.returncode, missing.stderr) == (
        1,
        f"ota_sign: error: {tmp_path / 'nokey.pem'}: cannot read key file (No such file or directory)\n",
    )
    usage = _cli("--in", str(unsigned))
    assert usage.returncode == 2 and "--key, --in and --out are required" in usage.stderr
    assert "--password_file" in _cli("--help").stdout


def test_cli_encrypted_key_with_password_file(tmp_path, rsa3072):
    pem = tmp_path / "enc.pem"
    pem.write_bytes(
        rsa3072.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter22"),
        )
    )
    (tmp_path / "pw").write_text("hunter22\n")
    out = tmp_path / "s.zip"
    done = _cli(
        "--key",
        str(pem),
        "--password_file",
        str(tmp_path / "pw"),
        "--in",
        str(write_package(tmp_path / "u.zip")),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert signing.verify(str(out), [rsa3072.public_key()]) == signing.key_id(rsa3072)
