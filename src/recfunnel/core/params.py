"""Hyper-parameters by scikit-learn's conventions, shared by every estimator-like contract.

``__init__`` only stores its arguments under the same names; :class:`Params` derives the rest
from the signature: ``get_params``, ``set_params`` (unknown names refused with a
``ConfigError``), a ``repr`` that shows them, and so ``type(m)(**m.get_params())`` clones.

>>> class Model(Params):
...     def __init__(self, k: int = 10, shrink: float = 0.0) -> None:
...         self.k = k
...         self.shrink = shrink
>>> Model(k=5).set_params(shrink=1.0)
Model(k=5, shrink=1.0)
>>> Model().set_params(alpha=1)
Traceback (most recent call last):
...
recfunnel.core.errors.ConfigError: Model has no parameter(s) ['alpha']
"""

from __future__ import annotations

import inspect
from typing import Any, Self

from recfunnel.core.errors import ConfigError


class Params:
    """Mixin: parameters are the named arguments of ``__init__``, stored as attributes."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            name
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The parameters by name (``deep`` is accepted for ``sklearn.base.clone``)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        unknown = set(params) - set(self._param_names())
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no parameter(s) {sorted(unknown)}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
