"""Coverage-guided (atheris/libFuzzer) runs of every harness, bounded and with a fixed seed.

Any exception other than OtaError is a libFuzzer crash: the test fails and prints the input
(base64) with the traceback, so the finding can be replayed with harnesses.TARGETS[name].run.
"""

from __future__ import annotations

import textwrap

import atheris  # noqa: F401 -- a missing atheris must fail this test, never skip it
import pytest

from fuzz_runs import HERE, run_atheris
from harnesses import TARGETS

RUNS = 3_000
MAX_SECONDS = 12


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_atheris_run_finds_nothing(name, tmp_path):
    run = run_atheris(name, tmp_path, runs=RUNS, seconds=MAX_SECONDS, seed=1)
    assert run.returncode == 0 and not run.crashes, run.report()
    assert run.execs > 0, run.log[-2000:]


def test_a_crash_is_caught_and_its_input_kept(tmp_path):
    script = tmp_path / "broken_main.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        import atheris, atheris_main, harnesses

        @atheris.instrument_func
        def parse(data):
            if data[:2] == b"OK" and len(data) > 2 and data[2] > 0x7f:
                raise IndexError("high byte after OK")

        atheris_main.main({{"broken": harnesses.Target("broken", parse, lambda: [b"OK\\x01"])}})
    """)
    )
    run = run_atheris("broken", tmp_path, runs=200_000, seconds=30, seed=1, script=script)
    assert run.returncode != 0
    assert "IndexError: high byte after OK" in run.log
    assert run.crashes and run.crashes[0][:2] == b"OK" and run.crashes[0][2] > 0x7F
    assert "input (" in run.report()
