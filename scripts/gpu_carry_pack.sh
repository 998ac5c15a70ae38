#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on an offline GPU host into .gpu_carry/ (git-ignored):
# the CUDA spconv wheel and the wheels it and this package need that the host lacks, plus
# generated training/validation rooms (the host has no open3d, which the generator ray casts
# with), as one tar cut into parts small enough to travel next to the working tree.
#
#   bash scripts/gpu_carry_pack.sh [--part-mb N] [--train-scenes N] [--val-scenes N]
#
# Needs network (PyPI) and this package installed (gen-data). Writes .gpu_carry/manifest.txt
# and .gpu_carry/part_00, part_01, ...: carry the manifest and one part per device call (the
# tree plus its carried paths may be at most 64 MiB a call; ignored files stay on a warm machine
# between calls), then run scripts/gpu_check.sh; README: "GPU check".
set -euo pipefail
cd "$(dirname "$0")/.."

part_mb=""
train_scenes=24
val_scenes=4
while (($#)); do
  case "$1" in
    --part-mb) part_mb="$2"; shift 2 ;;
    --train-scenes) train_scenes="$2"; shift 2 ;;
    --val-scenes) val_scenes="$2"; shift 2 ;;
    *) echo "gpu_carry_pack: unknown argument $1" >&2; exit 2 ;;
  esac
done

# The GPU host: Python 3.12, torch 2.11 (CUDA 13.0), driver 580 (runs CUDA 12.x binaries).
# spconv 2.3.8 is the newest spconv; its cu126 build needs cumm-cu126 <0.8. The versions of the
# pure-Python helpers are those the CPU install here resolves.
WHEELS=(spconv-cu126==2.3.8 cumm-cu126==0.7.11 pccm==0.4.16 ccimport==0.4.4 fire==0.7.1
        termcolor==3.3.0 lark==1.3.1 rosbags==0.11.9 lz4==4.4.5 ruamel.yaml==0.19.1)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

carry=.gpu_carry
stage="$carry/stage"
rm -rf "$stage" "$carry"/part_* "$carry/manifest.txt"
mkdir -p "$stage/wheels" "$stage/data"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$stage/wheels" "${WHEELS[@]}"
# Rooms from fixed seeds (train 0.., val 100000..), small (3-5 m) so they travel: the GPU check
# measures training speed and checks that the loss falls, it does not train the shipped model.
python3 -m ros2_inst3d.cli gen-data "$stage/data/train" --split train --scenes "$train_scenes" \
  --small --quiet
python3 -m ros2_inst3d.cli gen-data "$stage/data/val" --split val --scenes "$val_scenes" \
  --small --quiet

if [ -z "$part_mb" ]; then
  # 64 MiB a call, less the tracked tree and 3 MiB for untracked files and the manifest.
  tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  part_mb=$(( (64 * 1048576 - tree_bytes) / 1048576 - 3 ))
fi
if [ "$part_mb" -lt 4 ]; then
  echo "gpu_carry_pack: only ${part_mb} MiB a call is left beside the tree; pass --part-mb" >&2
  exit 1
fi
tar -C "$stage" -cf "$carry/payload.tar" wheels data
split -b "${part_mb}M" -d -a 2 "$carry/payload.tar" "$carry/part_"
parts=$(ls "$carry"/part_* | wc -l)
{
  echo "parts $parts"
  echo "sha256 $(sha256sum "$carry/payload.tar" | cut -d' ' -f1)"
  echo "wheels ${WHEELS[*]}"
  echo "data train=$train_scenes val=$val_scenes small"
} > "$carry/manifest.txt"
rm -rf "$stage" "$carry/payload.tar"
echo "gpu_carry_pack: $parts parts of at most ${part_mb} MiB in $carry/ (manifest.txt):"
ls -l "$carry"
