"""One training run: ``run_experiment(cfg, ds_config)`` trains (unless ``train.eval_only``), evaluates and
optionally exports.

This is the in-process API (train.py, the demo, bench/temporal.py and the tests call it). It initialises
torch.distributed from whatever launcher started the process (a plain process is a world of one) and can
be called several times in one process.
"""

from __future__ import annotations

from typing import Optional

from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.train.loop_state import RunResult
from vidprism_ds.train.trainer import Trainer


def run_experiment(cfg: ExperimentConfig, ds_config: dict, export_path: Optional[str] = None,
                   zero_shot_class_names: Optional[list[str]] = None) -> RunResult:
    """Train (unless ``train.eval_only``), evaluate, optionally export. Collective over all ranks."""
    trainer = Trainer(cfg, ds_config, eval_class_names=zero_shot_class_names)
    try:
        if cfg.train.eval_only:
            # train.resume=false evaluates train.init_from even where the run has checkpoints
            resumed = trainer.checkpoints.resume(trainer.engine) if cfg.train.resume else None
            if resumed is None and not cfg.train.init_from:
                raise FileNotFoundError(f"train.eval_only: no complete checkpoint under "
                                        f"{trainer.checkpoints.root} and no train.init_from")
            result = RunResult(output_dir=trainer.output_dir)
        else:
            result = trainer.fit()
        if not result.stopped_by_signal:
            metrics, weights = trainer.run_eval(result.step, tag="final", zero_shot=zero_shot_class_names is not None)
            result.eval_metrics = {**metrics.as_dict(), "per_class_accuracy": metrics.per_class_accuracy}
            result.expert_weights = weights
        if export_path:
            trainer.export(export_path)
        elif cfg.train.export_on_finish and not cfg.train.eval_only and not result.stopped_by_signal:
            # a finished run leaves the file that fine-tuning (train.init_from) and analysis read
            trainer.export(trainer.output_dir / cfg.train.export_on_finish)
        return result
    finally:
        trainer.reporter.finish()
