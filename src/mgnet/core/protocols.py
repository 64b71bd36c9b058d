"""The extension hooks of the MgNet cycle, written down as ``typing.Protocol`` classes.

:class:`mgnet.core.MgCycle` needs nothing from its modules but ``__call__``: A^l maps a
feature to data, B^{l,i} data to a feature, R, Pi and P move tensors between grids. A
module may offer more, and the cycle then uses it. What each hook must guarantee is
stated here; the cycle relies on exactly that and nothing else (see docs/design.md).

==================  ========================================  ==========================
hook                who defines it                            the cycle calls it for
==================  ========================================  ==========================
``residual(u, f)``  A^l (:class:`FusedResidual`)              f - A^l u, in one pass
``update_(A,u,f)``  B^{l,i} (:class:`InPlaceSmoother`)        the whole step, in place
``needs_u``         B^{l,i} (:class:`IterateDependent`)       B(r, u) instead of B(r)
``add_to(u, e)``    P^l_{l+1} (:class:`InPlaceProlongation`)  u += P e, in place
``restrict_         R^{l+1}_l (:class:`FusedRestriction`)     R (f - A^l u), in one pass
residual(A,u,f)``
``smooth_           R^{l+1}_l (:class:`FusedSmoothing         the pre-smoothing steps and
restrict_(A,u,f,    Restriction`)                             R (f - A^l u), in one pass
Bs)``
``add_to_smooth_    P^l_{l+1} (:class:`FusedCorrection        u += P e and the post-
(u,e,A,f,Bs)``      Smoothing`)                               smoothing steps, in one pass
==================  ========================================  ==========================

The last two may decline (return None, having written nothing): the cycle then runs the
steps one by one. It offers them only on the in-place path of a level whose steps are
linear (no sigma, no projection) and use the level's A, with Pi = 0 and no sigma_R.

The checks are ``getattr`` look-ups in the cycle's hot path (``isinstance`` against a
runtime-checkable protocol costs more than the arithmetic of a small grid); the classes
here are their specification and serve type checkers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = [
    "FusedCorrectionSmoothing",
    "FusedResidual",
    "FusedRestriction",
    "FusedSmoothingRestriction",
    "InPlaceProlongation",
    "InPlaceSmoother",
    "IterateDependent",
    "Operator",
]


@runtime_checkable
class Operator(Protocol):
    """A^l, B^{l,i}, R, Pi or P: anything called on a tensor shaped (batch, channel, *space).

    Every ``nn.Module`` with such a ``forward`` qualifies; it must not write its input.
    """

    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class FusedResidual(Protocol):
    """An A^l that computes the residual itself: ``residual(u, f) = f - A^l u``.

    Guarantees: the value equals ``f - A(u)`` up to rounding (the same terms, summed in
    an order of its choice); ``u = None`` stands for zero and returns ``f`` itself;
    neither ``u`` nor ``f`` is written. The result may be a buffer of A that its next
    ``residual`` call overwrites (a solver's workspace), so a caller that keeps it past
    another call must copy it. :func:`mgnet.core.residual` is the one caller.
    """

    def residual(self, u: Tensor | None, f: Tensor) -> Tensor: ...


@runtime_checkable
class InPlaceSmoother(Protocol):
    """A B^{l,i} that performs its whole smoothing step in place:
    ``update_(A, u, f)``: u <- u + B (f - A u), returning u (the same tensor).

    Guarantees: the result equals the allocating step ``u + B(f - A(u))`` up to rounding
    (a red-black colour may compute the residual block by block, because its update of
    one block never changes the residual of the nodes it updates next); ``f`` is never
    written. The cycle calls it only when the step is linear (no sigma, no projection),
    no autograd graph is recorded, and the caller handed u over (``inplace=True``).
    """

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor: ...


@runtime_checkable
class IterateDependent(Protocol):
    """A B^{l,i} that depends on the current feature: ``needs_u = True`` makes the cycle
    call ``B(r, u)`` (``u = None`` standing for zero) instead of ``B(r)``, e.g. a Newton
    smoother (D + N'(u))^-1 for a nonlinear A (FAS). B must not write ``r`` or ``u``.
    """

    needs_u: bool

    def __call__(self, r: Tensor, u: Tensor | None) -> Tensor: ...


@runtime_checkable
class InPlaceProlongation(Protocol):
    """A P^l_{l+1} that adds its interpolant to a fine tensor: ``add_to(u, e)``:
    u <- u + P e, returning u (the same tensor).

    Guarantees: equal to ``u + P(e)`` up to rounding, without forming P e on the fine grid
    when it can; ``e`` is not written. Used by the in-place cycle for the coarse correction.
    """

    def add_to(self, u: Tensor, e: Tensor) -> Tensor: ...


@runtime_checkable
class FusedRestriction(Protocol):
    """An R^{l+1}_l that restricts a residual it computes itself:
    ``restrict_residual(A, u, f) = R (f - A u)`` (``u = None`` is zero).

    Guarantees: equal to ``R(residual(A, u, f))`` up to rounding, also when it cannot fuse
    (then it computes exactly that); ``u`` and ``f`` are not written; the result is a fresh
    tensor. A fixed stencil and full weighting do it in one pass over u and f without
    storing the fine-grid residual.
    """

    def restrict_residual(self, A: nn.Module, u: Tensor | None, f: Tensor) -> Tensor: ...


@runtime_checkable
class FusedSmoothingRestriction(Protocol):
    """An R^{l+1}_l that runs a level's pre-smoothing steps and the restriction of the
    result's residual together: ``smooth_restrict_(A, u, f, Bs)`` performs the steps
    u <- u + B_i (f - A u), i = 1..k, and returns ``(u, R (f - A u))`` of the result: u
    updated in place (a fresh tensor when ``u`` is None, which stands for zero) and a
    fresh coarse tensor; or returns None, having written nothing, when it cannot fuse
    these B (the cycle then runs the steps and restricts one by one).

    Guarantees: u and the coarse data equal those of the steps run one by one and then
    ``R(residual(A, u, f))``, up to rounding; ``f`` is never written.
    """

    def smooth_restrict_(
        self, A: nn.Module, u: Tensor | None, f: Tensor, Bs: list[nn.Module]
    ) -> tuple[Tensor, Tensor] | None: ...


@runtime_checkable
class FusedCorrectionSmoothing(Protocol):
    """A P^l_{l+1} that adds the coarse correction and runs the post-smoothing steps
    together: ``add_to_smooth_(u, e, A, f, Bs)`` performs u <- u + P e and then the steps
    u <- u + B_i (f - A u) in place, returning u; or returns None, having written nothing,
    when it cannot fuse these B.

    Guarantees: equal to ``add_to(u, e)`` followed by the steps one by one, up to
    rounding; ``e`` and ``f`` are never written.
    """

    def add_to_smooth_(
        self, u: Tensor, e: Tensor, A: nn.Module, f: Tensor, Bs: list[nn.Module]
    ) -> Tensor | None: ...
