#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: configure a CUDA build (build-gpu), build it, run every test of
# the `cuda` label (the same set `make test` runs on the CUDA emulator: tests/cuda's op table and
# kernel tests, the OPT, method-fixture and LoRA tests on CUDA, the CLI end to end with --device
# cuda, and — with one GPU per rank — NCCL and data parallel on 2 and 3 ranks), the unit tests, and
# the op benchmarks; print a summary. A skipped test is a failure here (LETHE_REQUIRE_CUDA=1): the
# point of the run is that the CUDA code executed. Meant to run in one call of the device tool from
# the repository root:   tools/gpu_check.sh [--jobs N] [--skip-unit] [--skip-bench]
#
# Dependencies: the Debian packages of tools/install-deps.sh. A GPU machine that cannot install
# them may get them as .deb files in $LETHE_DEPS_DIR (default: .gpu-deps in the repo root),
# which this script unpacks into /tmp/lethe-deps and puts on the search paths. Fill that folder on
# a machine with apt (same distribution as the GPU machine's image) with:
#   tools/gpu_check.sh --download-debs
# Logs go to $OUT (when set, as under the device tool) or build-gpu/gpu_check/.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${LETHE_GPU_BUILD:-build-gpu}
DEPS_DIR=${LETHE_DEPS_DIR:-.gpu-deps}
JOBS=$(nproc 2>/dev/null || echo 4)
RUN_UNIT=1
RUN_BENCH=1

DEB_PACKAGES=(libdnnl-dev libdnnl2 libdnnl3 ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-c-headers
              nlohmann-json3-dev libcli11-dev libyaml-cpp-dev libyaml-cpp0.7
              libpcre2-dev libpcre2-8-0 libsentencepiece-dev libsentencepiece0 libgtest-dev
              libgmock-dev googletest libbenchmark-dev libbenchmark1debian libomp-dev)

while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS=$2; shift ;;
    --skip-unit) RUN_UNIT=0 ;;
    --skip-bench) RUN_BENCH=0 ;;
    --download-debs)
      mkdir -p "$DEPS_DIR" && cd "$DEPS_DIR" || exit 1
      # Names differ between releases; download what this distribution has, report the rest.
      for p in "${DEB_PACKAGES[@]}"; do apt-get download "$p" >/dev/null 2>&1 || echo "not found: $p"; done
      ls -1 ./*.deb 2>/dev/null | wc -l | xargs echo "debs in $DEPS_DIR:"
      exit 0 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

LOG_DIR=${OUT:-$ROOT/$BUILD/gpu_check}
mkdir -p "$LOG_DIR"
declare -a SUMMARY=()
STATUS=0
note() { SUMMARY+=("$1"); echo "== $1"; }

# ---- the GPU --------------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG_DIR/gpu.txt"
else
  echo "gpu_check: nvidia-smi not found; the CUDA tests will skip if no GPU is visible" >&2
fi
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -z "$NVCC" ]; then
  echo "gpu_check: nvcc not found (install the CUDA toolkit or put it on PATH)" >&2
  exit 1
fi
note "nvcc: $("$NVCC" --version | tail -1)"

# ---- carried dependencies -------------------------------------------------------------------------
if ls "$DEPS_DIR"/*.deb >/dev/null 2>&1; then
  PREFIX=/tmp/lethe-deps
  mkdir -p "$PREFIX"
  for f in "$DEPS_DIR"/*.deb; do dpkg-deb -x "$f" "$PREFIX" || dpkg -x "$f" "$PREFIX"; done
  export CMAKE_PREFIX_PATH="$PREFIX/usr:${CMAKE_PREFIX_PATH:-}"
  export PKG_CONFIG_PATH="$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig:$PREFIX/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}"
  export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  export CPATH="$PREFIX/usr/include:${CPATH:-}"
  # pkg-config files name prefix=/usr; point them at the unpacked tree.
  for pc in "$PREFIX"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do
    [ -f "$pc" ] && sed -i "s|^prefix=/usr|prefix=$PREFIX/usr|" "$pc"
  done
  note "dependencies: unpacked $(ls "$DEPS_DIR"/*.deb | wc -l) .deb files from $DEPS_DIR"
fi

# ---- configure and build --------------------------------------------------------------------------
start=$(date +%s)
# Without OpenMPI on the GPU machine: no data-parallel tests (the summary says so).
MPI_FLAG=ON
command -v mpicxx >/dev/null || { MPI_FLAG=OFF; note "MPI: not installed; tests/dist not built"; }
if ! cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLETHE_CUDA=ON -DLETHE_MPI=$MPI_FLAG \
     -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES=90 \
     >"$LOG_DIR/configure.log" 2>&1; then
  tail -30 "$LOG_DIR/configure.log"
  note "configure: FAILED (see configure.log; missing packages? try --download-debs)"
  printf '%s\n' "${SUMMARY[@]}"
  exit 1
fi
note "configure: ok"

build_target() {
  if cmake --build "$BUILD" --target "$1" -j "$JOBS" >"$LOG_DIR/build-$1.log" 2>&1; then
    note "build $1: ok"
    return 0
  fi
  grep -E "error|Error" "$LOG_DIR/build-$1.log" | head -20
  note "build $1: FAILED (see build-$1.log)"
  STATUS=1
  return 1
}
for t in cuda_tests opt_tests trainer_tests eval_tests lethe cli_tests; do build_target "$t"; done
[ "$MPI_FLAG" = ON ] && build_target dist_tests  # the 1- to 3-rank NCCL tests need MPI
[ $RUN_UNIT -eq 1 ] && build_target unit_tests
note "build time: $(( $(date +%s) - start )) s"

# ---- the cuda label: every CUDA test, nothing skipped ---------------------------------------------
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
GPUS=${GPUS:-0}
EXCLUDE=""
if [ "$GPUS" -lt 3 ]; then
  # NCCL refuses two ranks on one GPU: the 2- and 3-rank tests need a GPU per rank.
  EXCLUDE="OnCuda.*Rank|DistOnCuda"
  note "DistOnCuda / DataParallelOnCuda: not run ($GPUS GPU(s) visible; they need 3, one per rank)"
fi
(cd "$BUILD" && LETHE_REQUIRE_CUDA=1 ctest -L cuda ${EXCLUDE:+-E "$EXCLUDE"} -j 1 \
   --output-on-failure --output-junit "$LOG_DIR/cuda_label.xml" >"$LOG_DIR/cuda_label.log" 2>&1)
rc=$?
total=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$LOG_DIR/cuda_label.log" | tail -1)
skipped=$(grep -c 'Skipped\|Not Run' "$LOG_DIR/cuda_label.log")
note "ctest -L cuda: exit $rc, ${total:-no summary}, skipped $skipped"
if [ $rc -ne 0 ] || [ "$skipped" -ne 0 ]; then
  STATUS=1
  grep -E 'Failed|Skipped|Not Run' "$LOG_DIR/cuda_label.log" | head -40
fi

# ---- tests ----------------------------------------------------------------------------------------
run_tests() {  # name binary
  local bin="$BUILD/tests/$1/$2"
  [ -x "$bin" ] || { note "$2: not built"; STATUS=1; return; }
  local xml="$LOG_DIR/$2.xml"
  LETHE_REQUIRE_CUDA=1 "$bin" --gtest_output=xml:"$xml" >"$LOG_DIR/$2.log" 2>&1
  local rc=$?
  local passed failed skipped
  passed=$(grep -c '^\[       OK \]' "$LOG_DIR/$2.log")
  failed=$(grep -c '^\[  FAILED  \].*(' "$LOG_DIR/$2.log")
  skipped=$(grep -c '^\[  SKIPPED \]' "$LOG_DIR/$2.log")
  note "$2: exit $rc, passed $passed, failed $failed, skipped $skipped"
  [ "$skipped" -ne 0 ] && note "$2: $skipped skipped: a skip is a failure here" && STATUS=1
  if [ $rc -ne 0 ]; then
    STATUS=1
    grep -E '^\[  FAILED  \]' "$LOG_DIR/$2.log" | head -40
    grep -B2 -A6 'Failure' "$LOG_DIR/$2.log" | head -80
  fi
}
[ $RUN_UNIT -eq 1 ] && run_tests unit unit_tests

# ---- NCCL: the 1-rank communicator on device 0 (docs/distributed.md) -------------------------------
if cmake --build "$BUILD" --target dist_collectives -j "$JOBS" >"$LOG_DIR/build-dist.log" 2>&1 &&
   [ -x "$BUILD/tests/dist/dist_collectives" ]; then
  if "$BUILD/tests/dist/dist_collectives" --cuda >"$LOG_DIR/nccl.log" 2>&1; then
    note "nccl 1-rank check: ok"
  else
    note "nccl 1-rank check: FAILED (nccl.log)"
    tail -5 "$LOG_DIR/nccl.log"
    STATUS=1
  fi
else
  note "nccl 1-rank check: not built (no MPI or no NCCL in this build; build-dist.log)"
fi

# ---- benchmarks (when the CLI exists and knows them) ----------------------------------------------
if [ $RUN_BENCH -eq 1 ]; then
  if cmake --build "$BUILD" --target lethe -j "$JOBS" >"$LOG_DIR/build-lethe.log" 2>&1 &&
     [ -x "$BUILD/tools/lethe" ]; then
    OPS_JSON="$LOG_DIR/bench-ops-cuda.jsonl"
    OPS_TORCH_JSON="$LOG_DIR/bench-ops-cuda-torch.jsonl"
    : >"$OPS_TORCH_JSON"
    if "$BUILD/tools/lethe" bench ops --device cuda >"$OPS_JSON" 2>"$LOG_DIR/bench-ops-cuda.txt"; then
      note "bench ops --device cuda: ok (bench-ops-cuda.txt)"
      tail -40 "$LOG_DIR/bench-ops-cuda.txt"
      for dtype in f32 bf16; do
        [ "$dtype" = bf16 ] &&
          "$BUILD/tools/lethe" bench ops --device cuda --dtype bf16 >>"$OPS_JSON" \
            2>>"$LOG_DIR/bench-ops-cuda.txt"
        python3 -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1 &&
          python3 tools/bench/torch_ops.py --device cuda --dtype "$dtype" >>"$OPS_TORCH_JSON" \
            2>>"$LOG_DIR/bench-ops-cuda-torch.txt"
      done
    else
      note "bench ops --device cuda: not available or failed (see bench-ops-cuda.txt)"
      tail -5 "$LOG_DIR/bench-ops-cuda.txt"
    fi
    # Whole NGDiff steps at issue 22's shapes (OPT-125m and OPT-1.3b, batch 8 x 512, f32 and
    # bf16), lethe and — when this machine's python has torch + transformers — the PyTorch twin.
    STEP_JSON="$LOG_DIR/bench-step-cuda.jsonl"
    TORCH_JSON="$LOG_DIR/bench-step-cuda-torch.jsonl"
    : >"$STEP_JSON"
    : >"$TORCH_JSON"
    HAVE_TORCH=0
    python3 -c "import torch, transformers; assert torch.cuda.is_available()" >/dev/null 2>&1 &&
      HAVE_TORCH=1
    for model in 125m 1.3b; do
      layers=12
      [ "$model" = 1.3b ] && layers=24
      for dtype in f32 bf16; do
        args=(--device cuda --model "$model" --layers "$layers" --batch 8 --seq 512
              --dtype "$dtype" --steps 5)
        if "$BUILD/tools/lethe" bench step "${args[@]}" >>"$STEP_JSON" \
             2>>"$LOG_DIR/bench-step-cuda.txt"; then
          note "bench step --device cuda $model $dtype: ok"
        else
          note "bench step --device cuda $model $dtype: FAILED (bench-step-cuda.txt)"
          STATUS=1
        fi
        if [ $HAVE_TORCH -eq 1 ]; then
          python3 tools/bench/torch_step.py "${args[@]}" >>"$TORCH_JSON" \
            2>>"$LOG_DIR/bench-step-cuda-torch.txt" ||
            note "torch_step.py $model $dtype: failed (bench-step-cuda-torch.txt)"
        fi
      done
    done
    [ $HAVE_TORCH -eq 1 ] || note "torch_step.py: no torch with CUDA on this machine; lethe's side only"
  else
    note "bench: no lethe CLI target yet; skipped"
  fi
fi

echo
echo "==================== gpu_check summary ===================="
printf '%s\n' "${SUMMARY[@]}"
echo "logs: $LOG_DIR"
# The op and step tables last: lethe beside PyTorch when both ran, else lethe's lines.
if [ $RUN_BENCH -eq 1 ] && [ -s "${OPS_TORCH_JSON:-/nonexistent}" ]; then
  echo
  python3 tools/bench/torch_ops.py --compare "$OPS_JSON" "$OPS_TORCH_JSON"
fi
if [ $RUN_BENCH -eq 1 ] && [ -s "${STEP_JSON:-/nonexistent}" ]; then
  echo
  if [ -s "${TORCH_JSON:-/nonexistent}" ]; then
    python3 tools/bench/torch_step.py --compare "$STEP_JSON" "$TORCH_JSON"
  else
    cat "$STEP_JSON"
  fi
fi
[ $STATUS -eq 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit $STATUS
