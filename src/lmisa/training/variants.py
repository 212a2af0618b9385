"""Which Trainer class trains which variant.

LMISA and its ablations/bounds share ``Trainer`` (the config switches terms off); a peer method
registers its own subclass here, overriding hooks (``build_models``, ``train_step``...), never the loop.
"""

from __future__ import annotations

import importlib

from lmisa.training.trainer import Trainer

# variant -> "module:Class" of a Trainer subclass, imported on first use
PEER_TRAINERS: dict[str, str] = {
    "cyclegan_seg": "lmisa.peers.cyclegan:CycleGANSegTrainer",
    "adaoutput": "lmisa.peers.adaoutput:AdaOutputTrainer",
    "sifa": "lmisa.peers.sifa:SIFATrainer",
}


def trainer_class(variant: str) -> type[Trainer]:
    """The Trainer (sub)class for ``variant``."""
    target = PEER_TRAINERS.get(variant)
    if target is None:
        return Trainer
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def build_inference_net(cfg, in_channels: int, num_classes: int):
    """The segmentation network a run of ``cfg.variant`` saves as ``net`` in its checkpoints.

    Peers whose segmenter is not the LMISA HybridNet provide ``build_inference_net(cfg, in_channels,
    num_classes)`` in their module; everyone else gets the LMISA generator.
    """
    target = PEER_TRAINERS.get(cfg.variant)
    if target is not None:
        module = importlib.import_module(target.split(":")[0])
        if hasattr(module, "build_inference_net"):
            return module.build_inference_net(cfg, in_channels, num_classes)
    from lmisa.nets import build_generator

    m = cfg.model
    return build_generator(dims=cfg.train.dims, in_channels=in_channels, num_classes=num_classes,
                           widths=tuple(m.widths), recon_from=m.recon_from, norm=m.norm)
