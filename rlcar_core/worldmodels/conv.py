"""The VAE's stride-2 convolutions, written as the stride-1 convolutions and matrix products that
XLA's CPU backend runs fast.

XLA lowers a strided convolution's kernel gradient, and a transposed convolution (forward and
backward), to convolutions over inputs dilated with zeros, which its CPU backend runs several times
slower than plain ones. On 2 CPU cores the paper-sized VAE's update (64 frames) spent ~1.8 s of its
~2.4 s in the decoder's gradient; with the forms below the same update is ~3x faster. Both modules
keep `hk.Conv2D`'s and `hk.Conv2DTranspose`'s parameter names, shapes and initialisers (stride 2,
VALID padding, NHWC inputs with one batch axis), so parameters and checkpoints are interchangeable with them
(`tests/test_worldmodels_vae.py` checks outputs and gradients against haiku's).

- `strided_conv`: a stride-2 convolution with an even kernel k is a stride-1 convolution with a
  k/2 x k/2 kernel over the space-to-depth input (each 2x2 block of pixels becomes one pixel of 4x
  the channels).
- `transposed_conv`: output pixel (2m + p, 2n + q) of a stride-2 transposed convolution meets only
  the kernel taps of its parity (p, q), so the four parities are one stride-1 convolution whose
  kernel holds the four sets of taps side by side in its output channels, interleaved after. A 1x1
  input (the decoder's first layer) is a plain matrix product.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _convolve(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMENSIONS)


def strided_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """`x` (B, H, W, C_in), `w` (k, k, C_in, C_out) with k even: the stride-2, VALID convolution."""
    kernel = w.shape[0]
    if kernel % 2:
        raise ValueError(f"strided_conv needs an even kernel, got {kernel}")
    batch, height, width, channels = x.shape
    out_height, out_width = (height - kernel) // 2 + 1, (width - kernel) // 2 + 1
    # An odd side gets one row or column of zeros; no output pixel reads it.
    x = jnp.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
    half_height, half_width = x.shape[1] // 2, x.shape[2] // 2
    blocks = x.reshape(batch, half_height, 2, half_width, 2, channels).transpose(0, 1, 3, 2, 4, 5)
    blocks = blocks.reshape(batch, half_height, half_width, 4 * channels)
    half = kernel // 2
    block_kernel = w.reshape(half, 2, half, 2, channels, -1).transpose(0, 2, 1, 3, 4, 5)
    out = _convolve(blocks, block_kernel.reshape(half, half, 4 * channels, -1))
    return out[:, :out_height, :out_width]


def _parity_taps(kernel: int, parity: int) -> tuple[int, int, int]:
    """For output pixels 2m + `parity` of a VALID stride-2 transposed convolution: the first kernel tap
    they meet, how many taps (every other one), and the input offset c of that first tap, so that
    out[2m + parity] = sum_j x[m + c + j] w[first + 2j], w as haiku applies it."""
    first = (kernel - 1 - parity) % 2
    count = len(range(first, kernel, 2))
    offset = (parity + first - kernel + 1) // 2
    return first, count, offset


def transposed_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """`x` (B, H, W, C_in), `w` (k, k, C_out, C_in) as `hk.Conv2DTranspose` holds it: the stride-2,
    VALID transposed convolution, (B, 2(H - 1) + k, 2(W - 1) + k, C_out)."""
    kernel = w.shape[0]
    batch, height, width, input_channels = x.shape
    output_channels = w.shape[2]
    if height == 1 and width == 1:  # each output pixel is one matrix product (the kernel flipped)
        return jnp.einsum("bi,hwoi->bhwo", x[:, 0, 0], w[::-1, ::-1])
    phases = [_parity_taps(kernel, parity) for parity in range(2)]
    pad_before = max(-offset for _, _, offset in phases)
    starts = [pad_before + offset for _, _, offset in phases]
    taps = max(start + count for start, (_, count, _) in zip(starts, phases, strict=True))
    hwio = jnp.transpose(w, (0, 1, 3, 2))
    combined = jnp.zeros((taps, taps, input_channels, 2, 2, output_channels), w.dtype)
    for p, (first_row, rows, _) in enumerate(phases):
        for q, (first_col, cols, _) in enumerate(phases):
            combined = combined.at[starts[p] : starts[p] + rows, starts[q] : starts[q] + cols, :, p, q].set(
                hwio[first_row::2, first_col::2]
            )
    out_height, out_width = 2 * (height - 1) + kernel, 2 * (width - 1) + kernel
    half_height, half_width = (out_height + 1) // 2, (out_width + 1) // 2
    padded = jnp.pad(
        x,
        (
            (0, 0),
            (pad_before, max(0, half_height - height - pad_before + taps - 1)),
            (pad_before, max(0, half_width - width - pad_before + taps - 1)),
            (0, 0),
        ),
    )
    out = _convolve(padded, combined.reshape(taps, taps, input_channels, 4 * output_channels))
    out = out[:, :half_height, :half_width].reshape(batch, half_height, half_width, 2, 2, output_channels)
    out = out.transpose(0, 1, 3, 2, 4, 5).reshape(batch, 2 * half_height, 2 * half_width, output_channels)
    return out[:, :out_height, :out_width]


def _fan_in_init(fan_in: int) -> hk.initializers.Initializer:
    """haiku's convolution default: a truncated normal of stddev 1 / sqrt(fan-in)."""
    return hk.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(fan_in))


class _StrideTwoConv(hk.Module):
    """A kernel x kernel, stride-2, VALID layer with haiku's parameters `w` and `b`; subclasses say
    how `w` is laid out and how it is applied."""

    def __init__(self, output_channels: int, kernel: int, name: str | None = None):
        super().__init__(name=name)
        self._output_channels, self._kernel = output_channels, kernel

    def _weight_shape(self, input_channels: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _apply(self, x: jax.Array, w: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        input_channels = x.shape[-1]
        init = _fan_in_init(self._kernel**2 * input_channels)
        w = hk.get_parameter("w", self._weight_shape(input_channels), x.dtype, init=init)
        b = hk.get_parameter("b", (self._output_channels,), x.dtype, init=jnp.zeros)
        return self._apply(x, w) + b


class StridedConv2D(_StrideTwoConv):
    """`hk.Conv2D(output_channels, kernel, stride=2, padding="VALID")` computed by `strided_conv`."""

    def _weight_shape(self, input_channels: int) -> tuple[int, ...]:
        return (self._kernel, self._kernel, input_channels, self._output_channels)

    def _apply(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return strided_conv(x, w)


class TransposedConv2D(_StrideTwoConv):
    """`hk.Conv2DTranspose(output_channels, kernel, stride=2, padding="VALID")` computed by
    `transposed_conv`."""

    def _weight_shape(self, input_channels: int) -> tuple[int, ...]:
        return (self._kernel, self._kernel, self._output_channels, input_channels)

    def _apply(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return transposed_conv(x, w)
