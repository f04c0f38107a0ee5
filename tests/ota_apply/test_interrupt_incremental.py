"""Power cut at every I/O point of ota_apply on the incremental package; each rerun reaches the target."""

from __future__ import annotations

from apply_helpers import make_release
from sweep_helpers import sweep_every_cut


def test_every_cut_recovers(tmp_path):
    release = make_release(str(tmp_path / "release"))
    sweep_every_cut(release, release.incremental, str(tmp_path / "sweep"))
