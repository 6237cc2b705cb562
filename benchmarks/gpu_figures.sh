#!/usr/bin/env bash
# The GPU figures of docs/RESULTS.md: four benchmarks side by side on one GPU, NumPyro
# backend (JAX puts the work on the GPU when it finds one), each with a training budget of
# MINUTES (default 6), in one command that fits a short lease of a GPU machine:
#
#   - Gated PixelCNN on binarized MNIST (ar_mnist.py, 64 channels, 10 gated layers), JSON
#     benchmarks/results/ar_mnist_gpu.json;
#   - IWAE(k=50) alone (vae_nll.py), vae_nll_gpu.json;
#   - M2 with 100 labels, label draw 0 (ssl_mnist.py, the recipe of docs/RESULTS.md),
#     ssl_mnist_gpu_m2.json;
#   - M1+M2 with 100 labels, draw 0: an M1 VAE for MINUTES/2, then M1+M2 for MINUTES/2,
#     ssl_mnist_gpu_m1m2.json.
#
# The four share the GPU (and its time slices), so each figure is what MINUTES of a shared
# GPU buys, not of a whole one. Each log goes to LOGS/<name>.log; runs to runs/gpu/.
#
#   benchmarks/gpu_figures.sh LOGS [MINUTES]
#   QUICK=1 benchmarks/gpu_figures.sh LOGS 0.2     # checks the script in minutes, on a CPU too
set -u
logs=${1:?usage: benchmarks/gpu_figures.sh LOGS [MINUTES]}
minutes=${2:-6}
half=$(awk "BEGIN { print $minutes / 2 }")
py=${PYTHON:-python}
mkdir -p "$logs" runs/gpu
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1  # four processes, one GPU

ar=() vae=() ssl=()
if [ "${QUICK:-0}" = 1 ]; then
    ar=(--train-limit 1000 --eval-limit 100 --probe-steps 3)
    vae=(--eval-limit 100 --k 20)
    ssl=(--epochs 2 --m1-epochs 2)
fi
ssl_recipe=(--alpha 5000 --lr 1e-3 --batch-size 50 --m2-binarize none --m1-units active)

"$py" benchmarks/ar_mnist.py --models pixelcnn --backend numpyro \
    --minutes-pixelcnn "$minutes" --pixelcnn-channels 64 --pixelcnn-layers 10 \
    --result ar_mnist_gpu --out runs/gpu/ar_mnist "${ar[@]}" >"$logs/pixelcnn.log" 2>&1 &
"$py" benchmarks/vae_nll.py --vae-minutes 0 --iwae5-minutes 0 --iwae50-minutes "$minutes" \
    --result vae_nll_gpu --out runs/gpu/vae_nll "${vae[@]}" >"$logs/iwae50.log" 2>&1 &
"$py" benchmarks/ssl_mnist.py --models m2 --ns 100 --seeds 0 "${ssl_recipe[@]}" \
    --minutes "$minutes" --result ssl_mnist_gpu_m2 --out runs/gpu/ssl_m2 "${ssl[@]}" \
    >"$logs/m2.log" 2>&1 &
"$py" benchmarks/ssl_mnist.py --models m1m2 --ns 100 --seeds 0 "${ssl_recipe[@]}" \
    --minutes "$half" --result ssl_mnist_gpu_m1m2 --out runs/gpu/ssl_m1m2 "${ssl[@]}" \
    >"$logs/m1m2.log" 2>&1 &

status=0
for job in $(jobs -p); do
    wait "$job" || status=1
done
for log in "$logs"/*.log; do
    echo "== $log"
    tail -n 4 "$log"
done
exit $status
