#!/bin/bash
# Fine-tune from a Kinetics-710 model, multi-node, one task per GPU:
#     sbatch slurm/finetune.sh DATASET [more train.py arguments]
# DATASET picks the preset:
#   k400     configs/k400_vitb16.yaml              the K710 classifier's 400 K400 rows are kept (K710 index map)
#   ucf101   configs/fewshot_ucf101_vitb16.yaml    new classifier (K710 has no UCF101 classes), the rest from K710
#   hmdb51   configs/fewshot_hmdb51_vitb16.yaml    likewise
#   ssv2     configs/fewshot_ssv2_vitb16.yaml      likewise
# Submit from the repository root (or set VIDPRISM_ROOT).
#
# Settings (environment variable: default):
#   INIT_FROM       runs/k710_vitb16/export/model_fp32.pt: the file slurm/train_k710.sh leaves when it finishes
#                   (train.export_on_finish); any consolidated VideoClassifier state dict works
#   CONFIG          the DATASET's preset above
#   DS_CONFIG       ds_configs/zero2.json
#   DATA_DIR        the preset's shards; when set: DATA_DIR/train and DATA_DIR/val
#   OUTPUT_DIR      the preset's train.output_dir (runs/<preset name>)
#   CHECKPOINT_DIR, WANDB_MODE, WANDB_PROJECT, PYTHON, MAX_RESTARTS: as in slurm/train_k710.sh
# Resumes from the newest checkpoint of OUTPUT_DIR when there is one (then INIT_FROM is not read again);
# pre-emption and requeueing work as in slurm/train_k710.sh.
#
#SBATCH --job-name=vidprism-finetune
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -euo pipefail
VP_SCRIPT=finetune.sh
VIDPRISM_ROOT="${VIDPRISM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
# shellcheck source=slurm/common.sh
source "$VIDPRISM_ROOT/slurm/common.sh"
vp_init

DATASET="${1:-}"
[[ $# -gt 0 ]] && shift
case "$DATASET" in
    k400) PRESET=configs/k400_vitb16.yaml CLASS_MAP=k400 ;;
    ucf101 | hmdb51 | ssv2) PRESET="configs/fewshot_${DATASET}_vitb16.yaml" CLASS_MAP=fresh ;;
    *) vp_die "first argument: the dataset to fine-tune on, one of k400, ucf101, hmdb51, ssv2 (got '${DATASET}')" ;;
esac
CONFIG="${CONFIG:-$PRESET}"
DS_CONFIG="${DS_CONFIG:-ds_configs/zero2.json}"
INIT_FROM="${INIT_FROM:-runs/k710_vitb16/export/model_fp32.pt}"

TRAIN_ARGS=(--deepspeed_config "$DS_CONFIG" --config "$CONFIG"
            --set "train.init_from=$INIT_FROM" --set "train.init_class_map=$CLASS_MAP")
vp_common_train_args
TRAIN_ARGS+=("$@")

vp_rendezvous
vp_print_job
echo "  fine-tune      $DATASET from $INIT_FROM (classifier: $CLASS_MAP)"
vp_resolve_settings --require train --require val --require init -- "${TRAIN_ARGS[@]}"
vp_link_checkpoints
vp_run_step "${VP_SRUN[@]}" "$PYTHON" train.py "${TRAIN_ARGS[@]}"
