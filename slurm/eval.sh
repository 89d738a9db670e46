#!/bin/bash
# Multi-view evaluation of a trained model on a config's validation/test shards:
#     sbatch slurm/eval.sh CONFIG [more train.py arguments]
# e.g. sbatch slurm/eval.sh configs/k400_vitb16.yaml --set data.test_clips=4 --set data.test_crops=3
# Submit from the repository root (or set VIDPRISM_ROOT).
#
# What is evaluated: the newest complete checkpoint under OUTPUT_DIR/checkpoints (the run the config
# trained), or MODEL when set (a consolidated state dict: a train.export_on_finish file or an --export).
# Views: the config's data.test_clips temporal clips x data.test_crops spatial crops per video, softmax
# averaged over the views (4 x 3 is the paper's protocol). Results: OUTPUT_DIR/eval/final/metrics.json
# (top-1, top-5, per-class accuracy) and the confusion matrix PNG next to it.
#
# Settings (environment variable: default):
#   MODEL             (unset): evaluate the config's newest checkpoint
#   EXPORT            (unset): also write the evaluated model as one fp32 state dict to this path
#   ZERO_SHOT_LABELS  (unset): evaluate zero-shot on this label set (a preset name or a label file)
#                     through the class text embeddings instead of the classifier
#   DATA_DIR          the config's shards; when set: DATA_DIR/train (unused) and DATA_DIR/val
#   OUTPUT_DIR, DS_CONFIG, WANDB_MODE, WANDB_PROJECT, PYTHON: as in slurm/train_k710.sh
# Evaluation is not requeued: a pre-empted evaluation exits with the step's code; submit it again.
#
#SBATCH --job-name=vidprism-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --time=02:00:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -euo pipefail
VP_SCRIPT=eval.sh
VIDPRISM_ROOT="${VIDPRISM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
# shellcheck source=slurm/common.sh
source "$VIDPRISM_ROOT/slurm/common.sh"
vp_init

CONFIG="${1:-}"
[[ -n "$CONFIG" && "$CONFIG" != -* ]] || vp_die "first argument: the experiment config to evaluate (configs/*.yaml)"
shift
DS_CONFIG="${DS_CONFIG:-ds_configs/zero2.json}"
TRAIN_ARGS=(--deepspeed_config "$DS_CONFIG" --config "$CONFIG" --eval-only)
vp_common_train_args
REQUIRE=(--require val)
if [[ -n "${MODEL:-}" ]]; then
    # the file, not a checkpoint the config's run may also have; its classes are the config's
    TRAIN_ARGS+=(--set "train.init_from=$MODEL" --set train.init_class_map= --set train.resume=false)
    REQUIRE+=(--require init)
fi
[[ -n "${EXPORT:-}" ]] && TRAIN_ARGS+=(--export "$EXPORT")
[[ -n "${ZERO_SHOT_LABELS:-}" ]] && TRAIN_ARGS+=(--zero-shot-labels "$ZERO_SHOT_LABELS")
TRAIN_ARGS+=("$@")

vp_rendezvous
vp_print_job
vp_resolve_settings "${REQUIRE[@]}" -- "${TRAIN_ARGS[@]}"
vp_run_step "${VP_SRUN[@]}" "$PYTHON" train.py "${TRAIN_ARGS[@]}"
