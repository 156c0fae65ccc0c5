"""Small PyTorch reference of the IE-Net authors' release networks, for the tests.

The tests use it (a) to check that our TF models, loaded with the same weights, give the same
forward pass, and (b) to check each building block's training behaviour (forward and gradients)
against an independent implementation.

It is written from the maths described in the research notes on the release (binary conv with
weight balancing, the IEE estimator, K-branch information enhancement, and the five networks),
not from the release's code text. The parameter and buffer names, and their order in
`state_dict()`, are those of the release's checkpoints without the `module.` prefix.

One deliberate deviation: the release binarises with `torch.sign`, so sign(0) = 0. Our TF
library uses larq's convention sign(0) = +1, and so does this file by default (`SIGN_ZERO`).
Only exact zeros are affected; the conv's zero padding of the binarised input is unchanged.

Run `python tests/torch_reference.py` for a self-check (key sets, shapes, forward, backward).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

#: Value of sign(0) in the forward pass: +1 as in larq (the release's torch.sign gives 0).
SIGN_ZERO: float = 1.0

SQRT3 = math.sqrt(3.0)
EPS = 1e-5  # inside the sqrt of the weight and activation standardisation


# --------------------------------------------------------------------------------------------
# Estimator and schedule


class IEESign(torch.autograd.Function):
    """Forward sign(x) (sign(0) = SIGN_ZERO); backward dy * r * relu(sqrt3 q - 1.5 q^2 |x|)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: float, r: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.q, ctx.r = float(q), float(r)
        zero = torch.full_like(x, SIGN_ZERO)
        return torch.where(x > 0, torch.ones_like(x), torch.where(x < 0, -torch.ones_like(x), zero))

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        q, r = ctx.q, ctx.r
        return dy * r * torch.relu(SQRT3 * q - 1.5 * q * q * x.abs()), None, None


def iee_sign(x: torch.Tensor, q: float, r: float) -> torch.Tensor:
    return IEESign.apply(x, q, r)


def weight_r(q: float) -> float:
    """Weight estimator scale r = max(1/q, 1) (the release's k)."""
    return max(1.0 / q, 1.0)


def q_schedule(epoch: int, epochs: int) -> float:
    """q(epoch) = 10^(-2 + 3 epoch / epochs), set once per epoch before training it."""
    return 10.0 ** (-2.0 + 3.0 * epoch / epochs)


# --------------------------------------------------------------------------------------------
# Building blocks


class BinarizeConv2d(nn.Conv2d):
    """Balanced, standardised binary conv with a learnable per-output-channel alpha.

    Weights: w1 = (w - mean_o w) / sqrt(var_o(w - mean_o w) + eps), binarised with
    q_w = q, r_w = max(1/q, 1). Activations: in training a / sqrt(var_n(a) + eps) (per-sample,
    unbiased, no centring), binarised with q_a = max(q, 1), r_a = 1. The binarised input is
    zero-padded by F.conv2d; the bias (if any) is added before the multiplication by alpha.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.q: float = 0.1  # the release's default t before the first schedule update
        init = self.weight.detach().abs().mean(dim=(1, 2, 3)).reshape(-1, 1, 1)
        self.alpha = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w0 = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        w1 = w0 / torch.sqrt(w0.var(dim=(1, 2, 3), keepdim=True, unbiased=True) + EPS)
        a0 = x
        if self.training:
            a0 = x / torch.sqrt(x.var(dim=(1, 2, 3), keepdim=True, unbiased=True) + EPS)
        bw = iee_sign(w1, self.q, weight_r(self.q))
        ba = iee_sign(a0, max(self.q, 1.0), 1.0)
        out = F.conv2d(ba, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return out * self.alpha


class LearnableBias(nn.Module):
    """x + bias, bias (1, C, 1, 1) zero-initialised (the ImageNet shifts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ChannelW(nn.Module):
    """The branch coefficients lambda_2..lambda_K as w1..w{K-1}, each U[0, 1e-3)."""

    def __init__(self, shape: tuple[int, ...], branches: int = 2) -> None:
        super().__init__()
        for j in range(1, branches):
            setattr(self, f"w{j}", nn.Parameter(torch.rand(*shape) * 1e-3))
        self.branches = branches

    def coefficients(self) -> Iterator[torch.Tensor]:
        return (getattr(self, f"w{j}") for j in range(1, self.branches))


def ie_combine(
    x: torch.Tensor, shifts: list[torch.Tensor], conv: nn.Module, scale: ChannelW
) -> torch.Tensor:
    """conv(x + s_1) + sum_j lambda_j * conv(x + s_j): one shared conv, lambda_1 = 1."""
    out = conv(x + shifts[0])
    for shift, lam in zip(shifts[1:], scale.coefficients(), strict=True):
        out = out + lam * conv(x + shift)
    return out


def _lambda_shape(channels: int, per_channel: bool) -> tuple[int, ...]:
    return (1, channels, 1, 1) if per_channel else (1,)


class IEConv(nn.Module):
    """The release's OwnBinaryConv: shift1..shiftK, a shared `conv` and `scale` (CIFAR R18/VGG)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = True,
        branches: int = 2,
        per_channel_lambda: bool = False,
    ) -> None:
        super().__init__()
        self.branches = branches
        for k in range(1, branches + 1):
            setattr(self, f"shift{k}", nn.Parameter(torch.zeros(1, cin, 1, 1)))
        self.conv = BinarizeConv2d(cin, cout, kernel_size, stride, padding, bias=bias)
        self.scale = ChannelW(_lambda_shape(cout, per_channel_lambda), branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifts = [getattr(self, f"shift{k}") for k in range(1, self.branches + 1)]
        return ie_combine(x, shifts, self.conv, self.scale)


def _add_stages(
    net: nn.Module,
    block: type[nn.Module],
    widths: tuple[int, ...],
    blocks: tuple[int, ...],
    inplanes: int,
    branches: int,
) -> None:
    """`net.layer1`, `net.layer2`, ...: `blocks[i]` blocks of width `widths[i]` each, the
    first block of every stage but the first with stride 2."""
    for i, (planes, n) in enumerate(zip(widths, blocks, strict=True), start=1):
        layer = []
        for b in range(n):
            layer.append(block(inplanes, planes, 2 if (i > 1 and b == 0) else 1, branches))
            inplanes = planes
        setattr(net, f"layer{i}", nn.Sequential(*layer))


# --------------------------------------------------------------------------------------------
# CIFAR-10 ResNet-20 (Bi-Real style, one binary conv per block)


class _ChannelPadPool(nn.Module):
    """AvgPool2d(2) then `pad` zero channels on each side (parameter-free shortcut)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, self.pad, self.pad))


class ResNet20Block(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, branches: int = 2) -> None:
        super().__init__()
        self.branches = branches
        for k in range(1, branches + 1):
            setattr(self, f"shift{k}", nn.Parameter(torch.zeros(1, inplanes, 1, 1)))
        self.binary_conv1 = BinarizeConv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.scale = ChannelW((1, planes, 1, 1), branches)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = _ChannelPadPool(0 if planes == inplanes else planes // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifts = [getattr(self, f"shift{k}") for k in range(1, self.branches + 1)]
        out = self.bn1(ie_combine(x, shifts, self.binary_conv1, self.scale))
        residual = x if self.downsample is None else self.downsample(x)
        return F.hardtanh(out + residual)


class ResNet20(nn.Module):
    def __init__(
        self, blocks: tuple[int, ...] = (6, 6, 6), num_classes: int = 10, branches: int = 2
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        _add_stages(self, ResNet20Block, (16, 32, 64), blocks, 16, branches)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.bn = nn.BatchNorm1d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardtanh(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.bn(torch.flatten(self.avgpool(x), 1)))


def resnet20(num_classes: int = 10, branches: int = 2) -> ResNet20:
    return ResNet20((6, 6, 6), num_classes, branches)


# --------------------------------------------------------------------------------------------
# CIFAR-10 ResNet-18 (standard two-conv blocks, binary 1x1 shortcut)


class ResNet18CifarBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, branches: int = 2) -> None:
        super().__init__()
        self.conv1 = IEConv(inplanes, planes, 3, stride, 1, bias=True, branches=branches)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = IEConv(planes, planes, 3, 1, 1, bias=True, branches=branches)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Sequential(
                BinarizeConv2d(inplanes, planes, 1, stride, 0, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.hardtanh(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.hardtanh(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    def __init__(
        self, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10, branches: int = 2
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        _add_stages(self, ResNet18CifarBlock, (64, 128, 256, 512), blocks, 64, branches)
        self.linear = nn.Linear(512, num_classes)  # registered before bn2, as in the release
        self.bn2 = nn.BatchNorm1d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))  # no activation after the stem
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(self.bn2(torch.flatten(F.avg_pool2d(x, 4), 1)))


def resnet18_cifar(num_classes: int = 10, branches: int = 2) -> ResNet18Cifar:
    return ResNet18Cifar((2, 2, 2, 2), num_classes, branches)


# --------------------------------------------------------------------------------------------
# CIFAR-10 VGG-Small


class VGGSmall(nn.Module):
    CHANNELS = ((128, 128), (128, 256), (256, 256), (256, 512), (512, 512))
    POOL_AFTER = (1, 3, 5)  # MaxPool2d(2) between these convs and their BN

    def __init__(self, num_classes: int = 10, branches: int = 2) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 128, 3, 1, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(128)
        for n, (cin, cout) in enumerate(self.CHANNELS, start=1):
            setattr(self, f"conv{n}", IEConv(cin, cout, 3, 1, 1, bias=True, branches=branches))
            setattr(self, f"bn{n}", nn.BatchNorm2d(cout))
        self.pooling = nn.MaxPool2d(2, 2)
        self.nonlinear = nn.Hardtanh()
        self.fc = nn.Linear(512 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.conv0(x))  # no activation after the stem
        for n in range(1, 6):
            x = getattr(self, f"conv{n}")(x)
            if n in self.POOL_AFTER:
                x = self.pooling(x)
            x = self.nonlinear(getattr(self, f"bn{n}")(x))
        return self.fc(torch.flatten(x, 1))  # NCHW flatten order


def vgg_small(num_classes: int = 10, branches: int = 2) -> VGGSmall:
    return VGGSmall(num_classes, branches)


# --------------------------------------------------------------------------------------------
# ImageNet ResNet-18 / ResNet-34 (Bi-Real style: a residual around every binary conv)


class ImageNetBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, branches: int = 2) -> None:
        super().__init__()
        self.branches = branches
        for i, (cin, s) in enumerate(((inplanes, stride), (planes, 1)), start=1):
            for k in range(1, branches + 1):
                setattr(self, f"shift{i}{k}", LearnableBias(cin))
            setattr(self, f"conv{i}", BinarizeConv2d(cin, planes, 3, s, 1, bias=False))
            setattr(self, f"scale{i}", ChannelW((1, planes, 1, 1), branches))
            setattr(self, f"bn{i}", nn.BatchNorm2d(planes))
            setattr(self, f"nonlinear{i}", nn.Hardtanh())
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _half(self, i: int, x: torch.Tensor) -> torch.Tensor:
        shifts = [getattr(self, f"shift{i}{k}").bias for k in range(1, self.branches + 1)]
        out = ie_combine(x, shifts, getattr(self, f"conv{i}"), getattr(self, f"scale{i}"))
        return getattr(self, f"bn{i}")(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.nonlinear1(self._half(1, x) + residual)
        return self.nonlinear2(self._half(2, out) + out)


class ResNetImageNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], num_classes: int = 1000, branches: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.nonlinear1 = nn.Hardtanh()
        self.maxpool = nn.MaxPool2d(3, 2, 1)  # -inf padding (input is in [-1, 1])
        _add_stages(self, ImageNetBlock, (64, 128, 256, 512), blocks, 64, branches)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # = AvgPool2d(7, 1) at 224x224
        self.bn2 = nn.BatchNorm1d(512)
        self.fc = nn.Linear(512, num_classes)
        self.nonlinear2 = nn.Hardtanh()  # unused, as in the release
        self.bn3 = nn.BatchNorm1d(num_classes)  # unused, but in the state_dict
        # alpha was computed above from the default init; the weights are then redrawn.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1e-8)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.nonlinear1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.bn2(torch.flatten(self.avgpool(x), 1)))


def resnet18_imagenet(num_classes: int = 1000, branches: int = 2) -> ResNetImageNet:
    return ResNetImageNet((2, 2, 2, 2), num_classes, branches)


def resnet34_imagenet(num_classes: int = 1000, branches: int = 2) -> ResNetImageNet:
    return ResNetImageNet((3, 4, 6, 3), num_classes, branches)


# --------------------------------------------------------------------------------------------
# Helpers for the tests


def set_q(model: nn.Module, q: float) -> None:
    """Set the estimator parameter q on every BinarizeConv2d (r follows as max(1/q, 1))."""
    for m in model.modules():
        if isinstance(m, BinarizeConv2d):
            m.q = float(q)


@torch.no_grad()
def randomize(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Fill every parameter and BN statistic with random values of a sensible scale.

    Fresh models have zero shifts (so all branches are equal) and tiny lambdas; this makes a
    forward check exercise every tensor. num_batches_tracked is left alone (forward ignores it).
    """
    g = generator

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * std)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g, dtype=t.dtype))

    done: set[int] = set()
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and name == "weight":
                uniform(p, 0.5, 1.5)
            elif isinstance(m, ChannelW):
                uniform(p, 0.1, 1.0)
            elif isinstance(m, LearnableBias) or name.startswith("shift"):
                normal(p, 0.3)
            elif name == "alpha":
                uniform(p, 0.05, 0.2)
            elif name in ("weight", "bias"):
                normal(p, 0.1)
            else:
                raise ValueError(f"randomize: no rule for {type(m).__name__}.{name}")
            done.add(id(p))
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            normal(m.running_mean, 0.1)
            uniform(m.running_var, 0.5, 1.5)
    assert all(id(p) in done for p in model.parameters())
    return model


# --------------------------------------------------------------------------------------------
# Self-check: python tests/torch_reference.py


def _bn_keys(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{prefix}.num_batches_tracked", ())
    ]


def _stages(widths: tuple[int, ...], blocks: tuple[int, ...], cin: int):
    for i, (planes, n) in enumerate(zip(widths, blocks, strict=True), start=1):
        for b in range(n):
            yield f"layer{i}.{b}", cin, planes, (i > 1 and b == 0)
            cin = planes


def _expected_r20() -> list[tuple[str, tuple[int, ...]]]:
    o: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (16, 3, 3, 3)), *_bn_keys("bn1", 16)]
    for p, cin, cout, _ in _stages((16, 32, 64), (6, 6, 6), 16):
        o += [(f"{p}.shift1", (1, cin, 1, 1)), (f"{p}.shift2", (1, cin, 1, 1))]
        o += [(f"{p}.binary_conv1.weight", (cout, cin, 3, 3))]
        o += [(f"{p}.binary_conv1.alpha", (cout, 1, 1)), *_bn_keys(f"{p}.bn1", cout)]
        o += [(f"{p}.scale.w1", (1, cout, 1, 1))]
    return [*o, *_bn_keys("bn", 64), ("fc.weight", (10, 64)), ("fc.bias", (10,))]


def _expected_r18_cifar() -> list[tuple[str, tuple[int, ...]]]:
    o: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 3, 3)), *_bn_keys("bn1", 64)]
    for p, cin, cout, down in _stages((64, 128, 256, 512), (2, 2, 2, 2), 64):
        for j, ci in ((1, cin), (2, cout)):
            c = f"{p}.conv{j}"
            o += [(f"{c}.shift1", (1, ci, 1, 1)), (f"{c}.shift2", (1, ci, 1, 1))]
            o += [(f"{c}.conv.weight", (cout, ci, 3, 3)), (f"{c}.conv.bias", (cout,))]
            o += [(f"{c}.conv.alpha", (cout, 1, 1)), (f"{c}.scale.w1", (1,))]
            o += _bn_keys(f"{p}.bn{j}", cout)
        if down:
            o += [(f"{p}.shortcut.0.weight", (cout, cin, 1, 1))]
            o += [(f"{p}.shortcut.0.alpha", (cout, 1, 1)), *_bn_keys(f"{p}.shortcut.1", cout)]
    return [*o, ("linear.weight", (10, 512)), ("linear.bias", (10,)), *_bn_keys("bn2", 512)]


def _expected_vgg() -> list[tuple[str, tuple[int, ...]]]:
    o: list[tuple[str, tuple[int, ...]]] = [("conv0.weight", (128, 3, 3, 3))]
    o += _bn_keys("bn0", 128)
    for n, (cin, cout) in enumerate(VGGSmall.CHANNELS, start=1):
        c = f"conv{n}"
        o += [(f"{c}.shift1", (1, cin, 1, 1)), (f"{c}.shift2", (1, cin, 1, 1))]
        o += [(f"{c}.conv.weight", (cout, cin, 3, 3)), (f"{c}.conv.bias", (cout,))]
        o += [(f"{c}.conv.alpha", (cout, 1, 1)), (f"{c}.scale.w1", (1,)), *_bn_keys(f"bn{n}", cout)]
    return [*o, ("fc.weight", (10, 8192)), ("fc.bias", (10,))]


def _expected_imagenet(blocks: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    o: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7)), *_bn_keys("bn1", 64)]
    for p, cin, cout, down in _stages((64, 128, 256, 512), blocks, 64):
        for j, ci in ((1, cin), (2, cout)):
            o += [(f"{p}.shift{j}1.bias", (1, ci, 1, 1)), (f"{p}.shift{j}2.bias", (1, ci, 1, 1))]
            o += [(f"{p}.conv{j}.weight", (cout, ci, 3, 3)), (f"{p}.conv{j}.alpha", (cout, 1, 1))]
            o += [(f"{p}.scale{j}.w1", (1, cout, 1, 1)), *_bn_keys(f"{p}.bn{j}", cout)]
        if down:
            o += [(f"{p}.downsample.0.weight", (cout, cin, 1, 1))]
            o += _bn_keys(f"{p}.downsample.1", cout)
    o += [*_bn_keys("bn2", 512), ("fc.weight", (1000, 512)), ("fc.bias", (1000,))]
    return [*o, *_bn_keys("bn3", 1000)]


def _self_check() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    r20 = _expected_r20()
    cases = [
        ("resnet20", resnet20, r20, 32),
        ("resnet18_cifar", resnet18_cifar, _expected_r18_cifar(), 32),
        ("vgg_small", vgg_small, _expected_vgg(), 32),
        ("resnet18_imagenet", resnet18_imagenet, _expected_imagenet((2, 2, 2, 2)), 64),
        ("resnet34_imagenet", resnet34_imagenet, _expected_imagenet((3, 4, 6, 3)), 64),
    ]
    for name, build, expected, size in cases:
        model = build()
        got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        assert got == expected, (name, set(got) ^ set(expected))  # same keys, shapes, order
        n_params = sum(p.numel() for p in model.parameters())
        randomize(model, g)
        set_q(model, 0.3)
        x = torch.randn(4, 3, size, size, generator=g)
        model.train()
        y = model(x)
        y.square().mean().backward()
        unused = ("bn3.",)  # the ImageNet bn3 is never used in forward
        for k, p in model.named_parameters():
            assert k.startswith(unused) or (p.grad is not None and torch.isfinite(p.grad).all()), k
        model.eval()
        with torch.no_grad():
            ye = model(x)
        assert torch.isfinite(y).all() and torch.isfinite(ye).all()
        print(
            f"{name:18s} keys={len(got):4d} (as spec)  params={n_params:,}  out={tuple(ye.shape)}"
        )

    # Estimator: sign(0) = SIGN_ZERO and the IEE derivative.
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = iee_sign(x, 0.5, 2.0)
    assert y.tolist() == [-1.0, -1.0, SIGN_ZERO, 1.0, 1.0]
    y.sum().backward()
    want = 2.0 * torch.relu(SQRT3 * 0.5 - 1.5 * 0.25 * x.detach().abs())
    assert torch.allclose(x.grad, want)
    print("self-check passed")


if __name__ == "__main__":
    _self_check()
