"""The checks a system manifest's entries go through take a fast path for what is legal, and the
full one (escaping the path for its message) only for what is not; both must decide alike.

Paths are generated from the components that make a path illegal (empty, '.', '..', the reserved
scratch name first, NUL, a character that stands for no byte string) mixed with legal ones, and
checked against the rule docs/contracts.md ("File names") states; numeric fields get every kind
of JSON value.
"""

from __future__ import annotations

import copy
import hashlib
import random
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


# Whole manifests: tree.manifest_rows checks every column at once and falls back to tree.parse
# when anything looks unusual; whatever it returns must be exactly what parse accepts, and
# whatever parse refuses must be refused with parse's message.

FIELDS = ["path", "kind", "mode", "uid", "gid", "size", "sha256", "sha1", "target", "file"]
# For each field, values just beside what it accepts (and a few of another type).
NEAR_MISSES: dict[str, list[Any]] = {
    "path": ["", "a//b", "/abs", "../x", "a/./b", "a/", "a\0b", f"{SCRATCH_DIR}/x", SCRATCH_DIR, "\ud800", 7, None],
    "kind": ["fifo", "", "DIR", None, ["file"], 1],
    "mode": [-1, 0o10000, True, 1.0, "7", None],
    "uid": [-1, 2**32, True, 1.0, "0", None],
    "gid": [-1, 2**32, False, 0.0, "0", None],
    "size": [-1, True, 1.5, "1", None],
    "sha256": ["A" * 64, "g" * 64, "0" * 63, "0" * 65, "é" * 64, "0" * 40, 7, None],
    "sha1": ["A" * 40, "g" * 40, "0" * 39, "0" * 41, "é" * 40, "0" * 64, 7, None],
    "target": ["", "\0", "a\0b", 7, None, []],
    "file": ["", None, 7],
}
# Values every field accepts somewhere: a mutation may also make an entry odd but legal.
FINE_VALUES = [0, 7, 2**32 - 1, 2**64, "file", "dir", "symlink", "x", "é", "0" * 64, "0" * 40, " "]


def _manifest(rng: random.Random) -> list[dict[str, Any]]:
    """A valid manifest: directories, files and links below them, names with any byte."""
    names = ["etc", "lib", "bin", "é", "a b", "x\udcff", ".ota-scratch2", "z"]
    entries: list[dict[str, Any]] = []
    dirs = [""]
    for index in range(rng.randrange(1, 40)):
        parent = rng.choice(dirs)
        path = f"{parent}/{rng.choice(names)}{index}".lstrip("/")
        kind = rng.choice(["dir", "file", "file", "symlink"])
        entry: dict[str, Any] = {"path": path, "kind": kind, "mode": rng.choice([0o755, 0o644, 0o7777, 0])}
        entry.update(uid=rng.choice([0, 1000, 2**32 - 1]), gid=rng.choice([0, 2000]))
        if kind == "dir":
            dirs.append(path)
        elif kind == "file":
            data = rng.randbytes(rng.randrange(4))
            entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest(), sha1=hashlib.sha1(data).hexdigest())
        else:
            entry["target"] = rng.choice(["/system/bin/sh", "../lib", "x\udcff", " "])
        entries.append(entry)
    rng.shuffle(entries)
    return entries


def _mutate(rng: random.Random, entries: list[Any]) -> None:
    """One hostile or odd change of the kinds a manifest can have."""
    index = rng.randrange(len(entries))
    entry = entries[index] if isinstance(entries[index], dict) else {}
    change = rng.randrange(7)
    field = rng.choice([*entry, *entry, *FIELDS])  # mostly a field the entry's kind has
    if change == 0:
        entry.pop(field, None)
    elif change in (1, 2):
        entry[field] = rng.choice(NEAR_MISSES.get(field, []) + FINE_VALUES)
    elif change == 3:
        entries.append(copy.deepcopy(rng.choice(entries)))  # a duplicate path
    elif change == 4:
        directories = [e for e in entries if isinstance(e, dict) and e.get("kind") == "dir"]
        if directories:
            rng.choice(directories)["kind"] = rng.choice(["file", "symlink"])  # children lose their parent
    elif change == 5:
        entries[index] = rng.choice([None, [], "etc", 7])
    else:
        entry["extra"] = rng.choice(NEAR_MISSES["path"])  # unknown keys are ignored by both


def _outcome(check: Any) -> tuple[str, Any]:
    try:
        return "rows", check()
    except OtaError as err:
        return "error", str(err)


def _both(doc: dict[str, Any]) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """What tree.parse makes of `doc` (as rows, or its message), and what tree.manifest_rows does."""
    parsed = _outcome(lambda: tree.parse(copy.deepcopy(doc), "M", manifest=True))
    slow = (parsed[0], {e.path: tree.ManifestRow.of(e) for e in parsed[1]}) if parsed[0] == "rows" else parsed
    return slow, _outcome(lambda: tree.manifest_rows(doc, "M"))


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3))
def test_manifest_rows_accept_and_refuse_exactly_what_parse_does(seed: int, changes: int) -> None:
    rng = random.Random(seed)
    entries = _manifest(rng)
    for _ in range(changes):
        _mutate(rng, entries)
    fast = tree._rows_if_plainly_valid(copy.deepcopy(entries))
    slow, rows = _both({"entries": entries})
    assert rows == slow
    if fast is not None:  # the column checks passed: parse must agree entry for entry
        assert slow == ("rows", fast)
    if not changes:  # a plain manifest takes the column checks
        assert fast is not None


def test_manifest_rows_equal_means_unchanged_in_every_field() -> None:
    """Two rows are equal exactly when kind, mode, uid, gid, contents and target all are."""
    base = {"path": "f", "kind": "file", "mode": 0o644, "uid": 0, "gid": 0, "size": 1, "sha256": "a" * 64}
    base["sha1"] = "b" * 40
    first = tree.manifest_rows({"entries": [base]}, "M")["f"]
    for key, value in [("mode", 0o600), ("uid", 1), ("gid", 1), ("size", 2), ("sha256", "c" * 64), ("sha1", "d" * 40)]:
        assert tree.manifest_rows({"entries": [{**base, key: value}]}, "M")["f"] != first, key
    link = {"path": "f", "kind": "symlink", "mode": 0o777, "uid": 0, "gid": 0, "target": "a"}
    assert tree.manifest_rows({"entries": [link]}, "M") != tree.manifest_rows(
        {"entries": [{**link, "target": "b"}]}, "M"
    )


@pytest.mark.parametrize("seed", range(12))
def test_every_near_miss_of_every_field_of_every_kind_is_decided_as_parse_decides(seed: int) -> None:
    """Each generated manifest, once per (entry kind, field, near-miss value or removal): one
    change at a time, so no check can hide behind another."""
    entries = _manifest(random.Random(seed))
    by_kind = {entry["kind"]: index for index, entry in enumerate(entries)}
    cases = 0
    for index in by_kind.values():
        for field in FIELDS:
            for value in [*NEAR_MISSES[field], _MISSING]:
                changed = copy.deepcopy(entries)
                if value is _MISSING:
                    changed[index].pop(field, None)
                else:
                    changed[index][field] = value
                slow, rows = _both({"entries": changed})
                assert rows == slow, (field, value)
                fast = tree._rows_if_plainly_valid(changed)
                assert fast is None or slow == ("rows", fast), (field, value)
                cases += 1
    assert cases > 100


_MISSING = object()
