"""Warm start for an xyz-only model (``in_channels: 1``) from an rgb one (``in_channels: 3``).

    python3 scripts/xyz_init_from_rgb.py models/softgroup_synthetic.pth \
        work_dirs/softgroup_lidar_init.pth

The input convolution of the rgb model sees ``[r, g, b, x, y, z]`` (rgb / 127.5 - 1); the xyz-only
model sees ``[1, x, y, z]`` (``data.inputs.point_features``). Its weights for the constant channel
are the colour weights summed with the mean colour feature of the generated rooms as weights, so
the new network starts out as the rgb network looking at a uniformly mean-coloured cloud; every
other tensor is copied. ``train.pretrain`` then loads all tensors (none is left random).
"""

from __future__ import annotations

import argparse

import torch

# Mean of rgb / 127.5 - 1 over generated rooms (/work/gen/train, first 9 rooms; the LiDAR scans of
# the same generator: 0.00, -0.07, -0.15).
MEAN_COLOR_FEATURE = (0.005, -0.090, -0.199)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rgb_checkpoint")
    parser.add_argument("out")
    args = parser.parse_args()
    ckpt = torch.load(args.rgb_checkpoint, map_location="cpu", weights_only=True)
    net = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["net"].items()}
    w = net["input_conv.0.weight"]  # (out, k, k, k, in) spconv layout, in = rgb + xyz
    if w.shape[-1] != 6:
        raise SystemExit(f"expected an rgb + xyz input convolution (6 channels), got {tuple(w.shape)}")
    mean = torch.tensor(MEAN_COLOR_FEATURE, dtype=w.dtype)
    constant = (w[..., :3] * mean).sum(dim=-1, keepdim=True)
    net["input_conv.0.weight"] = torch.cat([constant, w[..., 3:]], dim=-1).contiguous()
    torch.save({"net": net}, args.out)
    print(f"wrote {args.out}: input_conv {tuple(w.shape)} -> {tuple(net['input_conv.0.weight'].shape)}")


if __name__ == "__main__":
    main()
