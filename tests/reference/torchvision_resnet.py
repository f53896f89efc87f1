"""Test-only reference for torchvision's ResNet: its state_dict layout and its eval-mode forward, as plain functions.

Origin: pytorch/vision, torchvision/models/resnet.py (BSD-3-Clause, Copyright (c) Soumith Chintala 2016, all
rights reserved), read at commit f50e776b051ddf007b90d7bc8f70b0708c12d008; the parameter counts are torchvision's
published weight metadata (pytorch.org/vision, ResNet{18,34,50}_Weights "num_params").

This is deliberately NOT a copy of that module (copied third-party code stays out of this repository) and not
written like training_scripts/resnet.py: it states the same facts a second, independent way (key names spelled
out from torchvision's naming scheme, forward written with torch.nn.functional over a bare state_dict), so a test
comparing the two can fail when either drifts from torchvision. Facts encoded:
  - stem: conv1 7x7/2 pad 3 no bias, bn1, ReLU, maxpool 3x3/2 pad 1; head: global average pool, fc (with bias);
  - stages layer1..layer4 with 64/128/256/512 planes, stride 1/2/2/2 on the stage's first block;
  - BasicBlock: conv1 3x3 (stride), bn1, conv2 3x3, bn2; Bottleneck: conv1 1x1, bn1, conv2 3x3 (stride: v1.5),
    bn2, conv3 1x1 (x4 expansion), bn3; all convs without bias;
  - shortcut "downsample" = Sequential(conv 1x1 with the stride, BatchNorm) when stride != 1 or channels change;
  - BatchNorm eps 1e-5; state_dict order = module registration order, parameters before buffers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor

# arch -> (block kind, blocks per stage)
ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

# torchvision's published "num_params" for the ImageNet weights (1000 classes).
PUBLISHED_NUM_PARAMS: dict[str, int] = {"resnet18": 11689512, "resnet34": 21797672, "resnet50": 25557032}

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn_shapes(prefix: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{s}", () if s == "num_batches_tracked" else (channels,)) for s in _BN_SUFFIXES]


def _block_convs(kind: str, inplanes: int, planes: int) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, weight shape, carries the block's stride) for one block's convolutions, in order."""
    if kind == "basic":
        return [("conv1", (planes, inplanes, 3, 3), True), ("conv2", (planes, planes, 3, 3), False)]
    return [
        ("conv1", (planes, inplanes, 1, 1), False),
        ("conv2", (planes, planes, 3, 3), True),
        ("conv3", (planes * 4, planes, 1, 1), False),
    ]


def _blocks(arch: str) -> list[tuple[str, int, int, int]]:
    """(prefix, inplanes, planes, stride) of every residual block, in order."""
    kind, depths = ARCHS[arch]
    expansion = 1 if kind == "basic" else 4
    out: list[tuple[str, int, int, int]] = []
    inplanes = 64
    for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
        for index in range(depth):
            stride = 2 if (stage > 1 and index == 0) else 1
            out.append((f"layer{stage}.{index}", inplanes, planes, stride))
            inplanes = planes * expansion
    return out


def state_dict_shapes(arch: str, num_classes: int = 1000) -> list[tuple[str, tuple[int, ...]]]:
    """torchvision's state_dict keys for `arch`, in order, with each tensor's shape."""
    kind, _ = ARCHS[arch]
    expansion = 1 if kind == "basic" else 4
    shapes: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7)), *_bn_shapes("bn1", 64)]
    for prefix, inplanes, planes, stride in _blocks(arch):
        for name, shape, _ in _block_convs(kind, inplanes, planes):
            shapes.append((f"{prefix}.{name}.weight", shape))
            shapes.extend(_bn_shapes(f"{prefix}.bn{name[-1]}", shape[0]))
        if stride != 1 or inplanes != planes * expansion:
            shapes.append((f"{prefix}.downsample.0.weight", (planes * expansion, inplanes, 1, 1)))
            shapes.extend(_bn_shapes(f"{prefix}.downsample.1", planes * expansion))
    shapes += [("fc.weight", (num_classes, 512 * expansion)), ("fc.bias", (num_classes,))]
    return shapes


def random_state_dict(arch: str, num_classes: int = 1000, seed: int = 0) -> OrderedDict[str, Tensor]:
    """A torchvision-layout state_dict with random values (scaled so activations stay finite and non-trivial)."""
    gen = torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, Tensor] = OrderedDict()
    for key, shape in state_dict_shapes(arch, num_classes):
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(int(torch.randint(0, 1000, (), generator=gen)))
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith(".weight") and len(shape) == 1:  # a BatchNorm scale
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            sd[key] = 0.1 * torch.randn(shape, generator=gen)
    return sd


def _bn(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def forward(arch: str, sd: dict[str, Tensor], x: Tensor) -> Tensor:
    """torchvision ResNet's eval-mode forward, computed from a bare state_dict."""
    kind, _ = ARCHS[arch]
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    for prefix, _inplanes, _planes, stride in _blocks(arch):
        out = x
        convs = _block_convs(kind, 1, 1)
        for position, (name, _, strided) in enumerate(convs):
            weight = sd[f"{prefix}.{name}.weight"]
            out = F.conv2d(out, weight, stride=stride if strided else 1, padding=weight.shape[-1] // 2)
            out = _bn(out, sd, f"{prefix}.bn{name[-1]}")
            if position < len(convs) - 1:
                out = F.relu(out)
        shortcut = x
        if f"{prefix}.downsample.0.weight" in sd:
            shortcut = _bn(
                F.conv2d(x, sd[f"{prefix}.downsample.0.weight"], stride=stride), sd, f"{prefix}.downsample.1"
            )
        x = F.relu(out + shortcut)
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])
