#!/usr/bin/env bash
# Image quality where users sample (issue 33): from full noise with the reference's clipping
# (idiff sample's defaults), FID, precision and recall of N samples against a held-out set in
# the pooled feature space of a classifier trained on the same kind of data (idiff eval
# --feature_model), for idiff's default at 5, 10 and 20 model calls beside the reference's
# DDIM at 5, 10 and 50 and its 250-step ancestral sampler. The RMS column of the same
# setting is idiff_solver_bench's (README "Sampling accuracy from full noise").
#
#   bench/full_noise_fid.sh MODEL.pt CLASSIFIER.pt HELD_OUT.npz OUT_DIR [N=1000]
#
# MODEL.pt's flags come from its flags.json, else from $MODEL_FLAGS; the classifier's flags
# from $FEATURE_FLAGS (default: the demo-sized classifier of the README, 32x32 grey).
# HELD_OUT.npz holds uint8 images [M, H, W, C] the model never saw; for Fashion-MNIST,
#   bench/full_noise_fid.sh --fashion-mnist-test /usr/share/datasets/fashion-mnist OUT.npz
# writes its 10,000 test images padded to 32x32 as the data loader pads them.
# Each configuration samples with seed 1, so a rerun repeats the table; the table prints
# last and goes to OUT_DIR/table.md.
#
# ROWS selects the rows (space-separated, default "default reference"):
#   default    idiff's default at 5, 10 and 20 calls
#   reference  the reference's DDIM at 5, 10, 50 and its 250-step ancestral sampler
#   solvers    every deterministic solver of the engine (ddim, euler, dpmpp_2m, dpmpp_3m,
#              unipc; heun at half the steps) with every --schedule (karras, logsnr,
#              trailing) at $CALLS model calls (default "10")
#   ode        the reference's DDIM at 250 and 1000 steps: the ODE solution itself, the
#              end every few-call solver approaches (slow: 1000 calls an image)
set -euo pipefail
cd "$(dirname "$0")/.."
IDIFF=${IDIFF:-build/idiff}
PY=${PYTHON:-.venv/bin/python}

if [[ ${1:-} == --fashion-mnist-test ]]; then
  "$PY" - "$2" "$3" <<'EOF'
import gzip, sys, numpy as np
raw = gzip.open(sys.argv[1] + "/t10k-images-idx3-ubyte.gz").read()
x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None]  # 28 -> 32, background 0 (-1 in the model)
np.savez(sys.argv[2], arr_0=x)
print(sys.argv[2], x.shape)
EOF
  exit 0
fi

MODEL=$1 CLASSIFIER=$2 HELD_OUT=$3 OUT=$4 N=${5:-1000}
read -r -a model_flags <<<"${MODEL_FLAGS:-}"
read -r -a feature_flags <<<"${FEATURE_FLAGS:---image_size 32 --image_channels 1 \
--classifier_width 32 --classifier_depth 1 --classifier_attention_resolutions 8 \
--classifier_pool adaptive}"
mkdir -p "$OUT"
TABLE=$OUT/table.md
{
  echo "model: $MODEL, $N samples (seed 1), feature model: $CLASSIFIER, held-out: $HELD_OUT"
  echo
  echo "| sampler | model calls | FID | precision | recall | seconds |"
  echo "| --- | --- | --- | --- | --- | --- |"
} >"$TABLE"

row() {  # row NAME CALLS sample-flags...
  local name=$1 calls=$2 dir=$OUT/$3
  shift 3
  local start=$SECONDS
  rm -rf "$dir"
  "$IDIFF" sample --model_path "$MODEL" "${model_flags[@]}" --num_samples "$N" \
    --batch_size 250 --seed 1 --grid_size 64 -o "$dir" "$@" >"$dir.log" 2>&1
  local seconds=$((SECONDS - start))
  "$IDIFF" eval --ref "$HELD_OUT" --samples "$dir"/samples_*.npz \
    --feature_model "$CLASSIFIER" "${feature_flags[@]}" >"$dir.eval" 2>>"$dir.log"
  local fid precision recall
  fid=$(awk '/^FID:/ {print $2}' "$dir.eval")
  precision=$(awk '/^Precision:/ {print $2}' "$dir.eval")
  recall=$(awk '/^Recall:/ {print $2}' "$dir.eval")
  echo "| $name | $calls | $fid | $precision | $recall | $seconds |" | tee -a "$TABLE"
}

for rows in ${ROWS:-default reference}; do
  case $rows in
    default)
      for calls in 5 10 20; do
        row "idiff default (--steps $calls)" "$calls" "default$calls" --steps "$calls"
      done
      ;;
    reference)
      row "the reference's DDIM (--use_ddim True --timestep_respacing 5)" 5 ddim5 \
        --use_ddim True --timestep_respacing 5
      row "the reference's DDIM, 10" 10 ddim10 --use_ddim True --timestep_respacing 10
      row "the reference's DDIM, 50" 50 ddim50 --use_ddim True --timestep_respacing 50
      row "the reference's ancestral sampler (--timestep_respacing 250)" 250 ancestral250 \
        --timestep_respacing 250
      ;;
    solvers)
      for calls in ${CALLS:-10}; do
        for schedule in karras logsnr trailing; do
          for sampler in ddim euler dpmpp_2m dpmpp_3m unipc heun; do
            steps=$calls
            [[ $sampler == heun ]] && steps=$(((calls + 1) / 2))  # 2 calls a step, 1 the last
            row "--sampler $sampler --schedule $schedule --steps $steps" "$calls" \
              "${sampler}_${schedule}_$calls" --sampler "$sampler" --schedule "$schedule" \
              --steps "$steps"
          done
        done
      done
      ;;
    ode)
      row "the reference's DDIM, 250 (the ODE solution, nearly)" 250 ddim250 \
        --use_ddim True --timestep_respacing 250
      row "the reference's DDIM, 1000 (the ODE solution)" 1000 ddim1000 --use_ddim True
      ;;
    *) echo "ROWS: unknown row set '$rows' (default, reference, solvers, ode)" >&2; exit 2 ;;
  esac
done
echo
cat "$TABLE"
