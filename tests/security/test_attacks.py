"""The attack table: every hostile package refused with the device unchanged, and docs/security.md
showing exactly what a fresh run of tests/security/attacks.py prints."""

from __future__ import annotations

import pathlib

import pytest

import attacks

DOC = pathlib.Path(__file__).absolute().parents[2] / "docs" / "security.md"  # not resolve(): runfiles


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[attacks.Row]:
    return attacks.run_all(str(tmp_path_factory.mktemp("attacks")))


def test_documented_table_equals_a_fresh_run(rows):
    documented = attacks.documented_table(DOC.read_text(encoding="utf-8"))
    assert documented == attacks.table(rows), (
        "docs/security.md is stale: PYTHONPATH=py python3 tests/security/attacks.py --write_docs docs/security.md"
    )


@pytest.mark.parametrize("index", range(len(attacks.ATTACKS)), ids=[a.name for a in attacks.ATTACKS])
def test_attack_is_refused_before_any_change(rows, index):
    row = rows[index]
    assert row.refused, row.outcome
    assert row.attack.expected in row.outcome, row.outcome
    assert row.changed in ((), None), row.changed
    assert row.peak_rss_mib < attacks.MAX_PEAK_RSS_MIB, f"peak RSS {row.peak_rss_mib} MiB"


def test_escape_target_stays_empty(rows, tmp_path):
    """No attack, refused early or late, ever wrote outside the system root."""
    assert all(not any(p.startswith("outside/") for p in (row.changed or ())) for row in rows)
