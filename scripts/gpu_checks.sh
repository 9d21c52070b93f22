#!/usr/bin/env bash
# Every GPU check of the project in one run, for a lent GPU machine with PyTorch and CUDA but no internet
# (docs/performance.md has the figures it produced). Writes under $OUT:
#   gpu.txt        the GPU, driver and torch versions
#   tests.log      the CUDA tests and the core training/evaluation tests, on the GPU machine
#   bench.json     python -m mnist_vae.bench --device cuda (train img/s per configuration, NLL decoder passes/s)
#   bf16.md/.json  a study of optimized vs optimized[precision=bf16], paired by seed (the bf16 verdict)
#   lstm.md/.json  a study of lstm-plus against dense-encoder and mlp-vae (full protocol; seeds as time allows)
#   dynamic.md/.json  lstm-plus, optimized, dense-encoder and mlp-vae on dynamically binarised digits (one seed)
#   log.txt        everything printed
#
# Usage (from the repository root): OUT=/some/dir bash scripts/gpu_checks.sh [quick]
#   quick: tiny sizes, for trying the script on a CPU first (it then runs on the CPU).
# Limits (seconds) can be set in the environment: TESTS_S, BENCH_S, STUDY_S.
set -uo pipefail
OUT=${OUT:?set OUT to a folder}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export MNIST_VAE_DATA=${MNIST_VAE_DATA:-/tmp/mnist-vae-data}
mkdir -p "$MNIST_VAE_DATA/classifiers"
# A digit classifier trained elsewhere (same data, same checksum) saves its training here.
cp -n .gpu/classifiers/*.safetensors "$MNIST_VAE_DATA/classifiers/" 2>/dev/null || true

QUICK=${1:-}
if [ "$QUICK" = quick ]; then
  DEVICE=cpu; EPOCHS=1; K=8; SAMPLES=200; BF16_SEEDS=2; LSTM_SEEDS=1; JOBS=3; CHUNK=256
  python3 -c "import sys; sys.path.insert(0, 'tests'); from helpers import write_npz; write_npz('/tmp/gpu-checks-small.npz')"
  DATA=(--dataset auto --data-path /tmp/gpu-checks-small.npz)
  BENCH_ARGS="--configs optimized --epochs 2 --nll-images 4 --nll-k 20"
  TESTS="tests/test_distributed.py -k cuda"
else
  DEVICE=cuda; EPOCHS=50; K=1000; SAMPLES=10000; BF16_SEEDS=${BF16_SEEDS:-12}; LSTM_SEEDS=${LSTM_SEEDS:-2}; JOBS=${JOBS:-15}; CHUNK=8192
  DATA=(--dataset embedded)
  BENCH_ARGS="--configs optimized,original --epochs 2 --nll-images 100"
  TESTS="tests/test_distributed.py tests/test_models.py tests/test_evaluate.py"
fi
exec > >(tee -a "$OUT/log.txt") 2>&1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
} > "$OUT/gpu.txt"
cat "$OUT/gpu.txt"

echo "== tests (${TESTS_S:-45} s at most)"
timeout "${TESTS_S:-45}" python3 -m pytest -q -p no:cacheprovider $TESTS > "$OUT/tests.log" 2>&1
echo "tests exit $?"; tail -5 "$OUT/tests.log"

echo "== bench on $DEVICE (${BENCH_S:-45} s at most)"
timeout "${BENCH_S:-45}" python3 -m mnist_vae.bench --device "$DEVICE" --threads 1 $BENCH_ARGS --out "$OUT/bench.json"
echo "bench exit $?"

echo "== three studies at once (${STUDY_S:-230} s at most, then reports of what finished)"
COMMON=("${DATA[@]}" --epochs "$EPOCHS" --k "$K" --samples "$SAMPLES" --chunk "$CHUNK" --device "$DEVICE" --threads 1)
declare -A CONFIGS=([bf16]="optimized,optimized[precision=bf16]" [lstm]="lstm-plus,dense-encoder,mlp-vae"
                    [dynamic]="lstm-plus,optimized,dense-encoder,mlp-vae")
declare -A SEEDS=([bf16]=$BF16_SEEDS [lstm]=$LSTM_SEEDS [dynamic]=1)
at_least_1() { echo $(( $1 > 0 ? $1 : 1 )); }
declare -A WORKERS=([bf16]=$(at_least_1 $(( JOBS * 2 / 3 ))) [lstm]=$(at_least_1 $(( (JOBS - JOBS * 2 / 3 + 1) / 2 )))
                    [dynamic]=$(at_least_1 $(( (JOBS - JOBS * 2 / 3) / 2 ))))
study() {  # NAME [more study options...]
  local s=$1; shift
  python3 -m mnist_vae study --configs "${CONFIGS[$s]}" --seeds "${SEEDS[$s]}" --out "/tmp/study-$s" "${COMMON[@]}" "$@"
}
pids=()
for s in bf16 lstm dynamic; do
  extra=(); [ $s = dynamic ] && extra=(--binarize dynamic)
  timeout "${STUDY_S:-230}" bash -c "$(declare -p CONFIGS SEEDS COMMON); $(declare -f study); study $s --jobs ${WORKERS[$s]} ${extra[*]}" \
    > "/tmp/study-$s.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"  # (not a bare wait: that would also wait for the tee of this script's own output)
for s in bf16 lstm dynamic; do
  extra=(); [ $s = dynamic ] && extra=(--binarize dynamic)
  grep -E "done \(|error" "/tmp/study-$s.log" | tail -30
  study $s --report-only "${extra[@]}" > /dev/null 2>&1 || echo "$s: no finished run to report"
  cp "/tmp/study-$s/report.md" "$OUT/$s.md" 2>/dev/null; cp "/tmp/study-$s/study.json" "$OUT/$s.json" 2>/dev/null
done
echo "== done"
