#!/usr/bin/env bash
# idiff's one entry point for a fresh Debian 12 machine.
#
#   ./build.sh demo    install what is missing, build, run the demo (see README)
#   ./build.sh test    install what is missing, build, run the test suite (CI runs this)
#   ./build.sh setup   only install (Debian packages, the torch wheel in .venv)
#   ./build.sh build   only configure and build (after setup)
#
# Environment: IDIFF_VENV (default ./.venv) and IDIFF_BUILD_DIR (default ./build) move
# the virtual environment and build tree; IDIFF_JOBS sets build parallelism.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${IDIFF_VENV:-$ROOT/.venv}
BUILD=${IDIFF_BUILD_DIR:-$ROOT/build}
JOBS=${IDIFF_JOBS:-$(nproc)}
TORCH_VERSION=2.11.0
# The interop tests compare idiff's solvers with diffusers' schedulers, and the evaluation
# with pytorch-fid, which needs torchvision (the release made for this torch, pinned so pip
# keeps torch as it is), scipy and Pillow.
DIFFUSERS_VERSION=0.42.1
TORCHVISION_VERSION=0.26.0
PYTORCH_FID_VERSION=0.3.0
# The demo plots the loss curve with matplotlib (tools/plot_progress.py).
MATPLOTLIB_VERSION=3.11.2
PIQ_VERSION=0.8.0  # LPIPS as consistency_models uses it (piq.LPIPS)

APT_PACKAGES=(
  build-essential cmake ninja-build ccache git pkg-config
  python3 python3-venv python3-pip
  libgtest-dev libcli11-dev libstb-dev nlohmann-json3-dev libzip-dev zlib1g-dev libgloo-dev
  libssl-dev libcpp-httplib-dev libpng-dev
  chromium chromium-driver python3-selenium
  clang libclang-rt-14-dev clang-format
  openmpi-bin libopenmpi-dev
  dataset-fashion-mnist
)

log() { printf '\033[1m[build.sh]\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "build.sh: need root (or sudo) to install: $*" >&2; exit 1; fi
}

setup() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating the virtual environment $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "import torch, numpy, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION and numpy into $VENV (a few GB on first run)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy
  fi
  if ! "$VENV/bin/python" -c "import diffusers" 2>/dev/null; then
    log "installing diffusers==$DIFFUSERS_VERSION into $VENV (solver interop tests)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "diffusers==$DIFFUSERS_VERSION"
  fi
  if ! "$VENV/bin/python" -c "import pytorch_fid, scipy, PIL, torchvision, sys; sys.exit(torchvision.__version__.split('+')[0] != '$TORCHVISION_VERSION')" 2>/dev/null; then
    log "installing pytorch-fid, scipy and torchvision==$TORCHVISION_VERSION into $VENV (evaluation tests)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" \
      "torchvision==$TORCHVISION_VERSION" "pytorch-fid==$PYTORCH_FID_VERSION" scipy pillow
  fi
  if ! "$VENV/bin/python" -c "import piq" 2>/dev/null; then
    log "installing piq==$PIQ_VERSION into $VENV (the LPIPS test)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "piq==$PIQ_VERSION"
  fi
  if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
    log "installing matplotlib==$MATPLOTLIB_VERSION into $VENV (the demo's loss curve)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
  fi
}

build() {
  local prefix
  prefix=$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    log "configuring $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" -DIDIFF_PYTHON="$VENV/bin/python" ${IDIFF_CMAKE_ARGS:-}
  fi
  log "building with $JOBS jobs"
  cmake --build "$BUILD" -j "$JOBS"
}

run_tests() {
  log "running the tests"
  cd "$BUILD"
  ctest --output-on-failure -j "$JOBS" --timeout 900
}

# The main job: a small diffusion model trained on Fashion-MNIST (Debian's
# dataset-fashion-mnist) for a few minutes on whatever device there is, then a grid of
# samples and the loss curve. IDIFF_DEMO_MINUTES sets the training time, IDIFF_DEMO_DIR the
# output folder.
demo() {
  local out=${IDIFF_DEMO_DIR:-$ROOT/out/demo} minutes=${IDIFF_DEMO_MINUTES:-4}
  # Grey images as one channel; a small UNet, the cosine schedule and many small steps
  # (batch 16 at lr 2e-3) learned garments fastest on two cores of the settings tried (README).
  local model=(--image_size 32 --image_channels 1 --num_channels 32 --num_res_blocks 1
               --attention_resolutions 8 --learn_sigma False --noise_schedule cosine
               --diffusion_steps 1000)
  rm -rf "$out/train" "$out/samples" "$out/loss.png"
  log "training on Fashion-MNIST for $minutes minutes (logs and checkpoints in $out/train)"
  "$BUILD/idiff" train --data_dir fashion-mnist "${model[@]}" --batch_size 16 --lr 2e-3 \
    --ema_rate 0.99 --log_interval 100 --save_interval 1000000 --max_minutes "$minutes" \
    --log_dir "$out/train"
  local ckpt
  ckpt=$(ls "$out/train"/ema_0.99_*.pt | sort | tail -n 1)
  log "sampling 64 images from $ckpt (UniPC, 20 model calls)"
  "$BUILD/idiff" sample --model_path "$ckpt" "${model[@]}" --num_samples 64 --batch_size 64 \
    --sampler unipc --steps 20 --log_dir "$out/samples"
  "$VENV/bin/python" "$ROOT/tools/plot_progress.py" "$out/train/progress.csv" "$out/loss.png"
  log "done: the sample grid is $out/samples/samples_grid.png, the loss curve $out/loss.png"
}

case "${1:-}" in
  setup) setup ;;
  build) setup; build ;;
  test) setup; build; run_tests ;;
  demo) setup; build; demo ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
