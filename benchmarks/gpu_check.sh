#!/usr/bin/env bash
# Every CUDA check in one go, for a GPU held for a few minutes (docs/benchmarks.md, "GPU"):
# the device, the CUDA tests, the pose stage per precision (launched and as CUDA graphs, batch 1
# and 4, ms per crop and each path's change from strict float32 in mm), where start-up goes, and
# the whole pipeline on the 640x480 one-person clip with --precision auto and fp32 (and with the
# small trained-like network, for the pipeline's own cost).
#
#   bash benchmarks/gpu_check.sh [CHECKPOINT_L] [WORK_DIR]
#
# CHECKPOINT_L: a ConvNeXtPose-L release file (default: the conformance one in ../shared; the
# trained-like one of benchmarks/finetune_pseudo_labels.py is the one whose precision figures
# mean something). PYTHON picks the interpreter (default: python3). Each step has its own time
# limit and a failing step does not stop the next.
set -u
PYTHON=${PYTHON:-python3}
CHECKPOINT=${1:-../shared/convnextpose/ConvNeXtPose_L.tar}
WORK=${2:-out/gpu}
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1

step() { printf '\n### %s\n' "$*"; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
lscpu | grep -m1 'Model name'
echo "CPU cores: $(nproc)"

step "CUDA tests"
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_graphs.py tests/test_precision.py \
    tests/test_inference_path.py tests/test_optimize.py

step "pose stage: $CHECKPOINT"
timeout 240 "$PYTHON" benchmarks/bench_pose.py --device cuda --variant L --checkpoint "$CHECKPOINT" --runs 50

step "start-up on CUDA, cuDNN autotuning on and off"
timeout 150 "$PYTHON" benchmarks/bench_cuda_startup.py --checkpoint "$CHECKPOINT"

step "clip"
"$PYTHON" benchmarks/make_clip.py "$WORK/one_person.mp4" --frames 900

for precision in auto fp32; do
    step "end to end, --precision $precision"
    timeout 180 "$PYTHON" run_demo.py --input "$WORK/one_person.mp4" --model "$CHECKPOINT" --device cuda \
        --precision "$precision" --benchmark --no-progress
done

# the small trained-like network follows the player without losing him, so this is the
# pipeline's own cost around a network that takes next to no time
step "end to end, the TINY trained-like network"
timeout 120 "$PYTHON" run_demo.py --input "$WORK/one_person.mp4" --model tests/data/ConvNeXtPose_TINY_trained_like.tar \
    --device cuda --benchmark --no-progress
