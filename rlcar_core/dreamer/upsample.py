"""The decoder's stride-2 transposed convolution, computed as four small convolutions.

`hk.Conv2DTranspose(kernel 4, stride 2, SAME)` lowers to a convolution over an input dilated with
zeros, which XLA's CPU backend runs several times slower than plain convolutions (and three quarters
of its multiplications are by those zeros). Each output pixel of parity (p, q) only meets the kernel
taps of that parity, so the same result is four stride-1 2x2 convolutions, interleaved (or, for
the thin last layer, one 3x3 convolution holding all four). On 2 CPU cores this made the tiny pixel
decoder about twice as fast (forward and backward, 128 frames). The module
keeps `hk.Conv2DTranspose`'s parameter names, shapes and initialisers, so parameters and checkpoints
are interchangeable with it (`tests/test_dreamer_networks.py` checks both outputs and parameters).
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

KERNEL = 4
# Below this many output channels, four convolutions are each too thin to run well; one 3x3
# convolution that writes all four parities' channels at once is faster, despite its zero taps.
FEW_CHANNELS = 8
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _convolve(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMENSIONS)


def _as_four_convolutions(padded: jax.Array, kernel: jax.Array) -> jax.Array:
    """Parity (p, q) of the output is a 2x2 convolution with the taps kernel[p::2, q::2]; returns
    (B, H, 2, W, 2, C), the parities interleaved by a reshape."""
    height, width = padded.shape[1] - 2, padded.shape[2] - 2
    rows = []
    for p in range(2):
        phases = [_convolve(padded, kernel[p::2, q::2])[:, p : p + height, q : q + width] for q in range(2)]
        rows.append(jnp.stack(phases, axis=3))
    return jnp.stack(rows, axis=2)


def _as_one_convolution(padded: jax.Array, kernel: jax.Array) -> jax.Array:
    """The four parities' 2x2 kernels placed in one 3x3 kernel with 4 x C outputs."""
    _, _, input_channels, output_channels = kernel.shape
    combined = jnp.zeros((3, 3, input_channels, 2, 2, output_channels), kernel.dtype)
    for p in range(2):
        for q in range(2):
            combined = combined.at[p : p + 2, q : q + 2, :, p, q, :].set(kernel[p::2, q::2])
    out = _convolve(padded, combined.reshape(3, 3, input_channels, 4 * output_channels))
    batch, height, width, _ = out.shape
    return out.reshape(batch, height, width, 2, 2, output_channels).transpose(0, 1, 3, 2, 4, 5)


class Upsample2x(hk.Module):
    """A 4x4, stride-2, SAME transposed convolution on NHWC inputs (one batch axis)."""

    def __init__(self, output_channels: int, with_bias: bool, name: str | None = None):
        super().__init__(name=name)
        self._output_channels = output_channels
        self._with_bias = with_bias

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, input_channels = x.shape
        # As hk.Conv2DTranspose: w is (kernel, kernel, out, in), fan-in over the kernel and inputs.
        stddev = 1.0 / np.sqrt(KERNEL * KERNEL * input_channels)
        w = hk.get_parameter(
            "w",
            (KERNEL, KERNEL, self._output_channels, input_channels),
            x.dtype,
            init=hk.initializers.TruncatedNormal(stddev=stddev),
        )
        kernel = jnp.transpose(w, (0, 1, 3, 2))  # to HWIO
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        if self._output_channels < FEW_CHANNELS:
            out = _as_one_convolution(padded, kernel)
        else:
            out = _as_four_convolutions(padded, kernel)
        out = out.reshape(batch, 2 * height, 2 * width, self._output_channels)
        if self._with_bias:
            out = out + hk.get_parameter("b", (self._output_channels,), x.dtype, init=jnp.zeros)
        return out
