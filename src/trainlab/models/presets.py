"""Named networks from the reference reports, as plain ``model`` config fields.

``model: {kind: vgg_cifar}`` expands to these fields; fields given next to the name win.
This module imports nothing from trainlab so that the config can read it.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # Report 004: conv64-pool-conv128-pool-conv256-conv256-pool-fc1024-fc1024-fc10, then batch
    # norm on the 10 outputs; ReLU, dropout 0.5 after every conv(+pool) and dense layer, Xavier
    # init. 6,216,114 parameters, 20 of them non-trainable (the output batch norm's statistics).
    "vgg_cifar": {
        "kind": "cnn",
        "activation": "relu",
        "dropout": 0.5,
        "init": "xavier_uniform",
        "blocks": [
            {"channels": 64, "kernel": 3, "pool": "max"},
            {"channels": 128, "kernel": 3, "pool": "max"},
            {"channels": 256, "kernel": 3},
            {"channels": 256, "kernel": 3, "pool": "max"},
        ],
        "fc": [1024, 1024],
        "output_batch_norm": True,
    },
}
