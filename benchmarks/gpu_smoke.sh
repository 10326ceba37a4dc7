#!/usr/bin/env bash
# The first GPU run, before a lab's real grid: attention x kv_cache x logit_processor (84 cells, 2 molecules
# each) on CUDA, then the table of what ran, what did not and why (the investigation seed's table).
#
#   bash benchmarks/gpu_smoke.sh                 on a machine with a GPU (gpu=local)
#   bash benchmarks/gpu_smoke.sh gpu=h100        on one node of the cluster's h100 partition (job arrays)
#
# Extra arguments are overrides (e.g. gpu.time_min=60). The report lands in artifacts/gpu_smoke/limit-2/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Nothing from the network: the model and tokenizer are the checkout's, and a node may have no internet at all
# (MOLGEN_PYTHON and the wheelhouse: README).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
source sbatch/venv.sh
ensure_venv
slurm=no
for arg in "$@"; do case "$arg" in gpu=local) ;; gpu=*) slurm=yes ;; esac; done
# One line and exit status 2 where this machine has no CUDA device: why (torch's build, or its import error).
if [ "$slurm" = no ] && ! why="$("$MOLGEN_PY" -c '
import torch
if not torch.cuda.is_available():
    raise SystemExit(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}")
' 2>&1)"; then
  echo "gpu_smoke: no CUDA device for $MOLGEN_PY (${why##*$'\n'}): run it on a GPU machine, or on the" \
       "cluster with gpu=h100" >&2
  exit 2
fi
wait_flag=()
[ "$slurm" = yes ] && wait_flag=(--wait)
bash sbatch/run.sh --experiment gpu_smoke --limit 2 "${wait_flag[@]}" "$@" || true  # failed cells are results too
bash sbatch/run.sh --experiment gpu_smoke --report --limit 2 "$@" >/dev/null
sed -n '/^| cell/,/^$/p' artifacts/gpu_smoke/limit-2/report.md
