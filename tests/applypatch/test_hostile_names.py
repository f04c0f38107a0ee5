"""What applypatch is handed on its command line cannot break its one-line error (docs/applypatch.md:
"Exit status ... 1 failure with one line on stderr").

Generated, seeded: partition names and file paths holding control characters (a newline, an
escape sequence, DEL ...) in every mode that names a partition or a file (-c, the classic patch,
--check, --flash, --patch); and device paths that are regular files without a size to seek to
(/proc files), named directly (`EMMC:/proc/...`) or through the device config. Each run of the
real CLI must exit 1 with exactly one stderr line, no traceback, and leave the partition as it
was. The error type itself (`ota.errors.OtaError`) is checked over arbitrary text with hypothesis.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from applypatch_helpers import Small, run_cli
from ota.errors import OtaError

SEED = 1717
NAMES = 16  # generated hostile names, each tried in every mode
CONTROL = [chr(code) for code in (*range(1, 32), 127)]
UNSEEKABLE = ("/proc/version", "/proc/self/status", "/proc/self/maps", "/proc/cpuinfo")


@pytest.fixture
def device(tmp_path, small: Small):
    (tmp_path / "cache").mkdir()
    (tmp_path / "boot.img").write_bytes(small.source + b"\0" * 4096)
    (tmp_path / "boot.p").write_bytes(small.patch)
    (tmp_path / "dev.cfg").write_text("partition boot file boot.img\ncache cache\n")
    return tmp_path


def _hostile_names(rng: random.Random) -> list[str]:
    names = []
    for _ in range(NAMES):
        parts = [rng.choice(("boot", "sys", "a b", "é", "/dev/x", "..")) for _ in range(rng.randint(1, 3))]
        for _ in range(rng.randint(1, 3)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(CONTROL) * rng.randint(1, 2))
        names.append("".join(parts))
    return names


def _commands(device, small: Small, name: str) -> list[list[str]]:
    spec = f"EMMC:{name}:{len(small.source)}:{small.src_sha}"
    target = f"EMMC:{name}:{len(small.target)}:{small.tgt_sha}"
    patch, image = str(device / "boot.p"), str(device / "boot.img")
    sizes = [small.tgt_sha, str(len(small.target)), f"{small.src_sha}:{patch}"]
    return [
        ["-c", spec],
        [spec, "-", *sizes],
        [str(device / name.replace("/", "_")), "-", *sizes],  # a file target with that name
        ["--check", spec],
        ["--flash", image, "--target", target],
        ["--patch", patch, "--source", spec, "--target", target],
    ]


def _assert_one_line_failure(device, args: list[str]) -> None:
    before = (device / "boot.img").read_bytes()
    result = run_cli(f"--device_config={device / 'dev.cfg'}", *args)
    label = (args, result.stderr)
    assert result.returncode == 1, label
    assert result.stderr.startswith("applypatch: error: ") and result.stderr.count("\n") == 1, label
    assert "Traceback" not in result.stderr, label
    assert (device / "boot.img").read_bytes() == before, label


def test_control_characters_in_names_keep_the_error_on_one_line(device, small: Small):
    for name in _hostile_names(random.Random(SEED)):
        for args in _commands(device, small, name):
            _assert_one_line_failure(device, args)


@pytest.mark.parametrize("path", UNSEEKABLE)
def test_a_file_without_a_size_is_refused_in_one_line(device, small: Small, path: str):
    _assert_one_line_failure(device, ["-c", f"EMMC:{path}:{len(small.source)}:{small.src_sha}"])
    (device / "dev.cfg").write_text(f"partition boot file {path}\ncache cache\n")
    _assert_one_line_failure(device, ["-c", small.spec()])
    _assert_one_line_failure(device, ["--flash", str(device / "boot.img"), "--target", small.spec()])


@settings(max_examples=300, deadline=None)
@given(where=st.text(), problem=st.text())
def test_an_error_is_always_one_line_of_printable_text(where: str, problem: str):
    text = str(OtaError(where, problem))
    assert len(text.splitlines()) == 1, repr(text)
    assert not any(ch in text for ch in CONTROL), repr(text)
