"""Frozen base linears whose backward is a forward-shaped matmul (bf16 training on CPU).

A LoRA step needs, through every frozen base linear, only the gradient of its input: `grad_x = grad_y @ W`.
Autograd computes it as `mm(grad_y, W)` with `W` untransposed; oneDNN runs that shape in bf16 several
times slower than the forward `linear(x, W) = x @ W.T` (AMX kernels are tuned for the weight-as-`W.T`
layout). Keeping a transposed copy `W.T` of each frozen weight, made once (and again only if the weight
changes), turns the backward into `linear(grad_y, W.T)`, the fast shape. The numbers are the same product;
only the memory layout differs (costs one more copy of the frozen linears, 0.2 GB for SmolLM2 in bf16).
Weight gradients are never computed (the base is frozen), and nothing is added to the state dict.

Only the decoder's linears get it, not the output head: with the head's shape the backward would be a bf16
`linear` with a 49,152-long reduction, which kills the process (SIGFPE inside oneDNN) in torch 2.13 on
this CPU for some row counts (32 rows, for one), while the plain `mm` works.
"""

from __future__ import annotations

import types


def _function():
    import torch
    import torch.nn.functional as F

    class FrozenLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, weight_t):
            ctx.save_for_backward(weight_t)
            return F.linear(x, weight)

        @staticmethod
        def backward(ctx, grad):
            (weight_t,) = ctx.saved_tensors
            return F.linear(grad, weight_t), None, None

    return FrozenLinear


def _transposed(module):
    """The module's `W.T` (contiguous), rebuilt when the weight tensor has changed in place. Made outside
    inference mode even when the first call is an evaluation, so training can save it for backward."""
    import torch

    w = module.weight
    cached = module.__dict__.get("_frozen_t")
    if cached is None or cached[0] is not w or cached[1] != w._version:
        with torch.inference_mode(False):
            cached = (w, w._version, w.detach().t().contiguous())
        module.__dict__["_frozen_t"] = cached
    return cached[2]


def _forward(self, x):
    out = self._frozen_fn.apply(x, self.weight, _transposed(self))
    return out if self.bias is None else out + self.bias


def use_transposed_backward(model) -> int:
    """Give every frozen `nn.Linear` of `model` the transposed-weight backward; returns how many."""
    import torch

    fn, n = _function(), 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and not module.weight.requires_grad:
            module._frozen_fn = fn
            module.forward = types.MethodType(_forward, module)
            n += 1
    return n
