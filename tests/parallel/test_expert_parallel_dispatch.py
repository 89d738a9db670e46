"""The expert-parallel dispatcher's two exchanges, dispatch and combine, on CPU/gloo."""

import pytest

from tests.parallel.harness import run_workers


@pytest.mark.slow
def test_dispatch_gathers_each_expert_s_inputs_by_source_rank_and_combine_returns_them():
    reports = run_workers("tests.parallel.workers:dispatch_and_combine", 2, ep_size=2)
    assert sorted(e for r in reports for e in r["experts"]) == [0, 1, 2, 3]  # each expert on one rank
    for report in reports:
        for e, rows in report["received"].items():
            assert rows == [e, e, 100 + e, 100 + e]  # rank 0's two rows, then rank 1's
        assert report["returned_own"]
