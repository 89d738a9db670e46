"""Multi-process bodies for the trainer tests (run by tests.parallel.harness.run_workers)."""

from vidprism_ds.config import load_config
from vidprism_ds.train.ds_config import read_ds_config
from vidprism_ds.train.loop import run_experiment


def train_and_report(overrides: list[str], ds_config_path: str, ds_overrides: dict | None = None):
    cfg = load_config(None, overrides)
    ds = read_ds_config(ds_config_path)
    for key, value in (ds_overrides or {}).items():
        ds[key] = value
    result = run_experiment(cfg, ds)
    return {"losses": [h["total"] for h in result.history], "steps": [h["step"] for h in result.history],
            "eval": result.eval_metrics}
