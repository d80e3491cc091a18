"""BatchNorm feature statistics: the prior DeepInversion inverts and DDIS's DAG guides with.

DeepInversion (Yin et al., CVPR 2020, eq. 4) and DDIS's Domain Alignment Guidance (arXiv:2506.15381)
take the same loss on a batch ``x`` fed to a classifier with BatchNorm layers ``l``:

    R_feature(x) = sum_l a_l (||mu_l(x) - running_mean_l||_2 + ||sigma^2_l(x) - running_var_l||_2)

with ``mu_l``/``sigma^2_l`` the per-channel batch mean and (biased) variance of layer ``l``'s
*input*, and per-layer weights ``a_1 = first_bn_multiplier`` (DeepInversion: 10), ``a_l = 1`` for
the rest (DAG: all 1). :class:`BNStatistics` collects the statistics with forward pre-hooks and
:func:`bn_statistics_loss` is the equation. Both methods run the classifier in eval mode, where
the running statistics are constants. A model without BatchNorm has no such prior: a one-line
:class:`~modelmine.errors.UserError` that says what to do instead (:func:`require_batchnorm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from .errors import UserError

CAKE_INSTEAD = "use `modelmine cake`, which works on any classifier"

# per layer, in forward order: (batch_mean, batch_var, running_mean, running_var), each (channels,)
LayerStats = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def require_batchnorm(
    model: nn.Module, user: str, instead: str = CAKE_INSTEAD
) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model``; none is a one-line error naming ``user`` and what to do ``instead``."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise UserError(
            f"{user} needs a teacher with BatchNorm layers (it matches their running statistics) and "
            f"this one has none; {instead}"
        )
    return layers


def bn_statistics_loss(
    stats: Sequence[LayerStats], first_bn_multiplier: float = 1.0, squared: bool = False
) -> torch.Tensor:
    """``sum_l a_l (||mu_l - mu_hat_l||_2 + ||var_l - var_hat_l||_2)``, ``a_1 = first_bn_multiplier``, else 1
    (``squared``: each norm squared, as DDIS's paper writes it).

    ``stats``: per BatchNorm layer in forward order, ``(batch_mean, batch_var, running_mean,
    running_var)``, each ``(channels,)``. Summed left to right, layer by layer.
    """

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = torch.linalg.vector_norm(a - b)
        return n * n if squared else n

    total = torch.zeros(())
    for i, (mu, var, r_mu, r_var) in enumerate(stats):
        a = first_bn_multiplier if i == 0 else 1.0
        total = total + a * (dist(mu, r_mu) + dist(var, r_var))
    return total


def layer_stats(layer: nn.modules.batchnorm._BatchNorm, h: torch.Tensor) -> LayerStats:
    """``(batch_mean, batch_var, running_mean, running_var)`` of ``layer`` for its input ``h`` ``(B, C, ...)``."""
    dims = [0, *range(2, h.dim())]
    return h.mean(dims), h.var(dims, unbiased=False), layer.running_mean, layer.running_var


class BNStatistics:
    """Statistics of every BatchNorm layer's input while in use as a context manager.

    ``with BNStatistics(model, "DAG") as bn: model(x); loss = bn.loss()``. Hooks are attached on
    entering and removed on leaving, so the model runs hook-free elsewhere.

    ``deferred``: compute the statistics after the forward pass from the stored inputs instead of
    as each layer is entered. The values are the same; the gradient differs in rounding only,
    because autograd sums the gradients reaching a layer's input in the order their nodes were
    created (measured on DAG: images of 100 embedded-model samples, 30 steps, differ by up to 4e-5,
    none at 8 bits). Refactors here keep numbers bit-identical, so DAG keeps the order its results
    were measured with (``deferred=True``; it used forward hooks) and DeepInversion its own.
    """

    def __init__(self, model: nn.Module, user: str, instead: str = CAKE_INSTEAD, *, deferred: bool = False):
        self.layers = require_batchnorm(model, user, instead)
        self.deferred = deferred
        self.stats: list[LayerStats] = []
        self._inputs: list[tuple[nn.modules.batchnorm._BatchNorm, torch.Tensor]] = []
        self._handles: list[Any] = []

    def _hook(self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[torch.Tensor, ...]) -> None:
        if self.deferred:
            self._inputs.append((module, inputs[0]))
        else:
            self.stats.append(layer_stats(module, inputs[0]))

    def __enter__(self) -> BNStatistics:
        self.stats, self._inputs = [], []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def pop(self) -> list[LayerStats]:
        """The statistics of the layer inputs seen since the last call, in forward order."""
        out = self.stats + [layer_stats(m, h) for m, h in self._inputs]
        self.stats, self._inputs = [], []
        return out

    def loss(self, first_bn_multiplier: float = 1.0, squared: bool = False) -> torch.Tensor:
        """:func:`bn_statistics_loss` of the statistics collected since the last call (scalar)."""
        return bn_statistics_loss(self.pop(), first_bn_multiplier, squared)
