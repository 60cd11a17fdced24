#!/usr/bin/env bash
# The GPU check of issue 12, for any machine with a GPU: the gpu-marked tests (every strategy x
# none/fp16/topk/powersgd on 2 workers sharing GPU 0, sync against one process, the ledger against
# the CPU's; NCCL with 2+ GPUs), then the GPU rows of the sync-vs-ddp bench. Without CUDA it says
# so in one line and exits 0 (nothing measured, nothing claimed).
#   scripts/gpu-check.sh            # tests, then the bench's GPU rows (quick: 3 short rounds)
#   FULL=1 scripts/gpu-check.sh     # the bench in full, every device (11 rounds; saves bench-results/sync-vs-ddp.json)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-check: torch sees no GPU here ($("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA build" if torch.backends.cuda.is_built() else "CPU-only build")')): nothing to check"
  exit 0
fi
"$PY" -c 'import torch; print("gpu-check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0), "torch", torch.__version__)'
export IPYTHONDIR="$(mktemp -d)/ipython" LAB_DEVICE_CHECK=1
"$PY" -m pytest tests/test_gpu.py -m gpu -q -rfEs -x
if [ "${FULL:-0}" = 1 ]; then   # cpu and GPU rows together: the saved result stays complete
  LAB_QUICK=0 "$PY" -m lab bench sync-vs-ddp --device all --batch "${BATCH:-32,128,256}"
  exit
fi
out="$(mktemp -d)"
LAB_QUICK=1 "$PY" -m lab bench sync-vs-ddp --quick --out "$out" --device cuda-shared --batch "${BATCH:-32,128,256}"
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  LAB_QUICK=1 "$PY" -m lab bench sync-vs-ddp --quick --out "$out" --device cuda --batch "${BATCH:-32,128,256}"
fi
