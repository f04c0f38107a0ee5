"""The checks a system manifest's entries go through take a fast path for what is legal, and the
full one (escaping the path for its message) only for what is not; both must decide alike.

Paths are generated from the components that make a path illegal (empty, '.', '..', the reserved
scratch name first, NUL, a character that stands for no byte string) mixed with legal ones, and
checked against the rule docs/contracts.md ("File names") states; numeric fields get every kind
of JSON value.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ota.actions import tree
from ota.errors import OtaError
from ota.format import paths
from ota.format.paths import SCRATCH_DIR

PARTS = st.sampled_from(["a", "lib", "", ".", "..", SCRATCH_DIR, "x\0y", "\udcff", "\ud800", "é", "b c", ".x"])
CANDIDATE = st.tuples(st.booleans(), st.lists(PARTS, min_size=1, max_size=5), st.booleans()).map(
    lambda t: ("/" if t[0] else "") + "/".join(t[1]) + ("/" if t[2] else "")
)


def legal(path: str) -> bool:
    """The rule, stated on its own: non-empty, bytes only, relative, no NUL, no empty, '.' or
    '..' component, not below the scratch directory."""
    try:
        path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    parts = path.split("/")
    return bool(path) and "\0" not in path and all(p not in ("", ".", "..") for p in parts) and parts[0] != SCRATCH_DIR


@settings(max_examples=600, deadline=None)
@given(CANDIDATE)
def test_check_path_accepts_exactly_the_legal_paths(path: str) -> None:
    if legal(path):
        assert paths.check_path(path, "where") == path
    else:
        with pytest.raises(OtaError) as raised:
            paths.check_path(path, "where")
        assert "\n" not in str(raised.value)


FIELD_VALUES = st.one_of(
    st.integers(min_value=-5, max_value=2**33),
    st.sampled_from([0, 0o7777, 0o10000, 2**32 - 1, 2**32, True, False, None, 1.0, "7", [], {}]),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["mode", "uid", "gid"]), FIELD_VALUES)
def test_numeric_fields_accept_exactly_their_range(key: str, value: Any) -> None:
    entry: dict[str, Any] = {"path": "etc", "kind": "dir", "mode": 0o755, "uid": 0, "gid": 0, key: value}
    upper = 0o7777 if key == "mode" else 2**32 - 1
    if type(value) is int and 0 <= value <= upper:
        assert getattr(tree.parse({"entries": [entry]}, "where", manifest=False)[0], key) == value
    else:
        with pytest.raises(OtaError, match=f"etc: {key}"):
            tree.parse({"entries": [entry]}, "where", manifest=False)


def test_a_missing_field_is_named() -> None:
    with pytest.raises(OtaError, match="etc: uid: missing"):
        tree.parse({"entries": [{"path": "etc", "kind": "dir", "mode": 0o755, "gid": 0}]}, "where", manifest=False)
