"""toolchain_identity.verify: an action runs only on the toolchain it was keyed with.

Generated identities that differ from the running one in any field, or in the set of fields, must
fail with one line naming both identities; the running identity itself must pass; a missing or
malformed identity file is a one-line OtaError naming the file.
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota.actions import file_patch, persistent_worker, toolchain_identity
from ota.errors import OtaError

RUNNING = toolchain_identity.running()
VERSIONS = st.text(alphabet="0123456789.abrc+-", min_size=1, max_size=12)


def write(tmp: pathlib.Path, identity: dict[str, str]) -> str:
    """An identity file as bazel/pip.bzl writes it: named by the digest of its content."""
    return toolchain_identity.write(str(tmp), identity)


def test_running_identity_names_python_zlib_and_the_libraries() -> None:
    assert set(RUNNING) == {"python", "zlib", *toolchain_identity.DISTRIBUTIONS}
    assert "missing" not in RUNNING.values(), RUNNING


def test_the_running_identity_passes(tmp_path) -> None:
    toolchain_identity.verify(write(tmp_path, RUNNING))
    toolchain_identity.verify(None)  # a tool run by hand: nothing to compare


@settings(max_examples=200, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(sorted(RUNNING)), VERSIONS, min_size=1),
    extra=st.dictionaries(st.sampled_from(["openssl", "libc", "absl_py"]), VERSIONS),
    dropped=st.sets(st.sampled_from(sorted(RUNNING)), max_size=2),
)
def test_any_other_identity_fails_in_one_line_naming_both(tmp_path_factory, changes, extra, dropped) -> None:
    keyed = {k: v for k, v in {**RUNNING, **changes, **extra}.items() if k not in dropped}
    if keyed == RUNNING:
        return
    path = write(tmp_path_factory.mktemp("id"), keyed)
    with pytest.raises(OtaError) as raised:
        toolchain_identity.verify(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(path + ": ")
    assert f"[{toolchain_identity.describe(keyed)}]" in message
    assert f"[{toolchain_identity.describe(RUNNING)}]" in message


@settings(max_examples=100, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(RUNNING)), VERSIONS, min_size=1))
def test_a_file_edited_after_keying_fails_naming_it(tmp_path_factory, changes) -> None:
    """The digest in the name is what the action key holds; other content is another identity."""
    edited = {**RUNNING, **changes}
    if edited == RUNNING:
        return
    path = pathlib.Path(write(tmp_path_factory.mktemp("id"), RUNNING))
    path.write_bytes(toolchain_identity.encode(edited))
    with pytest.raises(OtaError) as raised:
        toolchain_identity.verify(str(path))
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert f"[{toolchain_identity.describe(edited)}] is not the one its name keyed" in message


@pytest.mark.parametrize("content", ["", "{", "[]", '{"python": 3}', '"3.11"'])
def test_a_malformed_identity_file_is_one_line_naming_it(tmp_path, content) -> None:
    path = tmp_path / "toolchain_identity.json"
    path.write_text(content)
    with pytest.raises(OtaError) as raised:
        toolchain_identity.verify(str(path))
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)


def test_a_missing_identity_file_is_one_line_naming_it(tmp_path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(OtaError, match=f"^{path}: cannot read"):
        toolchain_identity.verify(str(path))


@pytest.mark.parametrize("field", sorted(RUNNING))
def test_a_worker_request_keyed_with_another_identity_fails_before_writing(tmp_path, field) -> None:
    """The persistent worker checks each request: one request's identity says nothing of the next."""
    target = tmp_path / "target"
    target.write_bytes(b"target bytes\n")
    out_data, out_info = tmp_path / "out.p", tmp_path / "out.json"
    request = ["--target", str(target), "--path", "etc/f", "--out_data", str(out_data), "--out_info", str(out_info)]
    bad = write(tmp_path, dict(RUNNING, **{field: "0.0-other"}))

    outcome = persistent_worker.handle([*request, "--toolchain_identity", bad], file_patch.TOOL)
    assert outcome.exit_code == 1
    assert outcome.output.count("\n") == 1 and bad in outcome.output and "0.0-other" in outcome.output
    assert not out_data.exists() and not out_info.exists()

    good = write(tmp_path / "good", RUNNING)
    assert persistent_worker.handle([*request, "--toolchain_identity", good], file_patch.TOOL).exit_code == 0
    assert out_info.exists()
