"""Models built from a user's model: some parameters held fixed, or derivatives the user supplied.

Both are frozen dataclasses, hashable when the wrapped functions are, so a kernel compiled for
one is reused by the next fit of the same shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class FixedParameters:
    """``f`` with the parameters where ``fixed`` is True held at their ``values``: called with the
    free parameters only (equal lower and upper bounds fix a parameter)."""

    model: Callable
    fixed: tuple            # bool per parameter of ``model``
    values: tuple           # every parameter's value; those of fixed ones are used
    parameter_names: tuple | None = None   # names of the free parameters

    def __call__(self, x, *free):
        it = iter(free)
        return self.model(x, *[v if fix else next(it) for fix, v in zip(self.fixed, self.values)])


@dataclass(frozen=True)
class UserJacobian:
    """``f`` whose derivatives with respect to the parameters are ``jac(x, *params)``, shape (n, p),
    as scipy's curve_fit takes it; it must be written with jax.numpy, since the kernels trace it.
    x is data, not differentiated."""

    model: Callable
    jac: Callable
    parameter_names: tuple | None = None

    def __call__(self, x, *params):
        return _with_jacobian(self.model, self.jac, x, tuple(params))


def _with_jacobian(model, jac, x, params):
    @jax.custom_jvp
    def value(params):
        return model(x, *params)

    @value.defjvp
    def value_jvp(primals, tangents):
        (p,), (dp,) = primals, tangents
        j = jnp.asarray(jac(x, *p))
        return value(p), j @ jnp.stack([jnp.asarray(d, dtype=j.dtype) for d in dp])

    return value(params)
