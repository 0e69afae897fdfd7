#!/usr/bin/env bash
# Train one charlstm model across several GPU nodes with Slurm.
#
#   sbatch examples/slurm.sh corpus.txt
#
# srun starts one `charlstm train` per task (here one per GPU: 2 nodes x 4).
# Every task runs the same command; JAX's distributed runtime joins them, and
# the batch's streams are split over all 8 GPUs, each task reading only its
# own share from its own copy of the corpus. Task 0 prints progress and
# writes metrics.jsonl and samples.txt; all tasks write their part of each
# checkpoint (Orbax), so the run directory must be on storage every node
# sees (NFS, Lustre, GCS, ...), and so must the corpus path.
#
# Under srun, charlstm finds the layout by itself (it calls
# jax.distributed.initialize(), which reads SLURM_* variables). The explicit
# variables below do the same, and are what to set with any other launcher.
#
#SBATCH --job-name=charlstm
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
# All of a node's GPUs visible to each of its tasks: under Slurm, JAX gives
# task SLURM_LOCALID the GPU of that index (--gpus-per-task=1 would hide it).
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=charlstm-%j.log

set -euo pipefail

corpus="${1:?usage: sbatch examples/slurm.sh CORPUS}"
run_dir="runs/$(basename "$corpus" .txt)-slurm-$SLURM_JOB_ID"  # one name for every task

# Process 0's node and a port every task agrees on. Two jobs on one node
# whose ids end alike would pick the same port: charlstm refuses a port in
# use (process 0 says so), and resubmitting picks another.
coordinator_host="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export CHARLSTM_COORDINATOR="$coordinator_host:$((20000 + SLURM_JOB_ID % 10000))"
export CHARLSTM_NUM_PROCESSES="$SLURM_NTASKS"

# The global batch (here 512 streams) must divide by the number of GPUs:
# each gets 64, the batch one GPU runs well with. Scaling comes from the
# batch: the recurrence itself is sequential in time.
# CHARLSTM_PROCESS_ID is per task, so it is set inside srun's shell.
# Since Slurm 22.05 srun does not pass on #SBATCH --cpus-per-task: given here.
srun --cpus-per-task="$SLURM_CPUS_PER_TASK" bash -c 'CHARLSTM_PROCESS_ID="$SLURM_PROCID" exec charlstm train "$0" --out "$1" \
    --hidden 1024 --layers 4 --batch-size 512 --seq-len 128 --lr 2e-3 --steps 20000' \
    "$corpus" "$run_dir"

# If the job is cut short, resume it in a new job: any number of tasks whose
# GPU count divides the batch can continue the run. Name the run's folder
# as the first job made it (its job id, not the new one's), for example
# with this script's srun line changed to
#   srun --cpus-per-task="$SLURM_CPUS_PER_TASK" \
#       bash -c 'CHARLSTM_PROCESS_ID="$SLURM_PROCID" exec charlstm resume "$0"' runs/corpus-slurm-12345
