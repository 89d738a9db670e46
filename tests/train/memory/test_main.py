"""The command line (python -m vidprism_ds.train.memory): micro-batches fitted per world size, table rows."""

from tests.train.memory.common import tiny_cfg
from vidprism_ds.train.memory.__main__ import main, micro_batch_for_world


def test_the_cli_fits_the_micro_batch_to_the_global_batch_per_world_size():
    cfg = tiny_cfg("train.global_batch=128", "train.micro_batch=32", "train.grad_accum=1", "parallel.tp_size=2")
    assert micro_batch_for_world(cfg, 8) is cfg  # 4 data-parallel ranks x 32 = 128
    assert micro_batch_for_world(cfg, 32).train.micro_batch == 8  # 16 ranks: 8 clips each
    assert micro_batch_for_world(cfg, 128).train.micro_batch == 2
    assert micro_batch_for_world(tiny_cfg("train.global_batch=128", "train.micro_batch=24", "train.grad_accum=1"),
                                 4).train.micro_batch == 16  # 32 clips a rank: the largest divisor up to 24


def test_the_cli_prints_one_row_per_world_size(capsys):
    # the embedded demo (tiny tower, 2 heads) split over TP groups of 2
    assert main(["--set", "parallel.tp_size=2", "--world-size", "2", "4", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| demo")]
    assert [row.split(" | ")[1:5] for row in rows] == [["2", "2", "1", "2"], ["4", "2", "2", "2"]]
    assert all(row.endswith("| yes |") for row in rows)
    assert main(["--set", "parallel.tp_size=2", "--world-size", "3"]) == 2  # tp_size does not divide 3
