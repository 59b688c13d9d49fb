#!/usr/bin/env bash
# One short GPU session: jaxcnn vs torchvision, same process, same batch, on the lent card.
# Usage (repo root, on a GPU machine whose python has jax[cuda], flax, optax, torch, torchvision):
#   OUT=/tmp/out bash benchmarks/gpu.sh
set -u
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.log"
python3 -c "import jax, flax, optax, torch, torchvision; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__, jax.devices())" | tee -a "$OUT/gpu.log"
run() { echo "== $*" | tee -a "$OUT/gpu.log"; timeout 150 python3 -m jaxcnn.bench --compare=torchvision "$@" 2>&1 | grep -v "^[IW][0-9]" | tee -a "$OUT/gpu.log"; }
for arch in ${ARCHS:-resnet50}; do
  for dt in ${DTYPES:-float32 bfloat16}; do
    run --arch="$arch" --batch_size=${BATCH:-128} --image_size=224 --steps=${STEPS:-30} --dtype="$dt"
  done
done
