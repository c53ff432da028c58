"""Weight initialisation schemes (``model.init``) for Linear and Conv layers."""

from __future__ import annotations

from torch import nn

from trainlab.errors import unknown

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_weights(model: nn.Module, scheme: str, negative_slope: float = 0.0) -> None:
    """Initialise every Linear/Conv weight of ``model`` with ``scheme`` and zero its bias.

    ``default`` keeps PyTorch's initialisation. Kaiming schemes use the leaky-ReLU gain
    sqrt(2 / (1 + negative_slope**2)) (the ReLU gain at 0; a PReLU's starting slope, as He et
    al. derived it for PReLU). Norm layers and PReLU slopes are left as they are.
    """
    if scheme == "default":
        return
    kaiming = {"a": negative_slope, "nonlinearity": "leaky_relu"}
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
