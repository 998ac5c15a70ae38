#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on an offline GPU host into .gpu_carry/ (git-ignored):
#   site.tar.xz  the CUDA spconv wheel and the wheels it and this package need that the host
#                lacks, unpacked and xz-compressed (spconv's 284 MB library: 70 MB as a wheel,
#                21 MB as xz; the whole site ~45 MB);
#   data.tar     generated training/validation rooms (the host has no open3d, which the
#                generator ray casts with).
#
#   bash scripts/gpu_carry_pack.sh [--train-scenes N] [--val-scenes N]
#
# Needs network (PyPI) and this package installed (gen-data). A device call carries at most
# 64 MiB with the tree, so the check runs in two calls (README: GPU check): `--phase setup`
# carrying site.tar.xz, then `--phase run` carrying data.tar and the weights.
set -euo pipefail
cd "$(dirname "$0")/.."

train_scenes=24
val_scenes=4
while (($#)); do
  case "$1" in
    --train-scenes) train_scenes="$2"; shift 2 ;;
    --val-scenes) val_scenes="$2"; shift 2 ;;
    *) echo "gpu_carry_pack: unknown argument $1" >&2; exit 2 ;;
  esac
done

# The GPU host: Python 3.12, torch 2.11 (CUDA 13.0), driver 580 (runs CUDA 12.x binaries).
# spconv 2.3.8 is the newest spconv; its cu126 build needs cumm-cu126 <0.8. The versions of the
# pure-Python helpers are those the CPU install here resolves.
WHEELS=(spconv-cu126==2.3.8 cumm-cu126==0.7.11 pccm==0.4.16 ccimport==0.4.4 fire==0.7.1
        termcolor==3.3.0 lark==1.3.1 rosbags==0.11.9 lz4==4.4.5 ruamel.yaml==0.19.1
        apsw==3.54.1.0 backports.zstd==1.8.0)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

carry=.gpu_carry
stage="$carry/stage"
rm -rf "$stage" "$carry/site.tar.xz" "$carry/data.tar"
mkdir -p "$stage/wheels" "$stage/site" "$stage/data"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$stage/wheels" "${WHEELS[@]}"
# A wheel is a zip of its install tree: unpacking it is installing it (no scripts are needed).
for wheel in "$stage"/wheels/*.whl; do
  python3 -m zipfile -e "$wheel" "$stage/site"
done
tar -C "$stage/site" -cf - . | xz -9e -T0 > "$carry/site.tar.xz"
# Rooms from fixed seeds (train 0.., val 100000..), small (3-5 m) so they travel: the GPU check
# measures training speed and checks that the loss falls, it does not train the shipped model.
python3 -m ros2_inst3d.cli gen-data "$stage/data/train" --split train --scenes "$train_scenes" \
  --small --quiet
python3 -m ros2_inst3d.cli gen-data "$stage/data/val" --split val --scenes "$val_scenes" \
  --small --quiet
tar -C "$stage" -cf "$carry/data.tar" data
{
  echo "wheels ${WHEELS[*]}"
  echo "data train=$train_scenes val=$val_scenes small"
} > "$carry/manifest.txt"
rm -rf "$stage"
echo "gpu_carry_pack: in $carry/:"
ls -l "$carry"
