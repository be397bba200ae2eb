"""Fitted tree ensembles as node arrays, for fast held-out permutation importance.

Shuffling one column changes only the trees that split on it, so the permuted prediction is the
base prediction minus those trees' outputs plus their outputs on the shuffled column. With a few
hundred probe columns that is one pass over about ten trees per column instead of a full
``predict`` per column (which, in LightGBM, also re-reads every column of every row).

:func:`from_model` reads a LightGBM model (``booster_.dump_model()``) or a scikit-learn random
forest (``estimators_[i].tree_``) into :class:`TreeEnsemble`; ``tests/selection`` checks that its
predictions equal the library's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass
class Tree:
    """One tree as node arrays; ``left[i] == -1`` marks a leaf, ``value`` is nodes x outputs.

    A row goes left when ``x <= threshold``. Missing values: where ``nan_as_zero`` a NaN is read
    as 0 first (LightGBM without a NaN branch); where ``zero_missing`` a zero is missing
    (LightGBM's zero-as-missing); a missing value goes left where ``missing_left``.
    """

    left: IntArray
    right: IntArray
    feature: IntArray
    threshold: FloatArray
    missing_left: npt.NDArray[np.bool_]
    nan_as_zero: npt.NDArray[np.bool_]
    zero_missing: npt.NDArray[np.bool_]
    value: FloatArray

    def depth(self) -> int:
        levels, frontier = 0, [0]
        while True:
            frontier = [
                c for i in frontier if self.left[i] >= 0 for c in (self.left[i], self.right[i])
            ]
            if not frontier:
                return levels
            levels += 1


@dataclass
class TreeEnsemble:
    """Trees whose outputs are summed (boosting) or averaged (forest), then a link function.

    The trees are laid end to end in one set of node arrays (``root[t]`` is tree t's first
    node) with every leaf pointing to itself, so any subset of trees walks all rows in one
    vectorised step per level.
    """

    trees: list[Tree]
    average: bool
    link: str  # "identity" | "sigmoid" (binary, one raw output) | "softmax"
    uses: list[IntArray] = field(default_factory=list)  # trees splitting on each column

    def __post_init__(self) -> None:
        sizes = [len(t.left) for t in self.trees]
        self.root = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        self.depth = np.array([t.depth() for t in self.trees], dtype=np.intp)
        parts = list(zip(self.trees, self.root, strict=True))
        # A leaf points to itself, so rows that reached one stay there for the remaining levels.
        self.left = np.concatenate(
            [np.where(t.left >= 0, t.left, np.arange(len(t.left))) + r for t, r in parts]
        )
        self.right = np.concatenate(
            [np.where(t.left >= 0, t.right, np.arange(len(t.left))) + r for t, r in parts]
        )
        self.feature = np.concatenate([t.feature for t in self.trees])
        self.threshold = np.concatenate([t.threshold for t in self.trees])
        self.missing_left = np.concatenate([t.missing_left for t in self.trees])
        self.nan_as_zero = np.concatenate([t.nan_as_zero for t in self.trees])
        self.zero_missing = np.concatenate([t.zero_missing for t in self.trees])
        self.value = np.concatenate([t.value for t in self.trees])
        self._any_zero_missing = bool(self.zero_missing.any())
        self._total_of: FloatArray | None = None
        self._total = np.zeros(0)

    def outputs(
        self,
        X: FloatArray,
        trees: IntArray | None = None,
        column: int = -1,
        replacement: FloatArray | None = None,
    ) -> FloatArray:
        """Output of each tree (all, or the ``trees`` listed) on each row: trees x rows x outputs.

        ``column`` is read from ``replacement`` instead of ``X``.
        """
        trees = np.arange(len(self.trees)) if trees is None else trees
        n = len(X)
        node = np.repeat(self.root[trees][:, None], n, axis=1)
        rows = np.arange(n)[None, :]
        has_nan = bool(np.isnan(X).any()) or (
            replacement is not None and bool(np.isnan(replacement).any())
        )
        for _ in range(int(self.depth[trees].max(initial=0))):
            feat = self.feature[node]
            x = X[rows, feat]
            if replacement is not None:
                x = np.where(feat == column, replacement[None, :], x)
            go_left = x <= self.threshold[node]
            if has_nan or self._any_zero_missing:
                x = np.where(np.isnan(x) & self.nan_as_zero[node], 0.0, x)
                missing = np.isnan(x) | (self.zero_missing[node] & (np.abs(x) <= 1e-35))
                go_left = np.where(missing, self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        return np.asarray(self.value[node], dtype=np.float64)

    def finish(self, raw: FloatArray) -> FloatArray:
        """Predictions (n x outputs: class probabilities, or one column of values) from raw sums."""
        if self.average:
            raw = raw / len(self.trees)
        if self.link == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1.0 - p, p])
        if self.link == "softmax":
            e = np.exp(raw - raw.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
        return raw

    def permuted_raw(
        self, X: FloatArray, outputs: FloatArray, column: int, replacement: FloatArray
    ) -> FloatArray:
        """Raw sums with ``column`` replaced, from the base per-tree :meth:`outputs`."""
        users = self.uses[column]
        changed = self.outputs(X, users, column, replacement)
        total = self._total if self._total_of is outputs else outputs.sum(axis=0)
        self._total, self._total_of = total, outputs
        return np.asarray(total - outputs[users].sum(axis=0) + changed.sum(axis=0))


def _index_uses(trees: list[Tree], n_features: int) -> list[IntArray]:
    users: list[list[int]] = [[] for _ in range(n_features)]
    for t, tree in enumerate(trees):
        for j in np.unique(tree.feature[tree.left >= 0]):
            users[int(j)].append(t)
    return [np.array(u, dtype=np.intp) for u in users]


def _lightgbm_tree(structure: dict[str, Any], out: int, n_out: int) -> Tree:
    nodes: list[dict[str, Any]] = []
    children: list[tuple[int, int]] = []

    def visit(node: dict[str, Any]) -> int:
        index = len(nodes)
        nodes.append(node)
        children.append((-1, -1))
        if "split_feature" in node:
            if node["decision_type"] != "<=":
                raise NotImplementedError("categorical split")
            children[index] = (visit(node["left_child"]), visit(node["right_child"]))
        return index

    visit(structure)
    inner = ["split_feature" in n for n in nodes]
    value = np.zeros((len(nodes), n_out))
    for i, n in enumerate(nodes):
        if not inner[i]:
            value[i, out] = n["leaf_value"]
    missing_type = [n.get("missing_type", "None") for n in nodes]
    return Tree(
        left=np.array([c[0] for c in children], dtype=np.intp),
        right=np.array([c[1] for c in children], dtype=np.intp),
        feature=np.array([n.get("split_feature", 0) for n in nodes], dtype=np.intp),
        threshold=np.array([float(n.get("threshold", 0.0)) for n in nodes]),
        missing_left=np.array([bool(n.get("default_left", False)) for n in nodes]),
        nan_as_zero=np.array([m != "NaN" for m in missing_type]),
        zero_missing=np.array([m == "Zero" for m in missing_type]),
        value=value,
    )


def from_model(model: Any, n_features: int) -> TreeEnsemble | None:
    """The ensemble of a fitted LGBM{Classifier,Regressor} or RandomForest{Classifier,Regressor};
    ``None`` when it holds something this reader does not cover (then use ``model.predict``)."""
    if hasattr(model, "booster_"):
        dump = model.booster_.dump_model()
        n_out = int(dump["num_tree_per_iteration"])
        try:
            trees = [
                _lightgbm_tree(info["tree_structure"], i % n_out, n_out)
                for i, info in enumerate(dump["tree_info"])
            ]
        except NotImplementedError:
            return None
        objective = str(dump.get("objective", ""))
        if objective.startswith("binary"):
            link = "sigmoid"
        elif objective.startswith("multiclass"):
            link = "softmax"
        elif objective.startswith("regression") and "sqrt" not in objective:
            link = "identity"
        else:
            return None
        return TreeEnsemble(trees, average=False, link=link, uses=_index_uses(trees, n_features))
    if hasattr(model, "estimators_"):
        forest = []
        for estimator in model.estimators_:
            t = estimator.tree_
            value = np.asarray(t.value[:, 0, :], dtype=np.float64)
            forest.append(
                Tree(
                    left=np.asarray(t.children_left, dtype=np.intp),
                    right=np.asarray(t.children_right, dtype=np.intp),
                    feature=np.maximum(np.asarray(t.feature, dtype=np.intp), 0),
                    threshold=np.asarray(t.threshold, dtype=np.float64),
                    missing_left=np.asarray(t.missing_go_to_left, dtype=bool),
                    nan_as_zero=np.zeros(t.node_count, dtype=bool),
                    zero_missing=np.zeros(t.node_count, dtype=bool),
                    value=value,
                )
            )
        return TreeEnsemble(
            forest, average=True, link="identity", uses=_index_uses(forest, n_features)
        )
    return None
