import pytest

from vidprism_ds.train.demo_report import _row
from vidprism_ds.train.trainer import RunResult


@pytest.mark.parametrize("num_classes, top5_shown", [(4, False), (10, True)])
def test_the_demo_report_prints_top5_only_when_it_can_miss(num_classes, top5_shown):
    row = _row("VidPrism (default)", RunResult(eval_metrics={"top1": 0.625, "top5": 1.0}), num_classes)
    assert row.startswith("  VidPrism (default)") and "top-1 0.625" in row
    assert ("top-5 1.000" in row) == top5_shown
