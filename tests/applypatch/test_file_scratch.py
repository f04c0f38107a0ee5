"""Scratch names on the applypatch command line (docs/applypatch.md): patching a file target never touches a name
the user had beside it (AOSP writes `<target>.patch`, overwriting and then deleting such a file).

The target's directory is filled with generated neighbours (`foo.patch` as a file, a symlink out
of the directory, a directory; names of applypatch's own scratch pattern holding other bytes;
unicode and spaces); after a patch -- clean, or cut at every crash point and rerun -- the target
holds the target bytes with the source's mode, every neighbour is exactly as it was, and nothing
new is left.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat

import pytest

from applypatch_helpers import Small, run_cli
from ota.device.applypatch import protocol
from ota.device.applypatch.cache import Cache
from ota.device.applypatch.device_config import DeviceConfig
from ota.device.applypatch.spec import Digest
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss
from ota.testing.sweep import sweep

CASES = 30
_NAMES = ["foo", "lib x.so", "über.conf", ".hidden", "...", "a.patch", "日本"]


def _request(small: Small, target: str, patch: str) -> protocol.PatchRequest:
    return protocol.PatchRequest(
        source=target,
        target=target,
        target_size=len(small.target),
        target_digest=Digest("sha1", small.tgt_sha),
        patches=((Digest("sha1", small.src_sha), patch),),
    )


def _context(cache: str, ops: FaultyFsOps, *, low_space: bool = False) -> protocol.Context:
    return protocol.Context(
        DeviceConfig(),
        Cache(cache, piece=65536),
        ops,
        65536,
        target_free=(lambda _: 0) if low_space else protocol.filesystem_free,
        out=lambda _: None,
    )


def _snapshot(directory: str) -> dict[str, str]:
    """Every entry under `directory`: kind, mode, owner, bytes' hash or link target (never followed)."""
    state = {}
    for base, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(base, name)
            info = os.lstat(path)
            meta = f"{stat.S_IMODE(info.st_mode):o} {info.st_uid}:{info.st_gid}"
            if stat.S_ISLNK(info.st_mode):
                state[os.path.relpath(path, directory)] = f"link {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                state[os.path.relpath(path, directory)] = f"dir {meta}"
            else:
                with open(path, "rb") as stream:
                    state[os.path.relpath(path, directory)] = f"file {meta} {hashlib.sha256(stream.read()).hexdigest()}"
    return state


class Neighbourhood:
    """A target file among generated neighbours, and an outside file a neighbour links to."""

    def __init__(self, root: str, small: Small, seed: int) -> None:
        rng = random.Random(seed)
        self.small = small
        self.dir = os.path.join(root, "system")
        self.cache = os.path.join(root, "cache")
        self.outside = os.path.join(root, "outside")
        self.patch = os.path.join(root, "p")
        self.name = rng.choice(_NAMES)
        self.target = os.path.join(self.dir, self.name)
        self.mode = rng.choice([0o644, 0o600, 0o755])
        self.neighbours: list[tuple[str, str, bytes]] = []
        patterns = [
            f"{self.name}.patch",
            f".{self.name}.patch",
            f"{self.name}~",
            f"{self.name}.new",
            f".applypatch-{rng.randbytes(16).hex()}.tmp",
            f".applypatch-{rng.randbytes(16).hex()}.tmp",
        ]
        for name in rng.sample(patterns, rng.randint(1, len(patterns))):
            kind = rng.choice(["file", "file", "symlink", "dir"])
            self.neighbours.append((name, kind, rng.randbytes(rng.randint(0, 3000))))
        with open(self.patch, "wb") as stream:
            stream.write(small.patch)

    def prepare(self) -> None:
        for path in (self.dir, self.cache, self.outside):
            if os.path.lexists(path):
                _remove_tree(path)
            os.mkdir(path)
        with open(self.target, "wb") as stream:
            stream.write(self.small.source)
        os.chmod(self.target, self.mode)
        for name, kind, data in self.neighbours:
            path = os.path.join(self.dir, name)
            if kind == "file":
                with open(path, "wb") as stream:
                    stream.write(data)
            elif kind == "dir":
                os.mkdir(path)
                with open(os.path.join(path, "inside"), "wb") as stream:
                    stream.write(data)
            else:
                outside = os.path.join(self.outside, name)
                with open(outside, "wb") as stream:
                    stream.write(data)
                os.symlink(outside, path)
        self.before = {k: v for k, v in _snapshot(self.dir).items() if k != self.name}
        self.outside_before = _snapshot(self.outside)

    def patch_now(self, ops: FaultyFsOps, *, low_space: bool = False) -> str:
        return protocol.patch(
            _context(self.cache, ops, low_space=low_space), _request(self.small, self.target, self.patch)
        )

    def problems(self) -> list[str]:
        found = []
        with open(self.target, "rb") as stream:
            if stream.read() != self.small.target:
                found.append("target does not hold the target bytes")
        if stat.S_IMODE(os.stat(self.target).st_mode) != self.mode:
            found.append("target lost the source's mode")
        after = {k: v for k, v in _snapshot(self.dir).items() if k != self.name}
        if after != self.before:
            changed = sorted(set(after.items()) ^ set(self.before.items()))
            found.append(f"neighbours changed: {changed[:4]}")
        if _snapshot(self.outside) != self.outside_before:
            found.append("a file outside the directory changed")
        if os.listdir(self.cache):
            found.append(f"cache not clean: {os.listdir(self.cache)}")
        return found


def _remove_tree(path: str) -> None:
    for base, dirs, files in os.walk(path, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            os.unlink(os.path.join(base, name))
        for name in dirs:
            if not os.path.islink(os.path.join(base, name)):
                os.rmdir(os.path.join(base, name))
    os.rmdir(path)


@pytest.mark.parametrize("seed", range(CASES))
def test_patch_leaves_every_neighbour_as_it_was(tmp_path, small, seed):
    hood = Neighbourhood(str(tmp_path), small, seed)
    hood.prepare()
    assert hood.patch_now(FaultyFsOps(), low_space=seed % 3 == 0) == protocol.PATCHED
    assert hood.problems() == []
    assert hood.patch_now(FaultyFsOps()) == protocol.ALREADY
    assert hood.problems() == []


class _Sweep:
    """A Neighbourhood under ota.testing.sweep.sweep (prepare / run / recover / check)."""

    def __init__(self, hood: Neighbourhood, low_space: bool) -> None:
        self.hood, self.low_space = hood, low_space

    def prepare(self) -> None:
        self.hood.prepare()

    def run(self, ops: FaultyFsOps) -> None:
        self.hood.patch_now(ops, low_space=self.low_space)

    def recover(self) -> str | None:
        try:
            self.hood.patch_now(FaultyFsOps(), low_space=self.low_space)  # the same device, still short of space
        except Exception as err:  # noqa: BLE001  (reported as the outcome's problem)
            return str(err)
        return None

    def check(self, recover_error: str | None) -> str | None:
        if recover_error is not None:
            return f"rerun failed: {recover_error}"
        problems = self.hood.problems()
        return "; ".join(problems) if problems else None


@pytest.mark.parametrize("seed,low_space", [(1, False), (2, True), (3, False), (4, True)])
def test_every_crash_point_keeps_the_neighbours(tmp_path, small, seed, low_space):
    result = sweep(_Sweep(Neighbourhood(str(tmp_path), small, seed), low_space))
    assert len(result.outcomes) > 15
    assert {point.mode for point in result.points} == {"before", "tear", "after"}
    assert result.failures() == []


def test_scratch_left_between_link_and_rename_is_removed_by_the_rerun(tmp_path, small):
    hood = Neighbourhood(str(tmp_path), small, 5)
    hood.prepare()
    clean = FaultyFsOps()
    hood.patch_now(clean)
    rename = next(r.index for r in clean.log if r.kind == "rename" and r.target.endswith(hood.target))
    hood.prepare()
    with pytest.raises(PowerLoss):
        hood.patch_now(FaultyFsOps(FaultPoint("before", rename)))
    orphans = [
        n
        for n in os.listdir(hood.dir)
        if protocol.SCRATCH_NAME.fullmatch(n)
        and os.path.join(hood.dir, n) not in {os.path.join(hood.dir, m) for m, _, _ in hood.neighbours}
    ]
    assert len(orphans) == 1
    with open(os.path.join(hood.dir, orphans[0]), "rb") as stream:
        assert stream.read() == small.target
    assert hood.patch_now(FaultyFsOps()) == protocol.PATCHED
    assert hood.problems() == []


def test_cli_keeps_a_users_foo_patch(tmp_path, small):
    """The issue's example through the real command line: `foo.patch` beside target `foo`."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "p").write_bytes(small.patch)
    target, mine = tmp_path / "foo", tmp_path / "foo.patch"
    target.write_bytes(small.source)
    mine.write_bytes(b"the user's own patch notes\n")
    inode = os.stat(mine).st_ino
    result = run_cli(
        f"--cache_dir={tmp_path / 'cache'}",
        str(target),
        "-",
        small.tgt_sha,
        str(len(small.target)),
        f"{small.src_sha}:{tmp_path / 'p'}",
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == small.target
    assert mine.read_bytes() == b"the user's own patch notes\n" and os.stat(mine).st_ino == inode
    assert sorted(os.listdir(tmp_path)) == ["cache", "foo", "foo.patch", "p"]
