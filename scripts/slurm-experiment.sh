#!/bin/bash
# A study as a Slurm job array: every task runs the same `supernet experiment` line on one
# shared folder; each training is claimed by one task, a dead task's training is taken over
# and resumed, and the last task to finish writes the report.
#
#   sbatch --array=1-8 scripts/slurm-experiment.sh            # 8 workers
#   STUDY=/shared/studies/large BACKEND=gpu sbatch --gres=gpu:1 --array=1-4 scripts/slurm-experiment.sh
#
# Preemption and time limits: Slurm sends SIGUSR1 two minutes before the limit (--signal) and
# SIGTERM on preemption; supernet finishes its step, writes the training state and exits 138
# or 143, and the task requeues itself, to resume where it stopped.
#SBATCH --job-name=supernet-study
#SBATCH --cpus-per-task=2
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
#SBATCH --output=slurm-%A_%a.out

STUDY=${STUDY:-$HOME/studies/large}
BACKEND=${BACKEND:-auto}
# The study; SUPERNET_ARGS replaces it (the same in every task).
ARGS=${SUPERNET_ARGS:---space large --standalone 16 --val 10000 --sampling uniform,fair}

# shellcheck disable=SC2086
supernet experiment $ARGS --backend "$BACKEND" --out "$STUDY" &
child=$!
# Forwarded to supernet, which stops after its current step.
trap 'kill -USR1 "$child"' USR1
trap 'kill -TERM "$child"' TERM
status=0
while true; do
    wait "$child" && status=0 || status=$?
    # `wait` also returns when a trapped signal arrives: wait on while supernet runs.
    kill -0 "$child" 2>/dev/null || break
done
if [ "$status" -eq 138 ] || [ "$status" -eq 143 ]; then
    echo "stopped ($status): requeued to resume"
    scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    exit 0
fi
exit "$status"
