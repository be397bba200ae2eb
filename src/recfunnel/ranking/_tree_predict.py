"""Compiled scoring of a trained LightGBM model: flat node arrays and one numba kernel.

Hand-written because no maintained library compiles LightGBM models on this stack: lleaves
does not build against our llvmlite (0.50), and treelite / tl2cgen took 284 s to compile the
ranker's default model and then scored 10x slower than LightGBM itself. LightGBM's own
predictor costs about 80 ns per (tree, row) on categorical splits, most of it per-row set-up
and branchy decision code, which put 1,000 candidates x 200 trees at 16 ms.

:class:`TreeEnsemble` reads ``Booster.dump_model()`` into one array per node field (all trees
concatenated) and scores raw rows exactly as LightGBM's ``Tree::GetLeaf`` does
(``include/LightGBM/tree.h``):

* numerical split: left when ``value <= threshold``. ``missing_type`` ``"None"`` and
  ``"Zero"`` read NaN as 0; ``"Zero"`` sends ``|value| <= kZeroThreshold`` (``1e-35f``) and
  ``"NaN"`` sends NaN to the ``default_left`` side. The C API also drops ``|value| <= 1e-35f``
  from every input row (the value then reads as 0), which only matters for a threshold inside
  that band; such nodes take the slow path that replays it.
* categorical split: the value is cast to int (truncation: ``-0.5`` is category 0); negative,
  beyond the node's bitset, or NaN goes right. LightGBM's source maps NaN to category 0 when
  ``missing_type`` is not ``"NaN"``, but its ``static_cast<int>(NaN)`` comes first and gives
  ``INT_MIN`` on x86-64, so its x86-64 builds (the ones we ship on, and test against) send NaN
  right; so do we. Values of ``2**31`` and above go right for the same reason.
* a tree with one leaf adds its value; scores sum trees in order from 0.0 (as LightGBM does,
  so sums agree to the last bit); ``binary`` applies ``1 / (1 + exp(-sigmoid * raw))``,
  ranking objectives return the raw sum.

Per node the decision is pre-digested at conversion: the side NaN takes and the side a zero
takes are fixed per node, so an ordinary numerical node is one comparison and one branch-free
child pick; categorical and near-zero-threshold nodes take a second path.

>>> import lightgbm as lgb
>>> rng = np.random.default_rng(0)
>>> X = np.column_stack([rng.normal(size=500), rng.integers(0, 8, 500)])
>>> y = (X[:, 0] + (X[:, 1] % 2) > 0.5).astype(float)
>>> booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(X, y,
...     categorical_feature=[1]), num_boost_round=20)
>>> ensemble = TreeEnsemble.from_booster(booster)
>>> ensemble.n_trees, ensemble.n_features
(20, 2)
>>> Q = np.array([[0.3, 3.0], [np.nan, 1.0], [-2.0, 99.0], [0.1, -4.0]])
>>> bool(np.allclose(ensemble.predict(Q), booster.predict(Q), rtol=1e-12, atol=0))
True
"""

# mypy: ignore-errors
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError

#: LightGBM's kZeroThreshold: the float literal 1e-35f widened to double.
ZERO_THRESHOLD = float(np.float32(1e-35))

# Node flags. A plain numerical node has none of FLAG_CAT / FLAG_ZERO set.
FLAG_CAT = 1  # categorical split (bitset lookup)
FLAG_ZERO = 2  # numerical; |value| <= ZERO_THRESHOLD takes the FLAG_ZERO_LEFT side
FLAG_NAN_LEFT = 4  # numerical; NaN goes left
FLAG_ZERO_LEFT = 8  # numerical with FLAG_ZERO; a near-zero value goes left
_SLOW = FLAG_CAT | FLAG_ZERO

#: Objectives whose prediction is the raw sum; ``binary`` adds a sigmoid.
RAW_OBJECTIVES = ("lambdarank", "rank_xendcg")


@dataclass(frozen=True)
class TreeEnsemble:
    """A LightGBM model as flat arrays (``N`` nodes, ``L`` leaves, ``T`` trees over ``F``
    features).

    Node ``i``: ``feature[i]``, ``threshold[i]``, ``flags[i]``; its children are
    ``children[2 i]`` (left) and ``children[2 i + 1]`` (right), a node index, or ``~leaf``
    (negative) for a leaf. Categorical node ``i`` owns the 32-bit words
    ``cat_bits[cat_begin[i] : cat_end[i]]`` (category ``c`` is in the left set when bit
    ``c % 32`` of word ``c // 32`` is set). ``roots[t]`` is tree ``t``'s root, ``~leaf`` for a
    one-leaf tree. ``sigmoid`` is 0 for raw scores.
    """

    roots: npt.NDArray[np.int32]
    feature: npt.NDArray[np.int32]
    threshold: npt.NDArray[np.float64]
    flags: npt.NDArray[np.int8]
    children: npt.NDArray[np.int32]
    cat_begin: npt.NDArray[np.int32]
    cat_end: npt.NDArray[np.int32]
    cat_bits: npt.NDArray[np.uint32]
    leaf_value: npt.NDArray[np.float64]
    n_features: int
    sigmoid: float
    best_iteration: int

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    @classmethod
    def from_booster(cls, booster: Any) -> TreeEnsemble:
        """Convert a trained ``lightgbm.Booster`` (every tree; ``best_iteration`` kept as the
        default for :meth:`predict`). Raises ``ConfigError`` for what this scorer does not
        replay: several trees per iteration (multiclass), averaged output (random forest),
        linear trees, and objectives other than ``binary``, ``lambdarank``, ``rank_xendcg``."""
        return cls.from_dump(booster.dump_model(num_iteration=-1), int(booster.best_iteration))

    @classmethod
    def from_dump(cls, model: dict[str, Any], best_iteration: int = 0) -> TreeEnsemble:
        """Convert the dictionary ``Booster.dump_model()`` returns."""
        if int(model.get("num_tree_per_iteration", 1)) != 1:
            raise ConfigError("compiled scoring takes one tree per iteration (not multiclass)")
        if model.get("average_output"):
            raise ConfigError("compiled scoring does not average trees (boosting='rf')")
        objective = str(model.get("objective", "")).split()
        sigmoid = 0.0
        if objective and objective[0] == "binary":
            sigmoid = next(
                (float(p.split(":", 1)[1]) for p in objective[1:] if p.startswith("sigmoid:")),
                1.0,
            )
        elif not objective or objective[0] not in RAW_OBJECTIVES:
            raise ConfigError(
                f"compiled scoring replays objectives binary, {', '.join(RAW_OBJECTIVES)}; "
                f"the model's is {' '.join(objective) or 'unknown'!r}"
            )
        nodes: list[tuple[int, float, int, int, int]] = []  # feature, threshold, flags, l, r
        cats: list[list[int]] = []  # per node: its bitset words ([] for numerical)
        leaves: list[float] = []
        roots = [_flatten(t["tree_structure"], nodes, cats, leaves) for t in model["tree_info"]]
        n = len(nodes)
        words = [w for c in cats for w in c]
        ends = np.cumsum([len(c) for c in cats], dtype=np.int64)
        children = np.empty(2 * n, np.int32)
        children[0::2] = [nd[3] for nd in nodes]
        children[1::2] = [nd[4] for nd in nodes]
        return cls(
            roots=np.asarray(roots, np.int32),
            feature=np.asarray([nd[0] for nd in nodes], np.int32),
            threshold=np.asarray([nd[1] for nd in nodes], np.float64),
            flags=np.asarray([nd[2] for nd in nodes], np.int8),
            children=children,
            cat_begin=(ends - [len(c) for c in cats]).astype(np.int32),
            cat_end=ends.astype(np.int32),
            cat_bits=np.asarray(words, np.uint32),
            leaf_value=np.asarray(leaves, np.float64),
            n_features=int(model["max_feature_idx"]) + 1,
            sigmoid=sigmoid,
            best_iteration=int(best_iteration),
        )

    def n_used(self, num_iteration: int | None = None) -> int:
        """Trees used for ``num_iteration`` as ``Booster.predict`` reads it: ``None`` means
        the best iteration when there is one, ``<= 0`` all of them."""
        if num_iteration is None:
            num_iteration = self.best_iteration
        if num_iteration <= 0:
            return self.n_trees
        return min(int(num_iteration), self.n_trees)

    def predict(
        self,
        X: npt.ArrayLike,
        num_iteration: int | None = None,
        raw_score: bool = False,
    ) -> npt.NDArray[np.float64]:
        """Scores of rows ``X`` (``B x F``, read as float64), as ``Booster.predict``."""
        x = np.ascontiguousarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ConfigError(
                f"the model reads {self.n_features} features; got an array of shape {x.shape}"
            )
        return predict_kernel(
            x, self.roots[: self.n_used(num_iteration)], self.feature, self.threshold,
            self.flags, self.children, self.cat_begin, self.cat_end, self.cat_bits,
            self.leaf_value, 0.0 if raw_score else self.sigmoid,
        )  # fmt: skip

    def warm_up(self) -> None:
        """Compile the kernel (or load it from numba's on-disk cache) for these arrays' types,
        so that the first real request does not pay for it."""
        self.predict(np.zeros((1, self.n_features)))


def _flatten(
    node: dict[str, Any],
    nodes: list[tuple[int, float, int, int, int]],
    cats: list[list[int]],
    leaves: list[float],
) -> int:
    """Append ``node``'s subtree in pre-order; its index, or ``~leaf`` for a leaf."""
    if "split_index" not in node:
        if "leaf_coeff" in node:
            raise ConfigError("compiled scoring does not replay linear trees (linear_tree=True)")
        leaves.append(float(node["leaf_value"]))
        return ~(len(leaves) - 1)
    at = len(nodes)
    nodes.append((0, 0.0, 0, 0, 0))
    cats.append([])
    missing = node["missing_type"]
    default_left = bool(node["default_left"])
    if node["decision_type"] == "==":
        flags, threshold = FLAG_CAT, 0.0
        categories = [int(c) for c in str(node["threshold"]).split("||")]
        words = [0] * (max(categories) // 32 + 1)
        for c in categories:
            words[c // 32] |= 1 << (c % 32)
        cats[at] = words
    elif node["decision_type"] == "<=":
        threshold = float(node["threshold"])
        zero_left = threshold >= 0.0  # where an exact zero goes by comparison
        flags = 0
        if missing == "Zero":
            flags |= FLAG_ZERO | (FLAG_ZERO_LEFT if default_left else 0)
            nan_left = default_left  # NaN reads as 0, which is missing
        else:
            if missing == "NaN":
                nan_left = default_left
            else:  # NaN reads as 0
                nan_left = zero_left
            if -ZERO_THRESHOLD <= threshold < ZERO_THRESHOLD:
                # A tiny value reads as 0 and may land on the other side of the threshold.
                flags |= FLAG_ZERO | (FLAG_ZERO_LEFT if zero_left else 0)
        flags |= FLAG_NAN_LEFT if nan_left else 0
    else:
        raise ConfigError(f"unknown LightGBM decision type {node['decision_type']!r}")
    left = _flatten(node["left_child"], nodes, cats, leaves)
    right = _flatten(node["right_child"], nodes, cats, leaves)
    nodes[at] = (int(node["split_feature"]), threshold, flags, left, right)
    return at


@numba.njit(cache=True, nogil=True)
def _slow_left(v, node, threshold, flags, cat_begin, cat_end, cat_bits):  # type: ignore[no-untyped-def]
    """Whether value ``v`` goes left at a categorical or near-zero-sensitive node."""
    fl = flags[node]
    if fl & FLAG_CAT:
        begin = cat_begin[node]
        # NaN fails both comparisons; (-1, 0) truncates to category 0 as a C cast does.
        if v > -1.0 and v < 32.0 * (cat_end[node] - begin):
            c = np.int64(v)
            return (cat_bits[begin + (c >> 5)] >> np.uint32(c & 31)) & np.uint32(1) != 0
        return False
    if v != v:
        return fl & FLAG_NAN_LEFT != 0
    if -ZERO_THRESHOLD <= v <= ZERO_THRESHOLD:
        return fl & FLAG_ZERO_LEFT != 0
    return v <= threshold[node]


@numba.njit(cache=True, nogil=True)
def predict_kernel(  # type: ignore[no-untyped-def]
    x, roots, feature, threshold, flags, children, cat_begin, cat_end, cat_bits, leaf_value,
    sigmoid,
):
    """Sum of tree outputs per row of ``x`` (trees in order, from 0.0); the sigmoid of
    ``sigmoid * sum`` when ``sigmoid`` is not 0."""
    n_rows = x.shape[0]
    out = np.zeros(n_rows, dtype=np.float64)
    for t in range(len(roots)):
        root = roots[t]
        if root < 0:  # a one-leaf tree
            value = leaf_value[~root]
            for r in range(n_rows):
                out[r] += value
            continue
        for r in range(n_rows):
            row = x[r]
            node = root
            while node >= 0:
                v = row[feature[node]]
                fl = flags[node]
                if fl & _SLOW:
                    go_left = _slow_left(v, node, threshold, flags, cat_begin, cat_end, cat_bits)
                else:
                    # `v <= t` is false for NaN; FLAG_NAN_LEFT turns that into true.
                    go_left = (v <= threshold[node]) | ((v != v) & (fl & FLAG_NAN_LEFT != 0))
                node = children[2 * node + (0 if go_left else 1)]
            out[r] += leaf_value[~node]
    if sigmoid != 0.0:
        for r in range(n_rows):
            out[r] = 1.0 / (1.0 + np.exp(-sigmoid * out[r]))
    return out
