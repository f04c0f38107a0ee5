"""The journal's torn-line rule and the progress line format, on their own."""

from __future__ import annotations

import io

import pytest

from ota.device.fsops import FsOps
from ota.device.updater.journal import Journal
from ota.device.updater.progress import Progress
from ota.errors import OtaError
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss


def test_journal_round_trip_and_torn_append(tmp_path):
    cache = str(tmp_path)
    journal = Journal.begin(cache, "abc123", FsOps())
    journal.mark("stage:patch/a.p", "d1")
    # The next append is torn half way: the half line must not count, and the next mark overwrites it.
    journal.ops = FaultyFsOps(FaultPoint("tear", 1))
    with pytest.raises(PowerLoss):
        journal.mark("patch:system/very/long/path/name", "d2")
    loaded = Journal.load(cache, FsOps())
    assert loaded is not None and (loaded.package_id, loaded.claimed) == ("abc123", {"stage:patch/a.p": "d1"})
    assert loaded.done == set()  # claims are trusted only after the device shows them (ota.device.updater.resume)
    loaded.mark("write:with spaces", "d3")
    again = Journal.load(cache, FsOps())
    assert again is not None and again.claimed == {"stage:patch/a.p": "d1", "write:with spaces": "d3"}
    again.clear()
    assert Journal.load(cache, FsOps()) is None


def test_journal_cut_while_created_is_absent_or_whole(tmp_path):
    """create, write, fsync, rename, fsync dir: before the rename no journal, after it a whole one."""
    for index in range(1, 6):
        cache = tmp_path / str(index)  # a fresh cache: a cut run's temporary adds an unlink before the create
        cache.mkdir()
        with pytest.raises(PowerLoss):
            Journal.begin(str(cache), "id", FaultyFsOps(FaultPoint("tear", index)))
        loaded = Journal.load(str(cache), FsOps())
        assert (loaded is None) == (index <= 4)
        assert loaded is None or (loaded.package_id, loaded.claimed) == ("id", {})


def test_journal_bad_header_is_one_line(tmp_path):
    (tmp_path / "ota_journal").write_bytes(b"something else\n")
    with pytest.raises(OtaError) as error:
        Journal.load(str(tmp_path), FsOps())
    assert str(error.value) == (
        f"{tmp_path}/ota_journal: journal: bad header (expected 'rules_ota journal 2 <package-id>')"
    )


def test_progress_lines_weight_by_bytes():
    out = io.StringIO()
    progress = Progress("lines", out)
    progress.phase(0.5, 998, 2)
    progress.item("verify", "big file", 899)
    progress.item("verify", "small", 99)
    progress.phase(0.5, 0, 1)
    progress.item("metadata", "", 0)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "progress 0.4500 verify big file",
        "progress 0.5000 verify small",
        "progress 1.0000 metadata -",
        "progress 1.0000 finish -",
    ]


def test_progress_auto_is_silent_when_not_a_terminal():
    out = io.StringIO()
    progress = Progress("auto", out)
    progress.phase(1.0, 10, 1)
    progress.item("write", "x", 10)
    progress.finish()
    assert out.getvalue() == ""


def test_progress_bar_redraws_in_place_and_ends_full():
    out = io.StringIO()
    progress = Progress("bar", out)
    progress.phase(1.0, 100, 2)
    progress.item("write", "a", 50)
    progress.item("write", "b", 50)
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0] == "[" + "#" * 20 + "." * 20 + "]  50.0% write    "
    assert frames[-1] == "[" + "#" * 40 + "] 100.0% finish   "


def test_journal_room_bounds_what_the_lines_take(tmp_path):
    """The cache-space check reserves `room_for` the steps still to run: never less than they write."""
    steps = ["stage:patch/a b.p", "patch:system/\u00e9t\u00e9/x", "metadata:-", "check:-", "build:-"]
    journal = Journal.begin(str(tmp_path), "f" * 64, FsOps())
    for step in steps:
        journal.mark(step, "0123456789abcdef" * 4)
    assert (tmp_path / "ota_journal").stat().st_size == Journal.room_for(steps)
