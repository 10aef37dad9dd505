"""Linear algebra whose results do not depend on the BLAS kernel or the machine's CPU.

numpy hands ``dot`` and ``linalg.eigh`` to OpenBLAS/LAPACK, which picks a kernel for the CPU it
finds (Haswell, SkylakeX, Sandybridge, ...); the kernels sum in different orders and some fuse
multiply-adds, so the last bits of a product differ from one machine to the next. In CMA-ES the
eigen-decomposition of the covariance turns such last-bit differences into different
eigenvectors (signs, rotations inside near-equal eigenvalues), hence different samples, hence a
different run. Here the same operations are written as plain loops compiled by numba without
``fastmath`` (no re-association, no fused multiply-add): every machine does the same IEEE
operations in the same order and gets the same bits.

:func:`kernel_independent` makes pycma use them: inside the ``with`` block the ``np`` name of
pycma's modules points at a stand-in whose ``dot``, ``linalg.eigh`` and ``linalg.norm`` are the
functions below (everything else is numpy itself). Elementwise operations and numpy's reductions
(``sum``) do not go through BLAS and stay as they are.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import numba
import numpy as np


@numba.njit(cache=True)
def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n))
    for i in range(m):
        for l in range(k):  # noqa: E741 - the textbook index
            ail = a[i, l]
            for j in range(n):
                out[i, j] += ail * b[l, j]
    return out


@numba.njit(cache=True)
def _hypot(a: float, b: float) -> float:  # pragma: no cover - compiled
    """sqrt(a^2 + b^2) without libm's hypot (whose implementation varies with the CPU)."""
    m = max(abs(a), abs(b))
    if m == 0.0:
        return 0.0
    x = a / m
    y = b / m
    return m * np.sqrt(x * x + y * y)


@numba.njit(cache=True)
def _tred2_tql2(v: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Eigen-decomposition of the symmetric ``v`` in place (Householder tridiagonalisation, then the
    implicit QL algorithm; the EISPACK routines as in JAMA). Returns the eigenvalues, ascending;
    ``v`` holds the eigenvectors as columns."""
    n = v.shape[0]
    d = np.empty(n)
    e = np.zeros(n)
    for j in range(n):
        d[j] = v[n - 1, j]
    # Householder reduction to tridiagonal form.
    for i in range(n - 1, 0, -1):
        scale = 0.0
        h = 0.0
        for k in range(i):
            scale += abs(d[k])
        if scale == 0.0:
            e[i] = d[i - 1]
            for j in range(i):
                d[j] = v[i - 1, j]
                v[i, j] = 0.0
                v[j, i] = 0.0
        else:
            for k in range(i):
                d[k] /= scale
                h += d[k] * d[k]
            f = d[i - 1]
            g = np.sqrt(h)
            if f > 0:
                g = -g
            e[i] = scale * g
            h = h - f * g
            d[i - 1] = f - g
            for j in range(i):
                e[j] = 0.0
            for j in range(i):
                f = d[j]
                v[j, i] = f
                g = e[j] + v[j, j] * f
                for k in range(j + 1, i):
                    g += v[k, j] * d[k]
                    e[k] += v[k, j] * f
                e[j] = g
            f = 0.0
            for j in range(i):
                e[j] /= h
                f += e[j] * d[j]
            hh = f / (h + h)
            for j in range(i):
                e[j] -= hh * d[j]
            for j in range(i):
                f = d[j]
                g = e[j]
                for k in range(j, i):
                    v[k, j] -= f * e[k] + g * d[k]
                d[j] = v[i - 1, j]
                v[i, j] = 0.0
        d[i] = h
    # Accumulate the transformations.
    for i in range(n - 1):
        v[n - 1, i] = v[i, i]
        v[i, i] = 1.0
        h = d[i + 1]
        if h != 0.0:
            for k in range(i + 1):
                d[k] = v[k, i + 1] / h
            for j in range(i + 1):
                g = 0.0
                for k in range(i + 1):
                    g += v[k, i + 1] * v[k, j]
                for k in range(i + 1):
                    v[k, j] -= g * d[k]
        for k in range(i + 1):
            v[k, i + 1] = 0.0
    for j in range(n):
        d[j] = v[n - 1, j]
        v[n - 1, j] = 0.0
    v[n - 1, n - 1] = 1.0
    e[0] = 0.0
    # Implicit QL iterations on the tridiagonal matrix.
    for i in range(1, n):
        e[i - 1] = e[i]
    e[n - 1] = 0.0
    f = 0.0
    tst1 = 0.0
    eps = 2.0 ** -52
    for l in range(n):  # noqa: E741 - EISPACK's index
        tst1 = max(tst1, abs(d[l]) + abs(e[l]))
        m = l
        while m < n - 1:
            if abs(e[m]) <= eps * tst1:
                break
            m += 1
        if m > l:
            for _ in range(200):
                g = d[l]
                p = (d[l + 1] - g) / (2.0 * e[l])
                r = _hypot(p, 1.0)
                if p < 0:
                    r = -r
                d[l] = e[l] / (p + r)
                d[l + 1] = e[l] * (p + r)
                dl1 = d[l + 1]
                h = g - d[l]
                for i in range(l + 2, n):
                    d[i] -= h
                f += h
                p = d[m]
                c = 1.0
                c2 = c
                c3 = c
                el1 = e[l + 1]
                s = 0.0
                s2 = 0.0
                for i in range(m - 1, l - 1, -1):
                    c3 = c2
                    c2 = c
                    s2 = s
                    g = c * e[i]
                    h = c * p
                    r = _hypot(p, e[i])
                    e[i + 1] = s * r
                    s = e[i] / r
                    c = p / r
                    p = c * d[i] - s * g
                    d[i + 1] = h + s * (c * g + s * d[i])
                    for k in range(n):
                        h = v[k, i + 1]
                        v[k, i + 1] = s * v[k, i] + c * h
                        v[k, i] = c * v[k, i] - s * h
                p = -s * s2 * c3 * el1 * e[l] / dl1
                e[l] = s * p
                d[l] = c * p
                if not abs(e[l]) > eps * tst1:
                    break
        d[l] = d[l] + f
        e[l] = 0.0
    return d


def dot(a, b, out=None):
    """``numpy.dot`` for real vectors and matrices, summed in a fixed order (see the module docstring)."""
    a_ = np.asarray(a)
    b_ = np.asarray(b)
    if out is not None or a_.ndim == 0 or b_.ndim == 0 or a_.ndim > 2 or b_.ndim > 2 or not (
        a_.dtype.kind in "fiub" and b_.dtype.kind in "fiub"
    ):
        return np.dot(a, b, out=out) if out is not None else np.dot(a, b)
    left = np.ascontiguousarray(a_, dtype=np.float64)
    right = np.ascontiguousarray(b_, dtype=np.float64)
    if left.ndim == 1 and right.ndim == 1:
        return np.float64(_matmul(left[None, :], right[:, None])[0, 0])
    if left.ndim == 1:
        return _matmul(left[None, :], right)[0]
    if right.ndim == 1:
        return _matmul(left, right[:, None])[:, 0]
    return _matmul(left, right)


def eigh(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a real symmetric matrix, like
    ``numpy.linalg.eigh``, by Householder tridiagonalisation and implicit QL in compiled loops:
    the same bits on every machine."""
    a = np.array(matrix, dtype=np.float64, order="C", copy=True)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"eigh needs a square matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("eigh: matrix contains NaN or infinite values")
    a = np.ascontiguousarray((a + a.T) / 2)
    w = _tred2_tql2(a)
    order = np.argsort(w, kind="stable")
    return w[order], np.ascontiguousarray(a[:, order])


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - numpy's signature
    """``numpy.linalg.norm``; the plain 2-norm of a vector without BLAS."""
    x_ = np.asarray(x)
    if ord is None and axis is None and not keepdims and x_.ndim == 1 and x_.dtype.kind == "f":
        return np.sqrt(np.sum(np.square(x_)))
    return np.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)


class _Linalg:
    eigh = staticmethod(eigh)
    norm = staticmethod(norm)

    def __getattr__(self, name: str):
        return getattr(np.linalg, name)


class _Numpy:
    """numpy, but with the functions above in place of BLAS's."""

    dot = staticmethod(dot)
    linalg = _Linalg()

    def __getattr__(self, name: str):
        return getattr(np, name)


_STAND_IN = _Numpy()


@contextlib.contextmanager
def kernel_independent(package: str = "cma") -> Iterator[None]:
    """Within the block, the modules of ``package`` compute with :func:`dot`, :func:`eigh` and :func:`norm`.

    Not thread-safe: the GA's own thread is the only one running pycma.
    """
    patched = []
    for name, module in list(sys.modules.items()):
        if (name == package or name.startswith(package + ".")) and getattr(module, "np", None) is np:
            module.np = _STAND_IN
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            module.np = np
