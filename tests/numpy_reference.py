"""Independent numpy implementations of SPEC.md's formulas, for the tests.

Written from the specification, not from the package: float64, explicit loops where
that is clearer than speed.
"""

from __future__ import annotations

import math

import numpy as np

SQRT3 = math.sqrt(3.0)


def schedule_q(epoch: int, epochs: int, t_min: float = -2.0, t_max: float = 1.0) -> float:
    return 10.0 ** (t_min + (t_max - t_min) * epoch / epochs)


def schedule_r(q: float) -> float:
    return max(1.0 / q, 1.0)


def sign(x):
    """sign with sign(0) = +1."""
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


def iee_surrogate(x, q: float, r: float):
    """F(x) = r (sqrt3 q x - sign(x) 3/4 q^2 x^2) inside |x| < 2 sqrt3 / (3q), r sign(x) out."""
    x = np.asarray(x, np.float64)
    edge = 2.0 * SQRT3 / (3.0 * q)
    inside = r * (SQRT3 * q * x - np.sign(x) * 0.75 * q * q * x * x)
    return np.where(np.abs(x) < edge, inside, r * np.sign(x))


def iee_derivative(x, q: float, r: float):
    return r * np.maximum(0.0, SQRT3 * q - 1.5 * q * q * np.abs(np.asarray(x, np.float64)))


def standardize_per_output_channel(w):
    """Balance + standardize over all axes but the last, unbiased variance."""
    w = np.asarray(w, np.float64)
    axes = tuple(range(w.ndim - 1))
    mean = w.mean(axis=axes, keepdims=True)
    var = w.var(axis=axes, keepdims=True, ddof=1)
    return (w - mean) / np.sqrt(var + 1e-5)


def scale_per_sample(x):
    """x / sqrt(var(x) + 1e-5), variance per sample over all other axes, unbiased."""
    x = np.asarray(x, np.float64)
    axes = tuple(range(1, x.ndim))
    var = x.var(axis=axes, keepdims=True, ddof=1)
    return x / np.sqrt(var + 1e-5)


def finite_difference_vjp(fn, x, cotangent, eps: float = 1e-6):
    """d/dx of sum(cotangent * fn(x)) by central differences (fn smooth, float64)."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    flat = grad.reshape(-1)
    for i in range(x.size):
        step = np.zeros(x.size)
        step[i] = eps
        step = step.reshape(x.shape)
        flat[i] = np.sum(cotangent * (fn(x + step) - fn(x - step))) / (2 * eps)
    return grad


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, w, stride: int = 1, padding: str = "valid", pad_value: float = 0.0):
    """NHWC x (N, H, W, C_in), w (kh, kw, C_in, C_out), cross-correlation as in TF."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    kh, kw = w.shape[:2]
    if padding == "same":
        (top, bottom), (left, right) = (
            same_padding(x.shape[1], kh, stride),
            same_padding(x.shape[2], kw, stride),
        )
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            out += patch @ w[i, j]
    return out


def iebc(
    x, kernel, alpha, thresholds, lambdas, stride=1, padding="same", pad_value=1.0, standardize=True
):
    """Y = sum_k lambda_k * conv(sign(x + beta_k), sign(W_hat)) * alpha, lambda_1 = 1."""
    latent = standardize_per_output_channel(kernel) if standardize else kernel
    binary_kernel = sign(latent)
    k = 1 if thresholds is None else len(thresholds)
    factors = [np.ones_like(alpha)] + [lambdas[i] * np.ones_like(alpha) for i in range(k - 1)]
    out = 0.0
    for branch in range(k):
        shifted = x if thresholds is None else x + thresholds[branch]
        out = out + factors[branch] * conv2d(
            sign(shifted), binary_kernel, stride, padding, pad_value
        )
    return out * alpha
