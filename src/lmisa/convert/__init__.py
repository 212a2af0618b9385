"""Converters from downloaded data sets to lmisa's nnU-Net-v2 raw layout.

``DST/dataset.json``, ``DST/imagesTr/<case>_0000.nii.gz``, ``DST/labelsTr/<case>.nii.gz``; geometry is
kept, writes are atomic, nothing is overwritten unless asked, a malformed case writes nothing and
does not stop the others (see :mod:`lmisa.convert.common`).

* :func:`convert_kits19` (cases ``case_00000``), :mod:`lmisa.convert.kits19`
* :func:`convert_mmwhs` (cases ``ct_1001`` / ``mr_1001``), :mod:`lmisa.convert.mmwhs`
* :func:`convert_chaos` (cases ``chaos_<patient>``), :mod:`lmisa.convert.chaos`

Each returns a :class:`ConversionReport` (``converted``, ``skipped``, ``failed``, ``stale``,
``dataset_json``, ``labels``).
"""

from lmisa.convert.chaos import convert_chaos
from lmisa.convert.common import CaseError, ConversionReport
from lmisa.convert.kits19 import convert_kits19
from lmisa.convert.mmwhs import convert_mmwhs

__all__ = ["CaseError", "ConversionReport", "convert_chaos", "convert_kits19", "convert_mmwhs"]
