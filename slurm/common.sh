# Shared by the slurm/*.sh batch scripts (sourced, not run). See docs/cluster.md.
#
# sbatch copies a batch script into the node's spool directory before running it, so the scripts cannot
# find the repository from their own path: they use VIDPRISM_ROOT, default the directory sbatch was
# called from (SLURM_SUBMIT_DIR).

# Exit code of train.py meaning "stopped by SIGUSR1/SIGTERM after saving a checkpoint; start me again".
VP_EXIT_REQUEUE=3

vp_die() {
    echo "$(basename "${VP_SCRIPT:-slurm}"): error: $*" >&2
    exit 2
}

vp_log() {
    echo "[$(date '+%Y-%m-%d %H:%M:%S')] $*"
}

# cd to the repository, pick the interpreter, refuse to run outside an allocation.
vp_init() {
    [[ -n "${SLURM_JOB_ID:-}" ]] || vp_die "not inside a SLURM job: submit with sbatch (see docs/cluster.md)"
    [[ -f "$VIDPRISM_ROOT/train.py" ]] ||
        vp_die "VIDPRISM_ROOT=$VIDPRISM_ROOT has no train.py: submit from the repository root or set VIDPRISM_ROOT"
    cd "$VIDPRISM_ROOT"
    if [[ -z "${PYTHON:-}" ]]; then
        if [[ -x .venv/bin/python ]]; then PYTHON="$VIDPRISM_ROOT/.venv/bin/python"; else PYTHON=python3; fi
    fi
    command -v "$PYTHON" > /dev/null || vp_die "PYTHON=$PYTHON: not found"
    export PYTHONUNBUFFERED=1
    # one intra-op thread per CPU Slurm gave the task (torch would otherwise start one per core of the node)
    [[ -n "${SLURM_CPUS_PER_TASK:-}" ]] && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}"
    vp_srun_command
}

# Rendezvous for torch.distributed, the same on every node without talking: the first host of the job's
# node list and a port derived from the job id (the formula of vidprism_ds.train.launch.slurm_port).
# The host is taken as Slurm's NodeAddr for that node: node names need not resolve in DNS (they do
# not on the test cluster's virtual nodes), and NodeAddr is how Slurm itself reaches the node.
vp_rendezvous() {
    local first_node node_addr
    first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    [[ -n "$first_node" ]] || vp_die "scontrol show hostnames '$SLURM_JOB_NODELIST' printed nothing"
    node_addr=$(scontrol show node "$first_node" --oneliner 2> /dev/null | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
    export MASTER_ADDR="${node_addr:-$first_node}"
    export MASTER_PORT=$((15000 + SLURM_JOB_ID % 20000))
}

# Print the job's shape and the rendezvous; the scripts add their own resolved settings.
vp_print_job() {
    vp_log "job ${SLURM_JOB_ID} (${SLURM_JOB_NAME:-?}) restart ${SLURM_RESTART_COUNT:-0}:" \
        "nodes ${SLURM_JOB_NODELIST} (${SLURM_JOB_NUM_NODES:-?}), tasks ${SLURM_NTASKS:-?}" \
        "(${SLURM_NTASKS_PER_NODE:-?} per node), cpus per task ${SLURM_CPUS_PER_TASK:-default}," \
        "gpus per node ${SLURM_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-none}}"
    echo "  repository     $VIDPRISM_ROOT"
    echo "  python         $PYTHON"
    echo "  rendezvous     MASTER_ADDR=${MASTER_ADDR:-} MASTER_PORT=${MASTER_PORT:-}"
}

# train.py arguments from the location variables every script documents (appended to TRAIN_ARGS).
vp_common_train_args() {
    [[ -n "${DATA_DIR:-}" ]] && TRAIN_ARGS+=(--set "data.train_shards=$DATA_DIR/train" --set "data.val_shards=$DATA_DIR/val")
    [[ -n "${OUTPUT_DIR:-}" ]] && TRAIN_ARGS+=(--set "train.output_dir=$OUTPUT_DIR")
    [[ -n "${WANDB_MODE:-}" ]] && TRAIN_ARGS+=(--set "logging.wandb_mode=$WANDB_MODE")
    [[ -n "${WANDB_PROJECT:-}" ]] && TRAIN_ARGS+=(--set "logging.wandb_project=$WANDB_PROJECT")
    return 0
}

# srun for one task per GPU with the allocation's layout, in VP_SRUN. --cpus-per-task is passed on
# explicitly because srun no longer inherits it from sbatch (Slurm >= 22.05). --wait: once a rank has
# ended, the others get 10 minutes (a rank that crashed would otherwise leave the rest blocked in a
# collective). --kill-on-bad-exit=0 lets every rank finish its checkpoint after a signal.
vp_srun_command() {
    VP_SRUN=(srun --kill-on-bad-exit=0 --wait=600)
    [[ -n "${SLURM_CPUS_PER_TASK:-}" ]] && VP_SRUN+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
    return 0
}

# Resolve train.py's arguments exactly as train.py will (config file + --set overrides) and print the
# data, output, checkpoint and wandb locations; sets VP_OUTPUT_DIR. Fails here, before srun, on a bad
# config (exit 2 and the key's name).
vp_resolve_settings() {
    local exports
    exports=$("$PYTHON" "$VIDPRISM_ROOT/slurm/resolve_settings.py" "$@") || exit $?
    eval "$exports"
}

# CHECKPOINT_DIR elsewhere than OUTPUT_DIR/checkpoints (e.g. a scratch filesystem): train.py writes
# under OUTPUT_DIR/checkpoints, which becomes a link to it.
vp_link_checkpoints() {
    local link="$VP_OUTPUT_DIR/checkpoints"
    [[ -n "${CHECKPOINT_DIR:-}" ]] || return 0
    mkdir -p "$CHECKPOINT_DIR" "$VP_OUTPUT_DIR"
    if [[ -L "$link" ]]; then
        [[ "$(readlink -f "$link")" == "$(readlink -f "$CHECKPOINT_DIR")" ]] ||
            vp_die "$link links to $(readlink -f "$link"), not CHECKPOINT_DIR=$CHECKPOINT_DIR"
    elif [[ -e "$link" ]]; then
        [[ "$(readlink -f "$link")" == "$(readlink -f "$CHECKPOINT_DIR")" ]] ||
            vp_die "$link is a directory already; move its checkpoints to CHECKPOINT_DIR=$CHECKPOINT_DIR first"
    else
        ln -s "$(readlink -f "$CHECKPOINT_DIR")" "$link"
    fi
}

vp_forward_signal() {
    local signal=$1
    vp_log "batch script got SIG$signal: forwarding it to the job step (each rank finishes its step and saves)"
    if [[ -n "${VP_STEP_PID:-}" ]]; then
        # srun passes the signal on to every task of the step, on every node
        kill -s "$signal" "$VP_STEP_PID" 2> /dev/null || true
    fi
}

# Run one job step (srun + arguments) in the background so the traps can run while it works, wait for it,
# and act on its exit code: 0 -> exit 0; 3 (checkpoint saved) -> requeue this job; anything else -> exit
# with that code. SIGUSR1 (sbatch --signal=B:USR1@T, the warning before the time limit) and SIGTERM
# (preemption, scancel) are forwarded to the step.
vp_run_step() {
    local code=0 max_restarts="${MAX_RESTARTS:-50}"
    trap 'vp_forward_signal USR1' USR1
    trap 'vp_forward_signal TERM' TERM
    vp_log "starting: $*"
    "$@" &
    VP_STEP_PID=$!
    while true; do
        # a trapped signal interrupts `wait` (status > 128) while the step runs on: wait again
        wait "$VP_STEP_PID" && code=0 || code=$?
        kill -0 "$VP_STEP_PID" 2> /dev/null || break
    done
    trap - USR1 TERM
    VP_STEP_PID=""
    if [[ $code -eq 0 ]]; then
        vp_log "job step finished"
        exit 0
    fi
    if [[ $code -ne $VP_EXIT_REQUEUE ]]; then
        vp_log "job step failed with exit code $code"
        exit "$code"
    fi
    if [[ "${SLURM_RESTART_COUNT:-0}" -ge "$max_restarts" ]]; then
        vp_log "checkpoint saved; not requeueing: already restarted ${SLURM_RESTART_COUNT} times (MAX_RESTARTS=$max_restarts)"
        exit "$VP_EXIT_REQUEUE"
    fi
    vp_log "checkpoint saved; requeueing job $SLURM_JOB_ID (it resumes from the newest checkpoint)"
    if ! scontrol requeue "$SLURM_JOB_ID"; then
        # e.g. a cancelled or timed-out job: the checkpoint is there, the same sbatch command continues it
        vp_log "scontrol requeue failed; submit the same command again to continue from the checkpoint"
    fi
    exit "$VP_EXIT_REQUEUE"
}
