"""The fitted parameters of a GLLiM model, as a plain container.

Shared by the estimator (:mod:`sbm_ros.core.gllim`), the posterior (:mod:`sbm_ros.core.posterior`)
and the model file (:mod:`sbm_ros.core.model`); it imports nothing else of the package, so none of
them needs another's import to read parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GLLiMParams:
    """Plain container of fitted GLLiM parameters (what the model file stores)."""

    pi: np.ndarray       # (K,)
    c: np.ndarray        # (K, L)
    Gamma: np.ndarray    # (K, L, L)
    A: np.ndarray        # (K, D, L)
    b: np.ndarray        # (K, D)
    sigma2: np.ndarray   # (D,)

    @property
    def n_components(self) -> int:
        return int(self.pi.shape[0])

    @property
    def dim_x(self) -> int:
        return int(self.c.shape[1])

    @property
    def dim_y(self) -> int:
        return int(self.b.shape[1])

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent or non-finite parameter."""
        K, L = self.c.shape
        D = self.b.shape[1] if self.b.ndim == 2 else -1
        expected = {"pi": (K,), "c": (K, L), "Gamma": (K, L, L), "A": (K, D, L),
                    "b": (K, D), "sigma2": (D,)}
        for name, shape in expected.items():
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ValueError(f"parameter {name} has shape {arr.shape}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"parameter {name} contains non-finite values")
        if np.any(self.sigma2 <= 0):
            raise ValueError("parameter sigma2 must be positive")
        if np.any(self.pi < 0) or abs(float(self.pi.sum()) - 1.0) > 1e-6:
            raise ValueError("parameter pi must be non-negative and sum to 1")
        try:
            np.linalg.cholesky(self.Gamma)
        except np.linalg.LinAlgError:
            raise ValueError("parameter Gamma is not positive definite") from None
