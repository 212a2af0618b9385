"""Peer UDA methods, trained and evaluated exactly like LMISA (same data, run folder, checkpoints, resume).

``lmisa train --variant cyclegan_seg|adaoutput|sifa`` picks one of these Trainer subclasses (registered in
``lmisa.training.variants.PEER_TRAINERS``); each saves the network used at prediction as ``net``:

* :mod:`lmisa.peers.cyclegan` -- ``cyclegan_seg``: image-level adaptation, a CycleGAN translates source
  images to the target appearance, then LMISA's segmentation network (HybridNet) is trained on them.
* :mod:`lmisa.peers.adaoutput` -- ``adaoutput``: output-space adversarial adaptation (AdaptSegNet,
  Tsai et al., CVPR 2018) on the same HybridNet.
* :mod:`lmisa.peers.sifa` -- ``sifa``: synergistic image and feature alignment (Chen et al., IEEE TMI
  2020), its own encoder + classifier as the inference network.
* :mod:`lmisa.peers.blocks` -- their shared translators, discriminators, losses and trainer base.

Modules are imported on first use by ``lmisa.training.variants``; nothing is imported here.
"""
