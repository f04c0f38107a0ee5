"""file_patch: method choice, UNCHANGED/WHOLE decisions, warnings, errors, reproducibility."""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from pathlib import Path

import pytest
from absl import flags
from hypothesis import given, settings
from hypothesis import strategies as st

from build_helpers import run_ok, run_tool
from ota.actions import file_patch, imgdiff
from ota.errors import OtaError
from ota.format import gzipper
from ota.format.patch import apply_patch

TOOL = "ota.actions.file_patch"


def _text(seed: int, lines: int = 4000) -> bytes:
    rng = random.Random(seed)
    return b"".join(b"line %d value %d\n" % (i, rng.randrange(1000)) for i in range(lines))


def _changed(data: bytes) -> bytes:
    return data[:1000] + b"a small edit\n" + data[1000:]


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED, 6)
    return out.getvalue()


def _run(tmp_path: Path, source: bytes | None, target: bytes, path: str, *flags: str):
    args = ["--target", "t", "--path", path, "--out_data", "d", "--out_info", "i", *flags]
    (tmp_path / "t").write_bytes(target)
    if source is not None:
        (tmp_path / "s").write_bytes(source)
        args += ["--source", "s"]
    proc = run_tool(TOOL, *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "i").read_text())
    return info, (tmp_path / "d").read_bytes(), proc.stderr


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("lib/libc.so", "BSDIFF"),
        ("a/b.gz", "IMGDIFF"),
        ("boot.img", "IMGDIFF"),
        ("x.ZIP", "IMGDIFF_ZIP"),
        ("app.apk", "IMGDIFF_ZIP"),
        ("f.jar", "IMGDIFF_ZIP"),
        ("archive.tar", "BSDIFF"),
        ("gz", "BSDIFF"),
    ],
)
def test_auto_method_follows_the_target_extension(path: str, method: str) -> None:
    assert file_patch.choose_method(path) == method
    assert file_patch.choose_method(path, "bsdiff") == "BSDIFF"


def test_identical_contents_are_unchanged_with_empty_data(tmp_path: Path) -> None:
    data = _text(1)
    info, out, stderr = _run(tmp_path, data, data, "etc/x")
    digest = hashlib.sha256(data).hexdigest()
    assert info == {
        "path": "etc/x",
        "method": "UNCHANGED",
        "warning": "",
        "source": {"size": len(data), "sha256": digest, "sha1": hashlib.sha1(data).hexdigest()},
        "target": {"size": len(data), "sha256": digest, "sha1": hashlib.sha1(data).hexdigest()},
        "data_size": 0,
        "data_sha256": hashlib.sha256(b"").hexdigest(),
    }
    assert out == b"" and stderr == ""


@pytest.mark.parametrize(
    ("path", "source", "target"),
    [
        ("bin/tool", _text(2), _changed(_text(2))),
        ("share/doc.gz", gzipper.compress(_text(3)), gzipper.compress(_changed(_text(3)))),
        (
            "app/x.apk",
            _zip({"a.txt": _text(4), "b.txt": _text(5)}),
            _zip({"a.txt": _changed(_text(4)), "b.txt": _text(5)}),
        ),
    ],
)
def test_patch_applies_to_the_exact_target(tmp_path: Path, path: str, source: bytes, target: bytes) -> None:
    info, patch, stderr = _run(tmp_path, source, target, path)
    assert info["method"] == file_patch.choose_method(path)
    assert stderr == ""
    assert info["data_size"] == len(patch) < 0.95 * len(target)
    assert info["data_sha256"] == hashlib.sha256(patch).hexdigest()
    applied = apply_patch(source, patch)
    assert hashlib.sha256(applied).hexdigest() == info["target"]["sha256"]


def test_patch_over_threshold_ships_whole_silently(tmp_path: Path) -> None:
    rng = random.Random(7)
    source, target = rng.randbytes(5000), rng.randbytes(5000)
    info, out, stderr = _run(tmp_path, source, target, "bin/random")
    assert (info["method"], out, stderr, info["warning"]) == ("WHOLE", target, "", "")
    assert info["data_sha256"] == info["target"]["sha256"]
    # The same small change patches at the default threshold, but not at the smallest one the
    # rule allows (any patch outweighs a millionth of the file).
    info, out, _ = _run(tmp_path, _text(8), _changed(_text(8)), "bin/x", "--patch_threshold", "0.000001")
    assert (info["method"], out) == ("WHOLE", _changed(_text(8)))


def test_real_imgdiff_failure_ships_whole_with_one_warning(tmp_path: Path) -> None:
    source = gzipper.compress(_text(9))
    target = gzipper.compress(_text(9)) + gzipper.compress(b"second member\n")
    with pytest.raises(OtaError, match="chunk structure"):
        imgdiff.make_image_patch(source, target)
    info, out, stderr = _run(tmp_path, source, target, "usr/share/x.gz")
    assert (info["method"], out) == ("WHOLE", target)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0] == info["warning"]
    assert lines[0].startswith("WARNING: usr/share/x.gz: IMGDIFF failed (usr/share/x.gz: chunk structure (")
    assert lines[0].endswith("); shipping the whole file")


def test_inputs_above_max_diff_size_ship_whole_without_diffing(tmp_path: Path) -> None:
    source, target = _text(10), _changed(_text(10))
    info, out, stderr = _run(tmp_path, source, target, "big.bin", "--max_diff_size", "1000")
    assert (info["method"], out) == ("WHOLE", target)
    assert stderr == (
        "WARNING: big.bin: BSDIFF failed (skipped: input larger than --max_diff_size=1000 bytes); "
        "shipping the whole file\n"
    )
    info, out, stderr = _run(tmp_path, source, source, "big.bin", "--max_diff_size", "1000")
    assert (info["method"], out, stderr) == ("UNCHANGED", b"", "")


def test_no_source_ships_whole_without_warning(tmp_path: Path) -> None:
    info, out, stderr = _run(tmp_path, None, b"new partition", "boot")
    assert (info["method"], info["source"], out, stderr) == ("WHOLE", None, b"new partition", "")


def test_missing_input_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(b"x")
    proc = run_tool(
        TOOL, "--source", "nope", "--target", "t", "--path", "p", "--out_data", "d", "--out_info", "i", cwd=tmp_path
    )
    assert (proc.returncode, proc.stderr) == (1, "file_patch: error: nope: cannot read: No such file or directory\n")
    assert not (tmp_path / "i").exists()


def test_output_is_byte_reproducible_across_cwd_tz_umask(tmp_path: Path) -> None:
    outputs = []
    for name, tz, umask in (("one", "UTC", 0o022), ("two/deeper", "Asia/Tokyo", 0o077)):
        work = tmp_path / name
        work.mkdir(parents=True)
        (work / "s").write_bytes(_text(11))
        (work / "t").write_bytes(_changed(_text(11)))
        run_ok(
            TOOL,
            "--source",
            "s",
            "--target",
            "t",
            "--path",
            "p",
            "--out_data",
            "d",
            "--out_info",
            "i",
            cwd=work,
            umask=umask,
            TZ=tz,
        )
        outputs.append(((work / "d").read_bytes(), (work / "i").read_bytes()))
    assert outputs[0] == outputs[1]


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 5e-324, 1.0, 1.0000000000000002, 0.95]),
    )
)
def test_the_tool_accepts_exactly_the_threshold_range_the_rule_accepts(value: float) -> None:
    # ota_package refuses patch_threshold outside (0, 1]; the tool's flag must refuse the same.
    try:
        flags.FLAGS(["file_patch", f"--patch_threshold={value!r}"])
        accepted = True
    except flags.IllegalFlagValueError as err:
        accepted = False
        assert "must be a number in (0, 1]" in str(err)
    finally:
        flags.FLAGS.unparse_flags()
    assert accepted == (0.0 < value <= 1.0)


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "nan"])
def test_a_threshold_outside_the_range_is_a_one_line_usage_error(tmp_path: Path, value: str) -> None:
    (tmp_path / "t").write_bytes(b"x")
    proc = run_tool(
        TOOL,
        "--target",
        "t",
        "--path",
        "p",
        "--out_data",
        "d",
        "--out_info",
        "i",
        f"--patch_threshold={value}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert ": usage: flag --patch_threshold=" in first and "must be a number in (0, 1]" in first
    assert not (tmp_path / "d").exists() and not (tmp_path / "i").exists()
