#!/usr/bin/env bash
# The GPU machine's one call (issue 15), in under 10 minutes: builds idiff, its tests and the
# benchmark against that machine's PyTorch (python3's torch.utils.cmake_prefix_path) with
# every core, runs the tests of ctest label `gpu`, then idiff_bench's GPU yardsticks (CIFAR-10
# training at batch 128 in fp32 and bf16, sampling 100 respaced steps and DDIM 50 at batch
# 256, ImageNet-64 training at batch 32 with and without --use_checkpoint), the reference in
# turn when a copy of it is carried in .ref/improved-diffusion, then the profile of one bf16
# CIFAR-10 training round (host operators, top kernels, how busy the device was), then
# `idiff serve` under load at --max_batch 1, 16 and 64 (bench/serve_load.cpp) on the
# CIFAR-10 configuration with random weights, then consistency_models' commands on CUDA
# (edm-train, cm-train's distillations, one-call and Heun sampling). The summary (tests,
# table) prints last.
#
#   bench/gpu_bench.sh                         (from the repository root)
#   device tool: run(command="bench/gpu_bench.sh", carry=[".ref", ".deps"], timeout_s=600)
#
# Before the call, on the machine with Debian's archive: bench/fetch_gpu_deps.sh (the Debian
# packages idiff needs beyond PyTorch, into .deps/), and a copy of openai/improved-diffusion
# in .ref/improved-diffusion (git ignores both). Logs, the tests' output, the table and every
# measurement (JSON lines) go to $OUT when it is set, else to the build folder: seven files
# (the device tool brings back eight at most).
#
# Environment: IDIFF_GPU_TESTS=0 leaves out the tests, IDIFF_GPU_BENCH=0 the benchmark,
# IDIFF_GPU_BUILD names the build folder (build-gpu), PYTHON the Python with torch (python3),
# IDIFF_GPU_BUDGET the seconds the whole call may take (560). Extra arguments go to
# idiff_bench (e.g. --case cifar10:train:128:bf16).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=${IDIFF_GPU_BUILD:-build-gpu}
LOGS=${OUT:-$BUILD}
BUDGET=${IDIFF_GPU_BUDGET:-560}
mkdir -p "$BUILD" "$LOGS"
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
SUMMARY=$LOGS/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)') || exit 1
PREFIXES="$TORCH_PREFIX"
if ls .deps/*.deb >/dev/null 2>&1; then
  # Carried Debian packages, unpacked beside the system and found first; their .pc files
  # are rewritten to the new prefix.
  D=/tmp/idiff-deps
  mkdir -p $D
  # dpkg-deb where the image has it, else the .deb's data archive through binutils' ar.
  for f in .deps/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" $D
    else
      member=$(ar t "$f" | grep '^data.tar')
      case $member in *.xz) z=--xz ;; *.zst) z=--zstd ;; *.gz) z=--gzip ;; *) z= ;; esac
      ar p "$f" "$member" | tar -x $z -f - -C $D
    fi
  done
  sed -i "s|^prefix=/usr\$|prefix=$D/usr|" $D/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc \
    $D/usr/share/pkgconfig/*.pc 2>/dev/null || true
  export PATH=$D/usr/bin:$PATH
  export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:$D/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  export CPATH=$D/usr/include:$D/usr/include/x86_64-linux-gnu:${CPATH:-}
  export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}
  PREFIXES="$PREFIXES;$D/usr"
fi

say "gpu_bench $(date -u +%Y-%m-%dT%H:%MZ): $(nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'), torch $($PY -c 'import torch;print(torch.__version__)')"

TESTS=${IDIFF_GPU_TESTS:-1}
TARGETS=(idiff idiff_bench idiff_serve_load)
[ "$TESTS" = 1 ] && TARGETS=(idiff idiff_tests idiff_bench idiff_serve_load)
BUILD_TESTS=$([ "$TESTS" = 1 ] && echo ON || echo OFF)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIXES" \
  -DIDIFF_BUILD_TESTS="$BUILD_TESTS" -DIDIFF_PYTHON="$(command -v $PY)" \
  -DTORCH_CUDA_ARCH_LIST=9.0 >"$LOGS/build.log" 2>&1 ||
  { tail -40 "$LOGS/build.log"; exit 1; }
grep -m1 "idiff: LibTorch" "$LOGS/build.log" | tee -a "$SUMMARY"
cmake --build "$BUILD" --target "${TARGETS[@]}" -j "$(nproc)" >>"$LOGS/build.log" 2>&1 ||
  { grep -m20 -A5 -E "error|Error" "$LOGS/build.log"; exit 1; }
say "built in $(($(date +%s) - START)) s with $(nproc) jobs"

TESTS_RC=0
if [ "$TESTS" = 1 ]; then
  # Every test of the label, its output kept whole (the [measured] lines are the numbers).
  T0=$(date +%s)
  timeout $(($(left) > 300 ? 300 : $(left))) ctest --test-dir "$BUILD" -L gpu -j 4 \
    --timeout 240 --output-on-failure -V >"$LOGS/gpu_tests.log" 2>&1
  TESTS_RC=$?
  grep -E "\[measured\]" "$LOGS/gpu_tests.log" | sed 's/^[0-9]*: //' >>"$SUMMARY"
  grep -E "tests passed|tests failed|\*\*\*|Failed|SKIPPED|Passed" "$LOGS/gpu_tests.log" |
    grep -v "^[0-9]*: \[" | tail -30 >>"$SUMMARY"
  say "gpu tests: exit $TESTS_RC in $(($(date +%s) - T0)) s"
fi

if [ "${IDIFF_GPU_BENCH:-1}" = 1 ]; then
  REF=()
  if [ -d .ref/improved-diffusion/improved_diffusion ]; then
    REF=(--reference .ref/improved-diffusion --python "$(command -v $PY)")
  fi
  # The table, then (if time is left) the profile of one bf16 CIFAR-10 training round.
  [ "$(left)" -gt 90 ] || say "bench: only $(left) s left of $BUDGET"
  timeout $(($(left) > 90 ? $(left) - 60 : 30)) "$BUILD/bench/idiff_bench" --device cuda --repeats 2 --steps 20 \
    --warmup 3 "${REF[@]}" --json "$LOGS/gpu_bench.jsonl" "$@" 2>"$LOGS/gpu_bench.err" |
    tee "$LOGS/gpu_bench.txt"
  say "bench: exit $? at $(($(date +%s) - START)) s"
  if [ "$(left)" -gt 45 ]; then
    timeout $(($(left) - 15)) "$BUILD/bench/idiff_bench" --device cuda --repeats 1 --steps 5 \
      --warmup 3 --case cifar10:train:128:bf16 --profile 15 "${REF[@]}" \
      >"$LOGS/gpu_profile.txt" 2>&1
    say "profile: exit $? at $(($(date +%s) - START)) s (gpu_profile.txt)"
  fi
  if [ "$(left)" -gt 60 ]; then
    # The server's batching where it gains most: a CIFAR-10-size model (random weights; the
    # speed does not depend on them), 1-image jobs from 64 clients.
    M=(--image_size 32 --num_channels 128 --num_res_blocks 3 --learn_sigma True --dropout 0.3)
    # Four 32x32 grey PNGs (Python's zlib alone) for a one-step training run.
    "$PY" - <<'PNG'
import os, struct, zlib
os.makedirs("/tmp/serve-data", exist_ok=True)
for i in range(4):
    rows = b"".join(b"\0" + bytes((x * 8 + i * 40) % 256 for x in range(32)) for _ in range(32))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0))
    open(f"/tmp/serve-data/c_{i}.png", "wb").write(png + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PNG
    "$BUILD/idiff" train --data_dir /tmp/serve-data --image_channels 1 "${M[@]}" --max_steps 1 \
      --save_interval 1 --batch_size 2 --log_dir /tmp/serve-model --device cuda >/dev/null 2>&1
    timeout $(($(left) - 10)) "$BUILD/bench/idiff_serve_load" --device cuda \
      --model_path /tmp/serve-model/model000001.pt --clients 64 --jobs 512 --steps 20 \
      --max_batches 1,16,64 --sequential_jobs 4 --time_limit_s 60 >"$LOGS/serve_load.txt" 2>&1
    say "serve_load: exit $? at $(($(date +%s) - START)) s"
    cat "$LOGS/serve_load.txt" >>"$SUMMARY"
  fi
  if [ "$(left)" -gt 60 ] && [ -d /tmp/serve-data ]; then
    # consistency_models' training and sampling on CUDA, small: edm-train, consistency
    # distillation and progressive distillation from it (RAdam, their default), one-call and
    # Heun sampling. Its log's tail goes to the summary (the tool brings back eight files).
    C=(--image_size 32 --image_channels 1 --num_channels 32 --num_res_blocks 1
      --attention_resolutions 8 --num_head_channels 16 --batch_size 4 --device cuda)
    T=/tmp/cm-edm/model000020.pt
    timeout $(($(left) - 10)) bash -c '
      B=$1; T=$2; shift 2
      set -e
      "$B/idiff" edm-train --data_dir /tmp/serve-data "$@" --max_steps 20 --log_dir /tmp/cm-edm
      "$B/idiff" cm-train --data_dir /tmp/serve-data "$@" --teacher_model_path "$T" \
        --max_steps 20 --log_dir /tmp/cm-cd
      "$B/idiff" cm-train --training_mode progdist --scale_mode progdist --start_scales 4 \
        --distill_steps_per_iter 5 --total_training_steps 20 --data_dir /tmp/serve-data "$@" \
        --teacher_model_path "$T" --log_dir /tmp/cm-pd
      "$B/idiff" sample /tmp/cm-cd/model000020.pt --sampler onestep --num_samples 256 \
        --batch_size 256 --device cuda --log_dir /tmp/cm-s1
      "$B/idiff" sample "$T" --sampler heun --steps 18 --num_samples 256 --batch_size 256 \
        --device cuda --log_dir /tmp/cm-s2' _ "$BUILD" "$T" "${C[@]}" >/tmp/cm.log 2>&1
    say "consistency models on cuda: exit $? at $(($(date +%s) - START)) s"
    grep -E "images/s|wall|error|model calls" /tmp/cm.log | tail -12 >>"$SUMMARY"
  fi
  cat "$LOGS/gpu_bench.txt" >>"$SUMMARY"
fi
say "total $(($(date +%s) - START)) s"
echo "==== summary"
cat "$SUMMARY"
exit $TESTS_RC
