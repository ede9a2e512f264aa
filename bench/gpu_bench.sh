#!/usr/bin/env bash
# idiff_bench on a GPU machine, in one call of under 10 minutes: builds idiff against that
# machine's PyTorch (python3's torch.utils.cmake_prefix_path), then runs idiff and, when a
# copy of the reference is carried in .ref/improved-diffusion, the reference in turn on
# The project's GPU yardsticks (CIFAR-10 training at batch 128 in fp32 and bf16, sampling 100
# respaced steps and DDIM 50 at batch 256, ImageNet-64 training at batch 32 with and without
# --use_checkpoint), and prints the table last. Extra arguments go to idiff_bench.
#
#   bench/gpu_bench.sh                         (from the repository root)
#   device tool: run(command="bench/gpu_bench.sh", carry=[".ref", ".deps"], timeout_s=600)
#
# What idiff needs beyond PyTorch (nlohmann-json, CLI11, stb, libzip, pkg-config) comes from
# the machine, or from Debian packages carried in .deps/ (bench/fetch_gpu_deps.sh). Logs,
# the table and every measurement (JSON lines) go to $OUT when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=${IDIFF_GPU_BUILD:-build-gpu}
LOGS=${OUT:-$BUILD}
mkdir -p "$LOGS"
START=$(date +%s)

TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')
PREFIXES="$TORCH_PREFIX"
if ls .deps/*.deb >/dev/null 2>&1; then
  # Carried Debian packages, unpacked beside the system and found first; their .pc files
  # are rewritten to the new prefix.
  D=/tmp/idiff-deps
  mkdir -p $D
  for f in .deps/*.deb; do dpkg-deb -x "$f" $D; done
  sed -i "s|^prefix=/usr\$|prefix=$D/usr|" $D/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc $D/usr/share/pkgconfig/*.pc 2>/dev/null || true
  export PATH=$D/usr/bin:$PATH
  export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:$D/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  export CPATH=$D/usr/include:$D/usr/include/x86_64-linux-gnu:${CPATH:-}
  export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}
  PREFIXES="$PREFIXES;$D/usr"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIXES" \
  -DIDIFF_BUILD_TESTS=OFF -DIDIFF_PYTHON="$(command -v $PY)" -DTORCH_CUDA_ARCH_LIST=9.0 \
  > "$LOGS/configure.log" 2>&1 || { tail -40 "$LOGS/configure.log"; exit 1; }
cmake --build "$BUILD" --target idiff_bench -j "$(nproc)" > "$LOGS/build.log" 2>&1 || { grep -m20 -A5 error "$LOGS/build.log"; exit 1; }
echo "built in $(( $(date +%s) - START )) s"

REF=()
if [ -d .ref/improved-diffusion/improved_diffusion ]; then
  REF=(--reference .ref/improved-diffusion --python "$(command -v $PY)")
fi
"$BUILD/bench/idiff_bench" --device cuda --repeats 2 --steps 20 --warmup 3 "${REF[@]}" \
  --json "$LOGS/gpu_bench.jsonl" "$@" 2> >(tee "$LOGS/gpu_bench.err" >&2) | tee "$LOGS/gpu_bench.txt"
echo "total $(( $(date +%s) - START )) s"
