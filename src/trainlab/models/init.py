"""Weight initialisation schemes (``model.init``) for Linear and Conv layers."""

from __future__ import annotations

from torch import nn

from trainlab.errors import unknown

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
LEAKY_SLOPE = 0.01


def init_weights(model: nn.Module, scheme: str, activation: str = "relu") -> None:
    """Initialise every Linear/Conv weight of ``model`` with ``scheme`` and zero its bias.

    ``default`` keeps PyTorch's initialisation. Kaiming schemes use the ReLU gain, or the
    leaky-ReLU gain with slope 0.01 when ``activation`` is ``leaky_relu``. Norm layers are
    left at weight 1, bias 0.
    """
    if scheme == "default":
        return
    leaky = activation == "leaky_relu"
    kaiming = {"a": LEAKY_SLOPE if leaky else 0.0, "nonlinearity": "leaky_relu" if leaky else "relu"}
    schemes = {
        "xavier_uniform": nn.init.xavier_uniform_,
        "xavier_normal": nn.init.xavier_normal_,
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, **kaiming),
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, **kaiming),
        "orthogonal": nn.init.orthogonal_,
    }
    if scheme not in schemes:
        raise unknown("init", scheme, ["default", *schemes])
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            schemes[scheme](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
