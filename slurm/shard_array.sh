#!/bin/bash
# Shard a big video list as a SLURM array: task I of N decodes a deterministic slice of the list, and the
# last task to finish merges the slices' manifests into one.
#     sbatch --array=0-63 slurm/shard_array.sh --root VIDEOS --list LIST --out SHARDS [data_prep/shard.py options]
# e.g. sbatch --array=0-63%16 slurm/shard_array.sh --root /data/k710 --list lists/k710_train.csv \
#          --dataset k710 --out shards/k710/train
# Every task reads the whole list (class ids are list-wide) and keeps list rows of whole shards:
# slice I of N depends only on the list, N and --shard-size, so a failed task is re-run alone
# (sbatch --array=17 ... with the same arguments; N is taken from SHARD_SLICES then, see below) and
# a re-run task keeps the shards it finished. OUT/manifest.json appears when every slice is done; until
# then the loaders refuse OUT with a message. To merge by hand:
#     python -m vidprism_ds.data.prep.slices merge --out SHARDS
#
# Settings (environment variable: default):
#   SHARD_SLICES    N = the array's task count (SLURM_ARRAY_TASK_COUNT); set it when re-running some
#                   tasks of an array with a narrower --array
#   PYTHON          VIDPRISM_ROOT/.venv/bin/python if it exists, else python3
# Decoder processes per task: --workers, default the task's CPUs (SLURM_CPUS_PER_TASK).
#
#SBATCH --job-name=vidprism-shard
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#SBATCH --time=08:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%A_%a.out

set -euo pipefail
VP_SCRIPT=shard_array.sh
VIDPRISM_ROOT="${VIDPRISM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
# shellcheck source=slurm/common.sh
source "$VIDPRISM_ROOT/slurm/common.sh"
vp_init

[[ -n "${SLURM_ARRAY_TASK_ID:-}" ]] || vp_die "not an array task: submit with sbatch --array=0-<N-1> (see the header)"
SLICE_COUNT="${SHARD_SLICES:-${SLURM_ARRAY_TASK_COUNT:-}}"
[[ "$SLICE_COUNT" =~ ^[0-9]+$ ]] || vp_die "cannot tell the number of slices: set SHARD_SLICES"
(( SLURM_ARRAY_TASK_ID < SLICE_COUNT )) ||
    vp_die "array task $SLURM_ARRAY_TASK_ID >= $SLICE_COUNT slices: use --array=0-$((SLICE_COUNT - 1)) or set SHARD_SLICES"

OUT=""
HAS_WORKERS=0
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
    case "${ARGS[$i]}" in
        --out) OUT="${ARGS[$((i + 1))]:-}" ;;
        --out=*) OUT="${ARGS[$i]#--out=}" ;;
        --workers | --workers=*) HAS_WORKERS=1 ;;
    esac
done
[[ -n "$OUT" ]] || vp_die "--out is required (the folder every slice writes under)"
[[ $HAS_WORKERS -eq 1 ]] || ARGS+=(--workers "${SLURM_CPUS_PER_TASK:-1}")

vp_log "array job ${SLURM_ARRAY_JOB_ID:-?} task $SLURM_ARRAY_TASK_ID: slice $SLURM_ARRAY_TASK_ID/$SLICE_COUNT on $(hostname -s)"
echo "  repository     $VIDPRISM_ROOT"
echo "  python         $PYTHON"
echo "  output         $OUT"
"$PYTHON" -m vidprism_ds.data.prep.slices shard --slice "$SLURM_ARRAY_TASK_ID/$SLICE_COUNT" --no-progress "${ARGS[@]}"
# Every task tries: the one that finds all slices finished writes OUT/manifest.json (atomically, so two
# tasks finishing together write the same file twice, never a torn one).
"$PYTHON" -m vidprism_ds.data.prep.slices merge --out "$OUT" --slices "$SLICE_COUNT" --if-complete
