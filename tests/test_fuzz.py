"""A short run of the reader fuzzer (``tests/fuzz_readers.py``; the long run is its ``main``)."""

import pytest

pytest.importorskip("hypothesis")

from tests.fuzz_readers import KINDS, run  # noqa: E402


def test_damaged_files_give_one_line_errors_or_read(tmp_path):
    fuzzer = run(25, tmp_path)
    assert not fuzzer.findings, fuzzer.findings[:3]
    assert sum(fuzzer.outcomes.values()) == 25 * len(KINDS)
    assert any("one-line error" in outcome for _, outcome in fuzzer.outcomes)
