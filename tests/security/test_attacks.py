"""The attack table: every hostile input has its expected outcome (refused with the device unchanged,
or applied with the device equal to the target) within its memory and time bounds, and
docs/security.md shows exactly what a fresh run of tests/security/attacks.py prints."""

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
def test_attack_has_its_expected_outcome_within_bounds(rows, index):
    row = rows[index]
    assert row.as_expected, row.outcome
    assert row.attack.expected in row.outcome, row.outcome
    assert row.changed == (), row.changed  # refused: nothing changed; applied: nothing differs from the target
    assert row.peak_rss_mib <= row.attack.rss_bound, f"peak RSS {row.peak_rss_mib:.1f} MiB"
    assert row.seconds <= row.attack.seconds_bound, f"{row.seconds:.2f} s"


def test_escape_target_stays_empty(rows):
    """No attack, refused early or late, ever wrote outside the system root."""
    assert all(not any(p.startswith("outside/") for p in row.changed) for row in rows)


def test_table_marks_a_breached_bound():
    """A row over its bound shows the measurement, so the documented table no longer matches."""
    attack = attacks.ATTACKS[0]
    row = attacks.Row(attack, "refused: x", True, (), True, attack.rss_bound + 1.0, 0.1)
    assert f"**{attack.rss_bound + 1.0:.1f} MiB > {attack.rss_bound}**" in attacks.table([row])
