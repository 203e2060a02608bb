"""Special functions the framework needs but NumPy does not ship: the error function.

The error function is

    erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt,

an odd, S-shaped function rising from -1 to 1; ``0.5 * (1 + erf(x / sqrt(2)))`` is the cumulative
distribution function of the standard normal. We need it for the *exact* GELU activation,

    gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2))),

(the tanh formula is only an approximation of it), and NumPy has no ``erf``; SciPy has, but the package
depends on NumPy alone. CuPy does have one, in ``cupyx.scipy.special``, which is used when present.

The method is W. J. Cody's (Math. Comp. 23 (1969) 631-637): three rational approximations, each a
ratio of two polynomials fitted in the minimax sense, accurate to about 1e-17 relative in its range:

* ``|x| <= 0.46875``: ``erf(x) = x * R1(x^2)``;
* ``0.46875 < |x| <= 4``: ``erfc(|x|) = exp(-x^2) * R2(|x|)``;
* ``|x| > 4``: ``erfc(|x|) = exp(-x^2) / |x| * (1/sqrt(pi) - R3(1/x^2) / x^2)``,

with ``erf = 1 - erfc`` in the last two (no cancellation there: erf >= 0.49). ``exp(-x^2)`` is computed
as ``exp(-s^2) * exp(-(x - s)(x + s))`` with ``s`` = ``x`` rounded down to a multiple of 1/16, so that
``s^2`` is exact and the rounding error of ``x^2`` (amplified by up to x^2 ~ 700 in ``exp``) is avoided.
All three branches are evaluated on the whole array and chosen with ``where``: no Python loops over
elements, only array-module calls, so the same code runs on NumPy and CuPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["erf", "erf_single"]

_THRESH = 0.46875
_INV_SQRT_PI = 0.56418958354775628695

# Polynomial coefficients, highest degree first (Cody 1969, as used in his CALERF routine).
# fmt: off
# |x| <= 0.46875: erf(x) = x * A(t) / B(t), t = x^2.
_A = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
      3.77485237685302021e02, 3.20937758913846947e03)
_B = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
# 0.46875 < y <= 4: erfc(y) = exp(-y^2) * C(y) / D(y).
_C = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03,
      1.23033935479799725e03)
_D = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03,
      1.23033935480374942e03)
# y > 4: erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - t * P(t) / Q(t)), t = 1/y^2.
_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4)
_Q = (1.0, 2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
# Single precision (erf_single): erf(x) = x * S(x^2) / T(x^2) on [-4, 4], the rational minimax fit that Eigen and
# XLA evaluate in float32 (beyond 4, erf rounds to +-1 in float32).
_S = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
      -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_T = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
      -1.42647390514189e-02)
# fmt: on


def _poly(coeffs: tuple[float, ...], t: Any) -> Any:
    """Horner's rule; ``coeffs`` highest degree first."""
    r = coeffs[0]
    for c in coeffs[1:]:
        r = r * t + c
    return r


def erf(x: Any, xp: Any = None) -> Any:
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt``, elementwise.

    ``x`` is an array (or anything ``xp.asarray`` takes) of ``xp``, the array module (NumPy when
    ``None``). The result has the dtype of ``x`` for float16/32/64 input (float64 otherwise) and is
    accurate to a few 1e-16 relative in float64 and to within an ulp in float32 (computed in float64),
    over the whole real line (only subnormal results lose relative accuracy, as they must).
    ``erf(+-inf) = +-1``, ``erf(nan) = nan``. A 0-d input gives a 0-d array.
    """
    xp = np if xp is None else xp
    x = xp.asarray(x)
    out_dtype = x.dtype if x.dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float64)
    if xp is not np:
        try:
            from cupyx.scipy.special import erf as cupy_erf

            # CuPy's erf has no float16 loop (it would give float64): float16 is computed in float32
            compute = np.float32 if out_dtype == np.float16 else out_dtype
            return cupy_erf(x.astype(compute, copy=False)).astype(out_dtype, copy=False)
        except ImportError:
            pass
    x = x.astype(np.float64)
    y = xp.abs(x)

    # |x| <= 0.46875. Clip so the unused lanes stay finite (no overflow warnings); nan passes through.
    xs = xp.clip(x, -_THRESH, _THRESH)
    t = xs * xs
    erf_small = xs * _poly(_A, t) / _poly(_B, t)

    # 0.46875 < |x| <= 4 and |x| > 4 give erfc(|x|); beyond 27 erfc underflows to 0, so clip there.
    ym = xp.clip(y, _THRESH, 4.0)
    yb = xp.clip(y, 4.0, 27.0)
    t = 1.0 / (yb * yb)
    erfc_mid = _poly(_C, ym) / _poly(_D, ym)
    erfc_big = (_INV_SQRT_PI - t * _poly(_P, t) / _poly(_Q, t)) / yb
    yc = xp.where(y <= 4.0, ym, yb)
    s = xp.floor(yc * 16.0) / 16.0
    erfc = xp.where(y <= 4.0, erfc_mid, erfc_big) * xp.exp(-s * s) * xp.exp(-(yc - s) * (yc + s))
    erf_large = (0.5 - erfc) + 0.5

    res = xp.where(y <= _THRESH, erf_small, xp.where(x < 0, -erf_large, erf_large))
    return xp.asarray(res).astype(out_dtype, copy=False)


def erf_single(x: Any, xp: Any = None) -> Any:
    """The error function of a float32 (or float16) array, computed in float32: within 4.2e-7 of the exact
    value (7 float32 ulps at worst, near 0), where ``erf`` rounds a float64 evaluation to within an ulp.

    One rational function ``x S(x^2) / T(x^2)`` of x clipped to [-4, 4], about 26 float32 passes over the
    array (Horner's rule, in place) instead of ``erf``'s ~80 float64 ones: the GELU activation of a float32
    network uses it. Float64 input goes to ``erf``, and so does CuPy when ``cupyx`` is there (its float32
    erf is exact to an ulp and fast on the GPU).
    """
    xp = np if xp is None else xp
    x = xp.asarray(x)
    if x.dtype not in (np.float16, np.float32) or (xp is not np and _has_cupyx_erf()):
        return erf(x, xp)
    if x.ndim == 0:  # NumPy turns 0-d results into scalars, which the in-place steps below cannot write into
        return erf_single(x.reshape(1), xp).reshape(())
    f32 = np.dtype(np.float32)
    xc = xp.clip(x.astype(f32, copy=False), -4.0, 4.0)  # clip's output is a new array: x is never written
    t = xc * xc
    num, den = _horner(_S, t, f32), _horner(_T, t, f32)
    num *= xc
    num /= den
    xp.clip(num, -1.0, 1.0, out=num)  # the fit overshoots 1 by an ulp near 4
    return num.astype(x.dtype, copy=False)


def _horner(coeffs: tuple[float, ...], t: Any, dtype: np.dtype) -> Any:
    """The polynomial with ``coeffs`` (highest degree first, at least two) at ``t``, in one new array of ``dtype``."""
    r = t * dtype.type(coeffs[0])
    r += dtype.type(coeffs[1])
    for c in coeffs[2:]:
        r *= t
        r += dtype.type(c)
    return r


def _has_cupyx_erf() -> bool:
    try:
        from cupyx.scipy.special import erf as _  # noqa: F401
    except ImportError:
        return False
    return True
