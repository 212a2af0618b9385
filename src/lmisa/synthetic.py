"""Synthetic cross-modality abdominal phantoms: lmisa's built-in demo data.

Each case is one random abdomen-like anatomy (body outline, subcutaneous fat, abdominal wall muscle,
spine with discs and paraspinal/psoas muscles, aorta and IVC, bowel, stomach, gallbladder and four
labelled organs) rendered in several *appearances* that share the anatomy but not the intensities:

- ``"CT"``: fixed HU-like tissue values with small per-case variation, low Gaussian noise, sharp
  edges, fine slices (2.5 mm). Contrast-enhanced look: liver vessels, aorta and kidneys are bright;
  kidney cortex and medulla look almost the same.
- ``"MR"`` (T2-like): inverted contrasts (fat bright, bone dark, fluid and kidney medulla bright,
  vessels dark flow voids, liver vessels invisible), spleen and kidney cortex of about the same
  intensity (a low-contrast neighbour boundary), bowel with strong texture, a smooth multiplicative
  bias field, in-plane partial-volume blur, thick slices (6.25 mm, averaged over the slab from the
  same anatomy) and Rician noise.
- ``"T1"``: a third contrast set (fat and marrow bright, fluid dark, liver brighter than spleen,
  dark liver vessels, cortex brighter than medulla), 5 mm slices, its own bias field and Rician
  noise; meant as an unseen domain.

Unlike the real CHAOS T2-SPIR data (fat suppressed), the MR appearance keeps fat bright (T2 without
fat suppression), and the CT is not windowed (HU-like, air at -1000). Kidneys sit in a perirenal fat
capsule that other organs do not take. The domain gap this gives, measured by
``benchmarks/bench_phantoms.py`` (defaults, 2D U-Net trained on 8 CT anatomies, mean 3D Dice of the
4 organs on 4 held-out anatomies, 2 seeds): raw intensities CT 0.85 -> MR 0.01 (T1 0.03); MLNGM
input CT 0.71 -> MR 0.47 (T1 0.53); supervised on MR 0.72. MLNGM removes much of the gap, not all.

Geometry follows the real abdominal data (``../shared/data/abdomen``, checked there): arrays are
``(Z, Y, X)``; X grows toward the patient's left (liver at small X = image left, spleen at large X),
Y grows toward anterior (spine at small Y), Z grows toward superior. The affine is
``diag(-sx, sy, sz)`` with the field of view centred on the world origin; every appearance covers
the same physical field of view, only the slice thickness (and so the number of slices) differs.
Labels are those of the real data: background 0, liver 1, right kidney 2, left kidney 3, spleen 4.

Everything is deterministic by seed: the same seed and config give arrays with identical bytes.

Example:
    >>> from lmisa.synthetic import PhantomConfig, generate_case
    >>> case = generate_case(0, PhantomConfig(shape_yx=(48, 48), spacing_yx_mm=7.0))
    >>> sorted(case)
    ['CT', 'MR', 'T1']
    >>> image, label = case["MR"]
    >>> image.array.shape, image.spacing, sorted(set(label.array.ravel().tolist()))
    ((16, 48, 48), (6.25, 7.0, 7.0), [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, write_image, write_text_atomic

LABELS: dict[str, int] = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
APPEARANCES: tuple[str, ...] = ("CT", "MR", "T1")
CASE_PREFIX = "phantom"

# Tissue classes of the anatomy (index into every appearance's value table).
TISSUES: tuple[str, ...] = (
    "air",
    "subcutaneous_fat",
    "muscle",
    "visceral_fat",
    "cortical_bone",
    "marrow",
    "disc",
    "csf",
    "blood",
    "liver",
    "liver_vessel",
    "kidney_cortex",
    "kidney_medulla",
    "renal_sinus",
    "spleen",
    "stomach_wall",
    "stomach_content",
    "bowel",
    "gallbladder",
)
T = {name: i for i, name in enumerate(TISSUES)}
_RESERVED_FAT = 255  # visceral fat that later structures may not take (painted back to fat at the end)


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class AppearanceSpec:
    """How one appearance renders the shared anatomy.

    ``values`` maps every tissue name to its mean intensity. Per case each value is drawn as
    ``mean * (1 + jitter_rel * N) + jitter_abs * N``. ``texture`` maps tissue names to the amplitude
    of a fine smooth texture (intensity units) inside that tissue. ``bias`` is the log-amplitude of
    a smooth multiplicative bias field (0: none); ``blur_mm`` the in-plane Gaussian sigma of the
    point-spread function (partial volume); ``noise`` the standard deviation of the Gaussian noise,
    added to the real and imaginary channels and taken as the magnitude when ``rician``;
    ``window`` clips the final intensities (e.g. a CT display window), None: no clipping.
    """

    slice_mm: float
    values: dict[str, float]
    jitter_rel: float = 0.0
    jitter_abs: float = 0.0
    texture: dict[str, float] = field(default_factory=dict)
    bias: float = 0.0
    blur_mm: float = 0.0
    noise: float = 0.0
    rician: bool = False
    window: tuple[float, float] | None = None


def _ct_spec() -> AppearanceSpec:
    return AppearanceSpec(
        slice_mm=2.5,
        values={
            "air": -1000.0, "subcutaneous_fat": -100.0, "muscle": 50.0, "visceral_fat": -90.0,
            "cortical_bone": 800.0, "marrow": 250.0, "disc": 90.0, "csf": 15.0, "blood": 170.0,
            "liver": 105.0, "liver_vessel": 185.0, "kidney_cortex": 190.0, "kidney_medulla": 170.0,
            "renal_sinus": -60.0, "spleen": 115.0, "stomach_wall": 70.0, "stomach_content": 10.0,
            "bowel": 40.0, "gallbladder": 5.0,
        },
        jitter_abs=6.0,
        texture={"bowel": 25.0, "marrow": 40.0, "stomach_content": 8.0},
        bias=0.0,
        blur_mm=0.0,
        noise=12.0,
        rician=False,
    )


def _mr_spec() -> AppearanceSpec:
    return AppearanceSpec(
        slice_mm=6.25,
        values={
            "air": 0.0, "subcutaneous_fat": 850.0, "muscle": 150.0, "visceral_fat": 800.0,
            "cortical_bone": 20.0, "marrow": 260.0, "disc": 600.0, "csf": 1000.0, "blood": 40.0,
            "liver": 260.0, "liver_vessel": 270.0, "kidney_cortex": 440.0, "kidney_medulla": 680.0,
            "renal_sinus": 780.0, "spleen": 470.0, "stomach_wall": 300.0, "stomach_content": 950.0,
            "bowel": 380.0, "gallbladder": 1050.0,
        },
        jitter_rel=0.10,
        texture={
            "bowel": 150.0, "liver": 20.0, "spleen": 25.0, "stomach_content": 100.0,
            "subcutaneous_fat": 20.0, "visceral_fat": 40.0, "muscle": 15.0,
        },
        bias=0.35,
        blur_mm=1.6,
        noise=30.0,
        rician=True,
    )


def _t1_spec() -> AppearanceSpec:
    return AppearanceSpec(
        slice_mm=5.0,
        values={
            "air": 0.0, "subcutaneous_fat": 800.0, "muscle": 300.0, "visceral_fat": 760.0,
            "cortical_bone": 30.0, "marrow": 600.0, "disc": 250.0, "csf": 90.0, "blood": 110.0,
            "liver": 520.0, "liver_vessel": 170.0, "kidney_cortex": 430.0, "kidney_medulla": 260.0,
            "renal_sinus": 720.0, "spleen": 370.0, "stomach_wall": 340.0, "stomach_content": 120.0,
            "bowel": 300.0, "gallbladder": 90.0,
        },
        jitter_rel=0.10,
        texture={"bowel": 120.0, "liver": 20.0, "visceral_fat": 60.0, "marrow": 60.0},
        bias=0.25,
        blur_mm=1.2,
        noise=25.0,
        rician=True,
    )


@dataclass
class PhantomConfig:
    """Sizes, spacings and appearances of the phantoms.

    In-plane, every appearance shares one ``shape_yx`` grid of ``spacing_yx_mm``; through-plane,
    every appearance covers ``fov_z_mm`` with its own slice thickness (``appearances[name].slice_mm``,
    rounded so that a whole number of slices fills the field of view). The anatomy is built on a
    grid of ``anatomy_dz_mm`` slices and each appearance averages it over its slab.
    ``variation`` scales the random anatomical variation between cases (0: all cases alike).
    The physical anatomy is in millimetres, so a smaller grid with a larger spacing keeps it.
    """

    shape_yx: tuple[int, int] = (112, 112)
    spacing_yx_mm: float = 3.0
    fov_z_mm: float = 100.0
    anatomy_dz_mm: float = 2.5
    variation: float = 1.0
    appearances: dict[str, AppearanceSpec] = field(
        default_factory=lambda: {"CT": _ct_spec(), "MR": _mr_spec(), "T1": _t1_spec()}
    )

    def n_slices(self, appearance: str) -> int:
        """Number of slices of one appearance."""
        return max(1, int(round(self.fov_z_mm / self.appearances[appearance].slice_mm)))

    def affine(self, appearance: str | None = None) -> np.ndarray:
        """RAS affine of an appearance's grid (``None``: the anatomy grid), centred on the origin."""
        nz = self.n_slices(appearance) if appearance else self._anatomy_nz()
        dz = self.fov_z_mm / nz
        h, w = self.shape_yx
        s = self.spacing_yx_mm
        aff = np.diag([-s, s, dz, 1.0])
        aff[:3, 3] = [s * (w - 1) / 2.0, -s * (h - 1) / 2.0, -self.fov_z_mm / 2.0 + dz / 2.0]
        return aff

    def _anatomy_nz(self) -> int:
        return max(1, int(round(self.fov_z_mm / self.anatomy_dz_mm)))


# --------------------------------------------------------------------------------------------------
# smooth random fields
# --------------------------------------------------------------------------------------------------


def _basis(coords: np.ndarray, scale: float) -> np.ndarray:
    """Gaussian radial basis along one axis, (len(coords), n_centres), rows of unit norm.

    With unit-norm rows, a sum of the basis with i.i.d. standard normal weights has unit variance at
    every point (whatever the crop), so fields are comparable between crops and cases.
    """
    lo, hi = float(coords.min()) - 2 * scale, float(coords.max()) + 2 * scale
    n = max(2, int(np.ceil((hi - lo) / (0.7 * scale))) + 1)
    centres = np.linspace(lo, hi, n)
    b = np.exp(-0.5 * ((coords[:, None] - centres[None, :]) / scale) ** 2)
    return b / np.sqrt((b**2).sum(axis=1, keepdims=True))


def _smooth_field(rng: np.random.Generator, zc: np.ndarray, yc: np.ndarray, xc: np.ndarray, scale: float) -> np.ndarray:
    """A smooth random field of unit variance at every point of the grid ``zc x yc x xc`` (mm).

    A tensor product of Gaussian bumps of width ``scale`` with random weights. Uses
    ``np.einsum`` without BLAS so that the result is bit-identical across thread counts.
    """
    bz, by, bx = _basis(zc, scale), _basis(yc, scale), _basis(xc, scale)
    coef = rng.standard_normal((bz.shape[1], by.shape[1], bx.shape[1]))
    f = np.einsum("abc,xc->abx", coef, bx)
    f = np.einsum("abx,yb->ayx", f, by)
    return np.einsum("ayx,za->zyx", f, bz)


def _smooth_1d(rng: np.random.Generator, coords: np.ndarray, scale: float) -> np.ndarray:
    b = _basis(coords, scale)
    return np.einsum("xc,c->x", b, rng.standard_normal(b.shape[1]))


def _rotation(rz: float, ry: float = 0.0, rx: float = 0.0) -> np.ndarray:
    """Rotation matrix acting on (z, y, x) vectors: rz in-plane (about the z axis), ry about y, rx about x."""
    cz, sz = np.cos(rz), np.sin(rz)
    cy, sy = np.cos(ry), np.sin(ry)
    cx, sx = np.cos(rx), np.sin(rx)
    # axes order (z, y, x)
    r_in = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])  # rotates y-x plane
    r_y = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])  # rotates z-x plane
    r_x = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])  # rotates z-y plane
    return r_in @ r_y @ r_x


# --------------------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------------------


@dataclass
class Anatomy:
    """One random abdomen on the anatomy grid: tissue classes, labels and a fine texture field."""

    tissue: np.ndarray  # (Z, Y, X) uint8 index into TISSUES
    label: np.ndarray  # (Z, Y, X) uint8, LABELS
    texture: np.ndarray  # (Z, Y, X) float32, unit-variance fine texture
    coords: tuple[np.ndarray, np.ndarray, np.ndarray]  # z, y(v), x(u) centres in mm


class _Painter:
    """Paints shapes into free (visceral fat) voxels; the first structure to claim a voxel keeps it."""

    def __init__(self, config: PhantomConfig, rng: np.random.Generator):
        self.rng = rng
        nz = config._anatomy_nz()
        dz = config.fov_z_mm / nz
        h, w = config.shape_yx
        s = config.spacing_yx_mm
        self.z = -config.fov_z_mm / 2.0 + (np.arange(nz) + 0.5) * dz
        self.v = (np.arange(h) - (h - 1) / 2.0) * s  # anterior +
        self.u = (np.arange(w) - (w - 1) / 2.0) * s  # patient left +
        self.shape = (nz, h, w)
        self.tissue = np.zeros(self.shape, np.uint8)
        self.label = np.zeros(self.shape, np.uint8)

    def crop(self, centre: Sequence[float], half: Sequence[float]) -> tuple[slice, slice, slice] | None:
        sl = []
        for axis, c, r in zip((self.z, self.v, self.u), centre, half):
            idx = np.nonzero(np.abs(axis - c) <= r)[0]
            if idx.size == 0:
                return None
            sl.append(slice(int(idx[0]), int(idx[-1]) + 1))
        return tuple(sl)  # type: ignore[return-value]

    def local(self, sl, centre, rot: np.ndarray, radii) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ellipsoid coordinates (z, y, x) of the crop: rotated, centred and divided by the radii."""
        z = (self.z[sl[0]] - centre[0])[:, None, None]
        v = (self.v[sl[1]] - centre[1])[None, :, None]
        u = (self.u[sl[2]] - centre[2])[None, None, :]
        # q = R^T p
        qz = rot[0, 0] * z + rot[1, 0] * v + rot[2, 0] * u
        qy = rot[0, 1] * z + rot[1, 1] * v + rot[2, 1] * u
        qx = rot[0, 2] * z + rot[1, 2] * v + rot[2, 2] * u
        return qz / radii[0], qy / radii[1], qx / radii[2]

    def field(self, sl, scale: float) -> np.ndarray:
        return _smooth_field(self.rng, self.z[sl[0]], self.v[sl[1]], self.u[sl[2]], scale)

    def paint(self, sl, mask: np.ndarray, tissue: int | np.ndarray, label: int = 0,
              free: Sequence[int] = (T["visceral_fat"],)) -> np.ndarray:
        """Set ``tissue``/``label`` where ``mask`` and the voxel is free; returns the painted crop mask."""
        cur = self.tissue[sl]
        ok = mask & np.isin(cur, free)
        if isinstance(tissue, np.ndarray):
            cur[ok] = tissue[ok]
        else:
            cur[ok] = tissue
        if label:
            self.label[sl][ok] = label
        return ok


def _u(rng: np.random.Generator, lo: float, hi: float, var: float) -> float:
    """Uniform in [lo, hi] shrunk toward the middle by ``var`` (0: always the middle)."""
    mid = 0.5 * (lo + hi)
    return mid + var * (float(rng.uniform(lo, hi)) - mid)


def generate_anatomy(seed: int, config: PhantomConfig | None = None) -> Anatomy:
    """Draw one random abdomen (tissue classes and labels) on the anatomy grid."""
    config = config or PhantomConfig()
    rng = np.random.default_rng([int(seed), 0x5EED])
    var = float(config.variation)
    P = _Painter(config, rng)
    z, v, u = P.z, P.v, P.u
    Z, V, U = z[:, None, None], v[None, :, None], u[None, None, :]
    nz, h, w = P.shape

    # ---- body outline: a superellipse, flatter at the back, slowly varying along z -----------------
    half_w = 0.5 * w * config.spacing_yx_mm
    half_h = 0.5 * h * config.spacing_yx_mm
    ru0 = _u(rng, 0.84, 0.94, var) * half_w
    rv0 = min(_u(rng, 0.70, 0.82, var) * ru0, 0.9 * half_h)
    ru = ru0 * (1 + 0.03 * var * _smooth_1d(rng, z, 60.0))[:, None, None]
    rv = rv0 * (1 + 0.03 * var * _smooth_1d(rng, z, 60.0))[:, None, None]
    cv = _u(rng, -6, 6, var)
    p = np.where(V - cv < 0, 2.8, 2.1)
    rho = (np.abs(U / ru) ** p + np.abs((V - cv) / rv) ** p) ** (1.0 / p)
    theta = np.arctan2(V - cv, U)
    wob = np.zeros((1, h, w))
    for k in (2, 3, 4):
        wob = wob + 0.012 * var * rng.standard_normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    body = rho < 1.0 + wob
    P.tissue[body] = T["subcutaneous_fat"]
    # depth below the skin (mm), per slice
    depth = np.empty(P.shape, np.float32)
    for k in range(nz):
        depth[k] = ndimage.distance_transform_edt(body[k], sampling=config.spacing_yx_mm)
    fat = _u(rng, 8, 20, var) * (1 + 0.35 * np.sin(theta).clip(0, None))  # thicker at the front
    fat = fat * (1 + 0.15 * var * np.cos(2 * theta + rng.uniform(0, 2 * np.pi)))
    wall = _u(rng, 6, 10, var)
    P.tissue[body & (depth >= fat)] = T["muscle"]
    P.tissue[body & (depth >= fat + wall)] = T["visceral_fat"]

    # anatomy centre in z (global shift of the field of view)
    z0 = _u(rng, -10, 10, var)
    posterior = cv - rv0 * 0.93  # approximate back skin

    # ---- spine: vertebral bodies with discs, canal, arch, paraspinal and psoas muscles ---------------
    vb_v = posterior + _u(rng, 55, 65, var)
    vb_u = _u(rng, -4, 4, var) + 2.0 * var * _smooth_1d(rng, z, 80.0)[:, None, None]
    vb_r = (_u(rng, 17, 21, var), _u(rng, 13, 16, var))  # (lateral, AP)
    spine_free = (T["visceral_fat"], T["muscle"], T["subcutaneous_fat"])
    full = (slice(None), slice(None), slice(None))
    vb = ((U - vb_u) / vb_r[0]) ** 2 + ((V - vb_v) / vb_r[1]) ** 2
    vb_in = ((U - vb_u) / (vb_r[0] - 2.5)) ** 2 + ((V - vb_v) / (vb_r[1] - 2.5)) ** 2
    period = _u(rng, 28, 34, var)
    phase = rng.uniform(0, period)
    disc = (np.mod(Z - phase, period) < 6.0) & (vb < 1)
    canal_v = vb_v - vb_r[1] - 9.0
    canal = ((U - vb_u) ** 2 + (V - canal_v) ** 2) < 7.5**2
    arch = (((U - vb_u) ** 2 + (V - canal_v) ** 2) < 13.0**2) | (
        (np.abs(U - vb_u) < 4.0) & (V < canal_v) & (V > canal_v - 30.0)
    )
    P.paint(full, canal, T["csf"], free=spine_free)
    P.paint(full, disc, T["disc"], free=spine_free)
    P.paint(full, vb_in < 1, T["marrow"], free=spine_free)
    P.paint(full, vb < 1, T["cortical_bone"], free=spine_free)
    P.paint(full, arch, T["cortical_bone"], free=spine_free)
    for side in (-1, 1):
        pu, pv = vb_u + side * _u(rng, 24, 30, var), canal_v - _u(rng, 8, 14, var)
        pr = (_u(rng, 16, 21, var), _u(rng, 13, 17, var))
        para = ((U - pu) / pr[0]) ** 2 + ((V - pv) / pr[1]) ** 2 < 1
        P.paint(full, para & body, T["muscle"], free=(T["visceral_fat"], T["subcutaneous_fat"]))
    # psoas: grows toward inferior, beside the vertebral body
    psoas_top = z0 + _u(rng, -5, 15, var)
    grow = np.clip((psoas_top - Z) / 60.0, 0, 1)
    for side in (-1, 1):
        r_ps = 4.0 + 14.0 * grow
        pu = vb_u + side * (vb_r[0] + 2.0 + r_ps * 0.8)
        psoas = ((U - pu) / (r_ps * 1.1)) ** 2 + ((V - vb_v - 2.0) / np.maximum(r_ps, 1e-3)) ** 2 < 1
        P.paint(full, psoas & (grow > 0), T["muscle"])

    # ---- aorta and inferior vena cava ------------------------------------------------------------------
    ao_u = vb_u + _u(rng, 6, 16, var) + 3.0 * var * _smooth_1d(rng, z, 70.0)[:, None, None]
    ao_v = vb_v + vb_r[1] + _u(rng, 11, 15, var)
    ao_r = _u(rng, 9, 12, var)
    P.paint(full, (U - ao_u) ** 2 + (V - ao_v) ** 2 < ao_r**2, T["blood"])
    ivc_u = vb_u - _u(rng, 20, 28, var) + 3.0 * var * _smooth_1d(rng, z, 70.0)[:, None, None]
    ivc_v = vb_v + vb_r[1] + _u(rng, 12, 18, var)
    ivc = ((U - ivc_u) / _u(rng, 12, 16, var)) ** 2 + ((V - ivc_v) / _u(rng, 8, 11, var)) ** 2 < 1
    P.paint(full, ivc, T["blood"])

    # ---- kidneys: bean shapes with cortex, medullary pyramids and a renal sinus ----------------------------
    kid_z = {2: z0 + _u(rng, -20, -6, var), 3: z0 + _u(rng, -12, 2, var)}  # right kidney lower
    for lab, side in ((2, -1), (3, 1)):
        radii = np.array([_u(rng, 44, 55, var), _u(rng, 19, 24, var), _u(rng, 24, 30, var)])
        cu = float(np.mean(vb_u)) + side * (vb_r[0] + _u(rng, 26, 36, var) + radii[2] * 0.6)
        cvv = vb_v + _u(rng, -6, 6, var)
        centre = (kid_z[lab], cvv, cu)
        # long axis tilted so that the upper pole is medial; hilum turned anteromedially
        rot = _rotation(side * np.deg2rad(_u(rng, 20, 45, var)), -side * np.deg2rad(_u(rng, 8, 22, var)))
        sl = P.crop(centre, [radii.max() * 1.3] * 3)
        if sl is None:
            continue
        qz, qy, qx = P.local(sl, centre, rot, radii)
        med = -side * qx  # > 0 toward the spine
        r = np.sqrt(qz**2 + qy**2 + qx**2)
        r = r * (1 + 0.07 * var * P.field(sl, 18.0))
        notch = (med > 0.45) & (np.abs(qz) < 0.42) & (np.abs(qy) < 0.55)
        kidney = (r < 1.0) & ~notch
        ang = np.arctan2(qz, qy + 1e-6)
        pyramids = (r < 0.74) & (r > 0.3) & (np.cos(5 * ang + rng.uniform(0, 2 * np.pi)) > -0.1)
        sinus = (r < 0.55) & (med > -0.15)
        tis = np.full(kidney.shape, T["kidney_cortex"], np.uint8)
        tis[pyramids] = T["kidney_medulla"]
        tis[sinus] = T["renal_sinus"]
        P.paint(sl, kidney, tis, label=lab)
        # perirenal fat: a fat capsule (thicker behind the kidney) that no other organ may take
        qz, qy, qx = P.local(sl, (centre[0], centre[1] - 4.0, centre[2]), rot, radii + 6.0)
        P.paint(sl, qz**2 + qy**2 + qx**2 < 1.0, _RESERVED_FAT)

    # ---- spleen: a crescent against the left posterolateral wall --------------------------------------------
    radii = np.array([_u(rng, 40, 55, var), _u(rng, 45, 60, var), _u(rng, 20, 28, var)])
    ang = np.deg2rad(_u(rng, -40, -15, var))  # direction from the centre, posterolateral left
    dist = 0.8 * ru0
    centre = (z0 + _u(rng, 18, 32, var), cv + dist * np.sin(ang) * (rv0 / ru0) * 0.95, dist * np.cos(ang) * 0.93)
    rot = _rotation(ang - np.pi / 2 + np.deg2rad(_u(rng, -12, 12, var)), 0.0, np.deg2rad(_u(rng, -10, 10, var)))
    sl = P.crop(centre, [radii.max() * 1.3] * 3)
    if sl is not None:
        qz, qy, qx = P.local(sl, centre, rot, radii)
        r = np.sqrt(qz**2 + qy**2 + qx**2) * (1 + 0.09 * var * P.field(sl, 20.0))
        hollow = np.sqrt(qz**2 + (qy / 1.1) ** 2 + (qx - 1.3) ** 2) < 0.85  # concave hilum, medial side
        P.paint(sl, (r < 1.0) & ~hollow, T["spleen"], label=4)

    # ---- gallbladder ------------------------------------------------------------------------------------------
    if rng.uniform() < 0.85:
        radii = np.array([_u(rng, 20, 32, var), _u(rng, 10, 16, var), _u(rng, 9, 14, var)])
        centre = (z0 + _u(rng, -10, 4, var), cv + _u(rng, 20, 45, var), -_u(rng, 25, 50, var))
        rot = _rotation(np.deg2rad(_u(rng, -30, 30, var)), np.deg2rad(_u(rng, -20, 20, var)))
        sl = P.crop(centre, [radii.max() * 1.2] * 3)
        if sl is not None:
            qz, qy, qx = P.local(sl, centre, rot, radii)
            P.paint(sl, qz**2 + qy**2 + qx**2 < 1, T["gallbladder"])

    # ---- liver: right lobe + left lobe, with vessels -----------------------------------------------------------
    lz = z0 + _u(rng, 18, 34, var)
    lobes = [
        ((lz, cv + _u(rng, -10, 15, var), -_u(rng, 0.35, 0.5, var) * ru0),
         np.array([_u(rng, 55, 70, var), _u(rng, 0.7, 0.85, var) * rv0, _u(rng, 0.45, 0.55, var) * ru0]),
         _rotation(np.deg2rad(_u(rng, -15, 15, var)), np.deg2rad(_u(rng, -10, 10, var)))),
        ((lz + _u(rng, 0, 15, var), cv + _u(rng, 0.3, 0.5, var) * rv0, _u(rng, -0.05, 0.2, var) * ru0),
         np.array([_u(rng, 30, 45, var), _u(rng, 25, 35, var), _u(rng, 45, 65, var)]),
         _rotation(np.deg2rad(_u(rng, -20, 10, var)))),
    ]
    lo = np.min([np.asarray(c) - r.max() * 1.2 for c, r, _ in lobes], axis=0)
    hi = np.max([np.asarray(c) + r.max() * 1.2 for c, r, _ in lobes], axis=0)
    sl = P.crop((lo + hi) / 2, (hi - lo) / 2)
    if sl is not None:
        rough = P.field(sl, 22.0)
        liver = np.zeros(tuple(s.stop - s.start for s in sl), bool)
        for centre, radii, rot in lobes:
            qz, qy, qx = P.local(sl, centre, rot, radii)
            liver |= np.sqrt(qz**2 + qy**2 + qx**2) * (1 + 0.10 * var * rough) < 1.0
        # vessels: intersections of two thin level sets of smooth fields = tubes
        f1, f2 = P.field(sl, 14.0), P.field(sl, 14.0)
        vessel = (np.abs(f1) < 0.16) & (np.abs(f2) < 0.45)
        inner = ndimage.binary_erosion(liver, iterations=2)
        tis = np.where(vessel & inner, T["liver_vessel"], T["liver"]).astype(np.uint8)
        P.paint(sl, liver, tis, label=1)

    # ---- stomach: wall, fluid and an anterior gas cap -----------------------------------------------------------
    radii = np.array([_u(rng, 30, 42, var), _u(rng, 25, 35, var), _u(rng, 28, 40, var)])
    centre = (z0 + _u(rng, 10, 28, var), cv + _u(rng, 0.15, 0.45, var) * rv0, _u(rng, 0.2, 0.4, var) * ru0)
    rot = _rotation(np.deg2rad(_u(rng, -30, 30, var)))
    sl = P.crop(centre, [radii.max() * 1.2] * 3)
    if sl is not None:
        qz, qy, qx = P.local(sl, centre, rot, radii)
        r = np.sqrt(qz**2 + qy**2 + qx**2) * (1 + 0.08 * var * P.field(sl, 20.0))
        inner = r < 1.0 - 4.5 / radii.min()
        tis = np.full(r.shape, T["stomach_wall"], np.uint8)
        tis[inner] = T["stomach_content"]
        gas = inner & ((P.v[sl[1]][None, :, None] - centre[1]) > _u(rng, 0.3, 0.6, var) * radii[1])
        tis[gas] = T["air"]
        P.paint(sl, r < 1.0, tis)

    # ---- bowel loops: textured blobs, some with gas, in the lower anterior abdomen ----------------------------
    n_loops = int(rng.integers(10, 17))
    for _ in range(n_loops):
        radii = np.array([rng.uniform(12, 30), rng.uniform(9, 18), rng.uniform(9, 18)])
        centre = (
            z0 + rng.uniform(-55, 15),
            cv + rng.uniform(-0.1, 0.8) * rv0,
            rng.uniform(-0.7, 0.7) * ru0,
        )
        rot = _rotation(rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5))
        sl = P.crop(centre, [radii.max() * 1.2] * 3)
        if sl is None:
            continue
        qz, qy, qx = P.local(sl, centre, rot, radii)
        r = np.sqrt(qz**2 + qy**2 + qx**2)
        tis = np.full(r.shape, T["bowel"], np.uint8)
        if rng.uniform() < 0.35:
            tis[(r < 0.55) & (qy > 0.1)] = T["air"]
        P.paint(sl, r < 1.0, tis)

    P.tissue[P.tissue == _RESERVED_FAT] = T["visceral_fat"]
    # fine texture shared by all appearances (each scales it per tissue)
    tex = ndimage.gaussian_filter(rng.standard_normal(P.shape).astype(np.float32), sigma=(0.6, 1.0, 1.0))
    tex /= max(float(tex.std()), 1e-6)
    return Anatomy(tissue=P.tissue, label=P.label, texture=tex.astype(np.float32), coords=(z, v, u))


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------


def _slab_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) overlap weights of n_out equal slabs over n_in equal slices of one field of view."""
    if n_in == n_out:
        return np.eye(n_in)
    edges_in = np.linspace(0.0, 1.0, n_in + 1)
    edges_out = np.linspace(0.0, 1.0, n_out + 1)
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    wts = np.clip(hi - lo, 0.0, None)
    return wts / wts.sum(axis=1, keepdims=True)


def _zmix(weights: np.ndarray, volume: np.ndarray) -> np.ndarray:
    # deterministic (no BLAS) weighted sum over slices
    return np.einsum("oi,iyx->oyx", weights, volume)


def render(anatomy: Anatomy, appearance: str, config: PhantomConfig | None = None, seed: int = 0) -> tuple[MedicalImage, MedicalImage]:
    """Render one appearance of an anatomy: ``(image float32, label uint8)`` on the appearance's grid."""
    config = config or PhantomConfig()
    if appearance not in config.appearances:
        raise LmisaError(f"unknown appearance {appearance!r} (known: {', '.join(config.appearances)})")
    spec = config.appearances[appearance]
    rng = np.random.default_rng([int(seed), zlib.crc32(appearance.encode())])
    missing = [t for t in TISSUES if t not in spec.values]
    if missing:
        raise LmisaError(f"appearance {appearance!r} has no value for tissue(s): {', '.join(missing)}")
    mean = np.array([spec.values[t] for t in TISSUES], np.float64)
    vals = mean * (1 + spec.jitter_rel * rng.standard_normal(len(TISSUES))) + spec.jitter_abs * rng.standard_normal(len(TISSUES))
    tex_amp = np.array([spec.texture.get(t, 0.0) for t in TISSUES], np.float64)
    img = vals[anatomy.tissue] + tex_amp[anatomy.tissue] * anatomy.texture
    if spec.blur_mm > 0:
        s = spec.blur_mm / config.spacing_yx_mm
        img = ndimage.gaussian_filter(img, sigma=(0.0, s, s), mode="nearest")
    n_in, n_out = anatomy.tissue.shape[0], config.n_slices(appearance)
    wts = _slab_weights(n_in, n_out)
    img = _zmix(wts, img)
    if n_in == n_out:
        label = anatomy.label.copy()
    else:  # majority label over each slab
        frac = np.stack([_zmix(wts, (anatomy.label == c).astype(np.float64)) for c in range(len(LABELS))])
        label = np.argmax(frac, axis=0).astype(np.uint8)
    if spec.bias > 0:
        z = -config.fov_z_mm / 2 + (np.arange(n_out) + 0.5) * config.fov_z_mm / n_out
        _, v, u = anatomy.coords
        bias = _smooth_field(rng, z, v, u, 110.0)
        img = img * np.exp(spec.bias * bias)
    if spec.noise > 0:
        n1 = rng.standard_normal(img.shape)
        if spec.rician:
            n2 = rng.standard_normal(img.shape)
            img = np.sqrt((img + spec.noise * n1) ** 2 + (spec.noise * n2) ** 2)
        else:
            img = img + spec.noise * n1
    if spec.window is not None:
        img = np.clip(img, spec.window[0], spec.window[1])
    affine = config.affine(appearance)
    return (
        MedicalImage(np.ascontiguousarray(img, dtype=np.float32), affine.copy()),
        MedicalImage(np.ascontiguousarray(label, dtype=np.uint8), affine.copy()),
    )


def generate_case(
    seed: int, config: PhantomConfig | None = None, appearances: Sequence[str] | None = None
) -> dict[str, tuple[MedicalImage, MedicalImage]]:
    """One random anatomy rendered in every appearance: ``{"CT": (image, label), "MR": ..., "T1": ...}``.

    Deterministic: the same ``seed`` and ``config`` give identical arrays. ``appearances`` picks a
    subset (default: all of ``config.appearances``); the anatomy does not depend on it.
    """
    config = config or PhantomConfig()
    anatomy = generate_anatomy(seed, config)
    names = list(appearances) if appearances is not None else list(config.appearances)
    return {name: render(anatomy, name, config, seed) for name in names}


# --------------------------------------------------------------------------------------------------
# nnU-Net raw data sets
# --------------------------------------------------------------------------------------------------


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a data set drawn with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def case_name(index: int) -> str:
    return f"{CASE_PREFIX}_{index:03d}"


def _write_json_atomic(path: Path, data: dict, overwrite: bool) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", overwrite)


def dataset_json(appearance: str, cases: int) -> dict:
    """The ``dataset.json`` of one phantom appearance."""
    return {
        "name": f"Phantom_{appearance}",
        "description": (
            f"lmisa synthetic abdominal phantoms, {appearance} appearance (lmisa.synthetic); "
            "the same case names are the same anatomy in every appearance"
        ),
        "channel_names": {"0": appearance},
        "labels": dict(LABELS),
        "numTraining": int(cases),
        "file_ending": ".nii.gz",
    }


def write_phantom_datasets(
    out: str | os.PathLike,
    cases: int,
    seed: int = 0,
    config: PhantomConfig | None = None,
    *,
    appearances: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write one nnU-Net-v2 raw data set per appearance: ``out/CT``, ``out/MR``, ``out/T1``.

    Each holds ``dataset.json``, ``imagesTr/phantom_XXX_0000.nii.gz`` and ``labelsTr/phantom_XXX.nii.gz``.
    Case ``i`` is the anatomy of ``case_seed(seed, i)`` in every appearance (a UDA experiment should
    take disjoint case indices per domain). Refuses to overwrite any existing file unless
    ``overwrite=True`` (which also removes stale ``phantom_*`` cases beyond ``cases``); checks every
    target before writing anything. ``progress(done, total)`` is called after each case.
    Returns ``{appearance: data set folder}``.
    """
    if cases < 1:
        raise LmisaError(f"--cases must be at least 1 (got {cases})")
    config = config or PhantomConfig()
    out = Path(out)
    names = list(appearances) if appearances is not None else list(config.appearances)
    unknown = [a for a in names if a not in config.appearances]
    if unknown:
        raise LmisaError(f"unknown appearance(s) {', '.join(unknown)} (known: {', '.join(config.appearances)})")
    roots = {a: out / a for a in names}
    targets = []
    for root in roots.values():
        if root.exists() and not root.is_dir():
            raise LmisaError(f"{root}: exists and is not a folder")
        targets.append(root / "dataset.json")
        for i in range(cases):
            targets += [root / "imagesTr" / f"{case_name(i)}_0000.nii.gz", root / "labelsTr" / f"{case_name(i)}.nii.gz"]
    if not overwrite:
        for t in targets:
            if t.exists():
                raise FileExistsError(f"{t}: exists (pass overwrite=True / --overwrite to replace it)")
    else:
        pattern = re.compile(rf"^{CASE_PREFIX}_(\d+)(_0000)?\.nii\.gz$")
        for root in roots.values():
            for sub in ("imagesTr", "labelsTr"):
                folder = root / sub
                if not folder.is_dir():
                    continue
                for f in folder.iterdir():
                    m = pattern.match(f.name)
                    if m and int(m.group(1)) >= cases:
                        f.unlink()
    for i in range(cases):
        rendered = generate_case(case_seed(seed, i), config, names)
        for a, (image, label) in rendered.items():
            write_image(roots[a] / "imagesTr" / f"{case_name(i)}_0000.nii.gz", image, overwrite=overwrite)
            write_image(roots[a] / "labelsTr" / f"{case_name(i)}.nii.gz", label, overwrite=overwrite)
        if progress is not None:
            progress(i + 1, cases)
    for a, root in roots.items():
        _write_json_atomic(root / "dataset.json", dataset_json(a, cases), overwrite=overwrite)
    return roots


__all__ = [
    "APPEARANCES",
    "Anatomy",
    "AppearanceSpec",
    "LABELS",
    "PhantomConfig",
    "TISSUES",
    "case_name",
    "case_seed",
    "dataset_json",
    "generate_anatomy",
    "generate_case",
    "render",
    "write_phantom_datasets",
]
