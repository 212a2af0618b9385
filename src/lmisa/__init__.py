"""lmisa: cross-modality medical image segmentation by unsupervised domain adaptation.

The public API in a few names; see the submodules for the details.
"""

__version__ = "0.1.0"
