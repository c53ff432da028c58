"""Networks from outside trainlab: the user's own code (``kind: python``) and torchvision's zoo (``kind: torchvision``).

Both are checked once when built: the result must be an ``nn.Module`` whose output for a batch
of ``input_shape`` images is ``[batch, num_classes]`` logits; anything else is a UserError that
names the target and the shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from trainlab.config import ModelConfig
from trainlab.errors import UserError, unknown
from trainlab.usercode import call_user, load_target

EXTERNAL_KINDS = ("python", "torchvision")


def check_external_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Build a python or torchvision network once (other kinds are trainlab's own: nothing to do), so
    that a mistake in it is a UserError before any run is written."""
    if cfg.kind in EXTERNAL_KINDS:
        from trainlab.models.registry import create_model

        with torch.random.fork_rng():  # leaves the caller's random stream as it was
            create_model(cfg, input_shape, num_classes)


def build_python(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``target(input_shape=..., num_classes=..., **args)``: the user's callable (a function or an nn.Module class)."""
    build = load_target(cfg.target)
    model = call_user(cfg.target, build, input_shape=input_shape, num_classes=num_classes, **cfg.args)
    return checked(model, f"target {cfg.target!r}", input_shape, num_classes)


def build_torchvision(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """torchvision's ``name`` with random weights and ``num_classes`` outputs; its first conv takes the
    data's channels."""
    from torchvision import models  # imported on use: takes seconds

    names = models.list_models(module=models)
    if cfg.name not in names:
        raise unknown("torchvision model", cfg.name, names)
    what = f"torchvision model {cfg.name!r}"
    model = call_user(what, models.get_model, name=cfg.name, weights=None, num_classes=num_classes, **cfg.args)
    _adapt_input_channels(model, input_shape[0])
    return checked(model, what, input_shape, num_classes)


def _adapt_input_channels(model: nn.Module, channels: int) -> None:
    """Replace the first convolution by one with ``channels`` inputs (same shape otherwise), if it differs."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != channels:
                    setattr(parent, child_name, nn.Conv2d(
                        channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                        child.dilation, child.groups, child.bias is not None, child.padding_mode))
                return


def checked(model: object, what: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``model`` if it is an nn.Module giving ``[batch, num_classes]`` for a batch of zeros; else a UserError."""
    if not isinstance(model, nn.Module):
        raise UserError(f"{what} returned a {type(model).__name__}, not a torch.nn.Module")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = _forward(model, what, input_shape)
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{what}: the output for a batch of 2 images of shape {tuple(input_shape)} must be "
                        f"[batch, num_classes] = (2, {num_classes}) logits, got {got}")
    return model


def _forward(model: nn.Module, what: str, input_shape: tuple[int, int, int]) -> object:
    try:
        return model(torch.zeros(2, *input_shape))
    except Exception as error:  # the user's forward failed on the data's shape
        raise UserError(f"{what} failed on a batch of shape {(2, *input_shape)}: "
                        f"{type(error).__name__}: {error}") from None
