"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012) for numpy arrays.

The filter is a first-order low-pass whose cutoff rises with the signal's speed: slow motion is
smoothed hard (kills jitter), fast motion passes with little lag. Every element of the array
(joint x coordinate, joint y coordinate, ...) is filtered independently but in one vectorized
step, so a (J, 3) array costs the same Python overhead as a scalar.

Parameters (all in Hz, except beta):
- min_cutoff: cutoff at rest. Lower = smoother still poses, more lag when starting to move.
- beta: how fast the cutoff rises with speed (units: Hz per signal-unit/second). Because it
  multiplies a speed, its sensible value depends on the signal's units (px vs mm).
- d_cutoff: cutoff of the low-pass on the derivative estimate; 1 Hz is the paper's default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0


# Defaults for human joints filmed at 15-60 fps. A limb moving at ~500 px/s (or ~1000 mm/s)
# should raise the cutoff by ~5 Hz, so beta = 5 / typical speed.
JOINTS_PX = OneEuroParams(min_cutoff=1.5, beta=0.01, d_cutoff=1.0)
JOINTS_MM = OneEuroParams(min_cutoff=1.5, beta=0.005, d_cutoff=1.0)
# The root's camera position: depth from a monocular estimate is the noisiest quantity, and a
# whole body moves slower than a wrist, so smooth it harder.
ROOT_MM = OneEuroParams(min_cutoff=0.5, beta=0.002, d_cutoff=1.0)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential low-pass with the given cutoff (Hz) at step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Stateful filter for a stream of same-shaped arrays with timestamps in seconds."""

    def __init__(self, params: OneEuroParams = OneEuroParams()):
        if params.min_cutoff <= 0 or params.d_cutoff <= 0 or params.beta < 0:
            raise ValueError(f"invalid One Euro parameters: {params}")
        self.params = params
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None      # last filtered value
        self._dx: np.ndarray | None = None     # last filtered derivative
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            # First sample (or the array changed shape): nothing to smooth against.
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:
            # Same or earlier timestamp (duplicate frame, clock hiccup): a derivative would be
            # infinite, so keep the state and return the current estimate.
            return self._x.copy()
        p = self.params
        # Non-finite inputs (a joint that could not be estimated) keep their previous value
        # instead of poisoning the state.
        x = np.where(np.isfinite(x), x, self._x)
        dx = (x - self._x) / dt
        dx_hat = self._dx + _alpha(p.d_cutoff, dt) * (dx - self._dx)
        cutoff = p.min_cutoff + p.beta * np.abs(dx_hat)
        x_hat = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._x, self._dx, self._t = x_hat, dx_hat, float(t)
        return x_hat.copy()
