#!/bin/bash
# Kinetics-710 training, multi-node, one task per GPU:
#     sbatch slurm/train_k710.sh [more train.py arguments, e.g. --set optim.lr=2e-4]
# Submit from the repository root (or set VIDPRISM_ROOT). Resource defaults below; override any of them
# on the command line, e.g. sbatch --nodes=2 --time=12:00:00 slurm/train_k710.sh. Keep
# --ntasks-per-node equal to the GPUs per node.
#
# Settings (environment variable: default). sbatch passes your environment to the job.
#   CONFIG          configs/k710_vitb16.yaml; CONFIG= (empty) runs the embedded synthetic demo
#   DS_CONFIG       ds_configs/zero2.json
#   TP_SIZE         the config's parallel.tp_size (1): tensor parallelism of the CLIP tower. Its groups are
#                   TP_SIZE consecutive ranks, kept inside a node: TP_SIZE must divide the tasks per node
#                   (checked before srun); ranks are numbered node by node (srun's default block layout)
#   DATA_DIR        the config's data.train_shards / data.val_shards (shards/k710/{train,val});
#                   when set: DATA_DIR/train and DATA_DIR/val
#   OUTPUT_DIR      the config's train.output_dir (runs/k710_vitb16): logs, train_history.jsonl, eval/
#   CHECKPOINT_DIR  OUTPUT_DIR/checkpoints; elsewhere (e.g. scratch): OUTPUT_DIR/checkpoints links to it
#   WANDB_MODE      the config's logging.wandb_mode (auto: online with WANDB_API_KEY, else offline);
#                   wandb's files go under OUTPUT_DIR/wandb
#   WANDB_PROJECT   the config's logging.wandb_project
#   PYTHON          VIDPRISM_ROOT/.venv/bin/python if it exists, else python3
#   MAX_RESTARTS    50: stop requeueing after this many restarts
# The resolved values are printed at the start of the job log.
# When training finishes, the consolidated fp32 model is written to OUTPUT_DIR/export/model_fp32.pt
# (train.export_on_finish): the file slurm/finetune.sh starts from.
#
# Pre-emption: 10 minutes before the time limit SLURM sends SIGUSR1 to this script (--signal=B:...),
# which forwards it to the ranks; they finish their step, save a checkpoint and exit 3, and the script
# requeues the job. SIGTERM (pre-emption, scancel) is forwarded the same way. The requeued job (same job
# id, same log file) resumes from the newest complete checkpoint. Any other failure ends the job with the
# step's exit code.
#
#SBATCH --job-name=vidprism-k710
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -euo pipefail
VP_SCRIPT=train_k710.sh
VIDPRISM_ROOT="${VIDPRISM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
# shellcheck source=slurm/common.sh
source "$VIDPRISM_ROOT/slurm/common.sh"
vp_init

CONFIG="${CONFIG-configs/k710_vitb16.yaml}"
DS_CONFIG="${DS_CONFIG:-ds_configs/zero2.json}"
TRAIN_ARGS=(--deepspeed_config "$DS_CONFIG")
[[ -n "$CONFIG" ]] && TRAIN_ARGS+=(--config "$CONFIG")
vp_common_train_args
[[ -n "${TP_SIZE:-}" ]] && TRAIN_ARGS+=(--set "parallel.tp_size=$TP_SIZE")
TRAIN_ARGS+=("$@")

vp_rendezvous
vp_print_job
REQUIRE=()
[[ -n "$CONFIG" ]] && REQUIRE=(--require train)
vp_resolve_settings "${REQUIRE[@]}" -- "${TRAIN_ARGS[@]}"
vp_link_checkpoints

vp_run_step "${VP_SRUN[@]}" "$PYTHON" train.py "${TRAIN_ARGS[@]}"
