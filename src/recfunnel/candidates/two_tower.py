"""Two-tower retrieval with in-batch softmax and the logQ sampling-bias correction.

Yi et al. 2019, "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations" (RecSys): a user tower and an item tower, trained with in-batch negatives whose
logits are corrected by ``- log q(item)``, the item's sampling probability; Covington et al.
2016, "Deep Neural Networks for YouTube Recommendations" (RecSys) for towers over embedded
features, the user's watch history among them, and for the per-item bias of the softmax.
Dropping ids and attributes at random during training (as DropoutNet, Volkovs et al. 2017,
drops preference inputs) teaches both towers to work from what a new user or item has.

Torch is used only to train (imported inside :meth:`TwoTower._fit`); every vector, known or
new, comes from the same NumPy forward pass over the persisted weights, so a saved model gives
identical vectors after loading, and serving never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.candidates._tower_features import (
    FeatureEncoder,
    SegmentPopularity,
    align,
    segment_keys,
    stable_hash,
)
from recfunnel.core.errors import ConfigError, NotFittedError, UnknownIdError
from recfunnel.core.generator import (
    CandidateGenerator,
    ScoredList,
    SearchSpace,
    SideInfo,
    pair_dot,
)
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.topk import topk


class TwoTower(CandidateGenerator):
    """A user tower and an item tower, MLPs (one ReLU layer of ``hidden`` units; 0: linear)
    over concatenated embeddings, each ending in a ``dim``-vector.

    **Inputs.** User tower: the hashed user id (when ``use_ids`` is ``"users"`` or ``"both"``),
    the mean embedding of the items in the user's history (``history``; the item tower's id
    table when ``tie_history``, else a table of its own) with a "how much history" scalar, and
    the attributes of ``user_features``. Item tower: the hashed item id (``use_ids`` ``"items"``
    or ``"both"``) and the attributes of ``item_features``. Attribute kinds are inferred
    (:mod:`~recfunnel.candidates._tower_features`) or forced with ``feature_kinds`` (column ->
    kind, for both tables, e.g. ``{"zip_code": "prefix", "title": "skip"}``). Ids hash into
    ``id_buckets`` rows, attribute values into ``feature_buckets``.

    **Score.** logit(u, i) = <f(u), g(i)> / ``temperature`` + b(i). ``normalize`` L2-normalises
    the item vectors (``"items"``, default), both (``True``) or neither (``False``); the
    default leaves the user vector's length free, so a user the model knows little about can
    have a short vector and fall back on b(i). ``item_bias`` adds b(i), an extra output of the
    item tower (so new items get one from their attributes); it ends up close to log
    popularity. Served vectors are ``[f(u), temperature]`` and ``[g(i), b(i)]``, so
    ``user @ item = temperature * logit`` and ``metric`` is ``"dot"`` (``"cosine"`` with
    unit vectors and no bias).

    **Training** (Yi et al. 2019), one row per distinct (user, item) pair, batches of
    ``batch_size``: row b's positive is column b, the other rows' items are its negatives, every
    logit is corrected by - log q_j, q_j the item's share of training pairs (``logq``; without
    it popular items are over-penalised as negatives), and columns holding row b's own item
    again are removed. Row (u, i)'s history leaves i out and is ``max_history`` random draws
    from the rest; in a share ``short_history`` of rows it is cut to a log-uniform 0 to
    ``max_history`` items, taken from the user's *earliest* items when timestamps are known
    (``early_history``), which is what a new user's history is. Ids are zeroed in a share
    ``id_dropout`` of rows, and each attribute is blanked in a share ``feature_dropout`` of
    rows (as DropoutNet, Volkovs et al. 2017, drops inputs): the states new users and items are
    in; a high ``feature_dropout`` also stops attribute combinations from identifying training
    users, which made the model over-confident about new ones. Adam (lazy on embedding
    tables), learning rate ``lr``, at most ``epochs`` epochs and at least ``min_steps`` steps.
    With ``valid``, NDCG@``eval_k`` after each epoch; training stops ``patience`` epochs after
    the best one, whose weights are kept. With ``popularity_prior="auto"`` the epoch's score is
    the mean of the two NDCGs the prior is selected by (below: the validation users with no
    history, and with their own), each at its best weight, so that the epoch kept is good for
    users with no history too, not only for those with a few items. ``seed`` fixes every
    draw; torch runs on ``n_threads`` threads.

    **Popularity prior** (``popularity_prior``). The logQ correction takes each item's
    sampling share out of the training logits, and the learned scores keep only part of it (on
    MovieLens the bias b(i) comes out a shrunken copy of log q_i): for a user the model knows
    little about, ranking by them falls below plain popularity. Served scores add it back for
    such users: logit(u, i) + w(n_u) log q_i, n_u the user's history length, with
    w(0) = ``prior_[0]`` and w(n) = ``prior_[1]`` * (1 - log1p(min(n, max_history)) /
    log1p(max_history)) otherwise (0 from ``max_history`` items on: well-known users keep the
    trained scores). ``"auto"`` selects both weights on ``valid`` (for the epoch kept), each
    from a small grid by NDCG@``eval_k``: ``prior_[0]`` on users from their features alone
    (all their items the targets), ``prior_[1]`` on users with their training items as the
    history (without ``valid``: 0, the trained scores). Users of ``valid`` without training
    interactions are *new* validation users, and the cold weight is chosen on them alone when
    there are any: the tower was trained on the others' attributes with their items, which
    flatters it (else the histories of all validation users are hidden). A number sets
    both weights, a pair ``(cold, short)`` each; 0 turns the prior off (no extra vector
    component). Vectors get one more component: ``temperature * w(n_u)`` for users and
    log q_i for items (the floor, one interaction's share, for items without training
    interactions, added ones included), so serving stays one inner product.

    **Segment prior** (``segment_prior``). What users of the same gender and age group take is
    a better guess for a new user than what everyone takes: the prior's log q_i becomes
    log p_s(i), the popularity of item i within the user's *segment* s (the training users
    sharing their values of a few categorical attributes), smoothed towards global popularity
    with a pseudo-count of ``segment_smoothing`` times the number of training pairs
    (:class:`~recfunnel.candidates._tower_features.SegmentPopularity`); users of a segment
    unseen in training, or when there are none, keep log q_i. ``"auto"`` selects the
    attributes on ``valid`` after training, by greedy forward selection over the categorical
    user attributes (at most ``max_segments`` segments): an attribute joins while the best
    NDCG@``eval_k`` of the validation users with no history (features only, as above; the
    segment popularity of each counted without their own items) improves, each trial with its
    best smoothing of a small grid (``segment_smoothing="auto"``) and its best cold weight;
    both weights are then selected again for the segments chosen. A list of columns fixes the
    attributes, None turns segments off; without ``valid``, ``"auto"`` means none (and
    ``segment_smoothing="auto"`` 0.01). Both users with no history and users with a short one
    get their segment's prior. Vectors carry one prior component per segment and one for
    everyone: ``temperature * w(n_u)`` in the user's segment's slot, zeros elsewhere, and
    log p_s(i) in slot s of every item.

    **Cold start**: :meth:`user_vectors_from_features`, :meth:`item_vectors_from_features`,
    :meth:`recommend_new_users`, :meth:`add_items` (new items join an extra catalogue; the
    contract's ``recommend`` / ``similar_items`` keep the training item index).

    >>> m = InteractionMatrix.from_arrays(list("aabbccd"), list("xyxyzwx"))
    >>> model = TwoTower(dim=8, hidden=0, min_steps=50).fit(m)
    >>> model.recommend(["d"], n=1)[0].ids
    ('y',)
    """

    name: ClassVar[str] = "two_tower"
    search_space: ClassVar[SearchSpace] = {
        "temperature": ("float", 0.02, 0.5, "log"),
        "lr": ("float", 3e-4, 3e-2, "log"),
        "dim": ("categorical", [32, 64, 128]),
        "id_dropout": ("float", 0.0, 0.7, "linear"),
        "feature_dropout": ("float", 0.0, 0.8, "linear"),
        "batch_size": ("categorical", [512, 1024, 2048, 4096]),
    }

    def __init__(
        self,
        dim: int = 32,
        hidden: int = 256,
        temperature: float = 0.05,
        normalize: bool | str = "items",
        item_bias: bool = True,
        logq: bool = True,
        use_ids: bool | str = "items",
        history: bool = True,
        max_history: int = 32,
        short_history: float = 0.2,
        early_history: bool = True,
        tie_history: bool = True,
        id_dropout: float = 0.1,
        feature_dropout: float = 0.5,
        id_buckets: int = 1 << 16,
        feature_buckets: int = 1 << 14,
        feature_kinds: dict[str, str] | None = None,
        batch_size: int = 1024,
        epochs: int = 40,
        min_steps: int = 60,
        lr: float = 0.01,
        patience: int = 4,
        eval_k: int = 10,
        popularity_prior: float | str | Sequence[float] = "auto",
        segment_prior: str | Sequence[str] | None = "auto",
        segment_smoothing: float | str = "auto",
        max_segments: int = 64,
        seed: int = 0,
        n_threads: int = 1,
        verbose: bool = False,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.temperature = temperature
        self.normalize = normalize
        self.item_bias = item_bias
        self.logq = logq
        self.use_ids = use_ids
        self.history = history
        self.max_history = max_history
        self.short_history = short_history
        self.early_history = early_history
        self.tie_history = tie_history
        self.id_dropout = id_dropout
        self.feature_dropout = feature_dropout
        self.id_buckets = id_buckets
        self.feature_buckets = feature_buckets
        self.feature_kinds = feature_kinds
        self.batch_size = batch_size
        self.epochs = epochs
        self.min_steps = min_steps
        self.lr = lr
        self.patience = patience
        self.eval_k = eval_k
        self.popularity_prior = popularity_prior
        self.segment_prior = segment_prior
        self.segment_smoothing = segment_smoothing
        self.max_segments = max_segments
        self.seed = seed
        self.n_threads = n_threads
        self.verbose = verbose

    # ---- validation -----------------------------------------------------------------------
    def _check_params(self) -> None:
        positive = ("dim", "max_history", "id_buckets", "feature_buckets", "batch_size")
        for p in (*positive, "max_segments", "epochs", "eval_k", "n_threads"):
            if int(getattr(self, p)) <= 0:
                raise ConfigError(f"TwoTower.{p} must be positive, got {getattr(self, p)}")
        if self.hidden < 0 or self.min_steps < 0 or self.patience < 0:
            raise ConfigError("TwoTower.hidden, min_steps and patience must be >= 0")
        if not self.temperature > 0 or not self.lr > 0:
            raise ConfigError("TwoTower.temperature and lr must be > 0")
        if self.normalize not in (True, False, "both", "items", "users", "none"):
            raise ConfigError(
                f"TwoTower.normalize must be True, False, 'both', 'items', 'users' or 'none', "
                f"got {self.normalize!r}"
            )
        if self.use_ids not in (True, False, "both", "items", "users", "none"):
            raise ConfigError(
                f"TwoTower.use_ids must be True, False, 'both', 'items', 'users' or 'none', "
                f"got {self.use_ids!r}"
            )
        for p in ("id_dropout", "feature_dropout"):
            if not 0.0 <= getattr(self, p) < 1.0:
                raise ConfigError(f"TwoTower.{p} must be in [0, 1), got {getattr(self, p)}")
        if not 0.0 <= self.short_history <= 1.0:
            raise ConfigError(f"TwoTower.short_history must be in [0, 1], got {self.short_history}")
        self._prior_weights()
        seg = self.segment_prior
        if (isinstance(seg, str) and seg != "auto") or (
            seg is not None
            and not isinstance(seg, str)
            and not all(isinstance(c, str) for c in seg)
        ):
            raise ConfigError(
                f"TwoTower.segment_prior must be 'auto', None or a list of user attribute "
                f"columns, got {seg!r}"
            )
        sm = self.segment_smoothing
        if sm != "auto" and (isinstance(sm, str) or not (np.isfinite(sm) and sm > 0)):
            raise ConfigError(f"TwoTower.segment_smoothing must be 'auto' or > 0, got {sm!r}")

    def _prior_weights(self) -> npt.NDArray[np.float64] | None:
        """``popularity_prior`` as (cold, short) weights; None for ``"auto"``."""
        p = self.popularity_prior
        if isinstance(p, str):
            if p != "auto":
                raise ConfigError(f"TwoTower.popularity_prior must be 'auto' or >= 0, got {p!r}")
            return None
        w = np.broadcast_to(np.asarray(p, dtype=np.float64), (2,)).copy()
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ConfigError(f"TwoTower.popularity_prior must be 'auto' or >= 0, got {p!r}")
        return w

    def _prior_on(self) -> bool:
        """Whether vectors carry the popularity-prior component (see ``popularity_prior``)."""
        if hasattr(self, "prior_"):
            return self.prior_ is not None
        p = self.popularity_prior
        return isinstance(p, str) or bool(np.any(np.asarray(p, dtype=np.float64) != 0))

    @property
    def metric(self) -> str:
        """``"cosine"`` when vectors are unit-norm (``normalize`` without ``item_bias`` and
        without ``popularity_prior``), else ``"dot"``: with the bias, vectors are
        ``[u, temperature]`` and ``[v, b]``, and the prior adds a component."""
        unit = self._normalized("user") and self._normalized("item")
        return "cosine" if unit and not self.item_bias and not self._prior_on() else "dot"

    def _normalized(self, tower: str) -> bool:
        """Whether ``tower`` L2-normalises its output (see ``normalize``)."""
        return self.normalize in (True, "both", tower + "s")

    def _history_table(self) -> str:
        """The embeddings a user's history averages: the item tower's id table when
        ``tie_history`` (and item ids are used), else a table of its own."""
        return "item.id" if self.tie_history and self._ids_in("item") else "user.hist"

    def _ids_in(self, tower: str) -> bool:
        """Whether ``tower`` ("user" / "item") embeds its hashed ids (see ``use_ids``)."""
        return self.use_ids in (True, "both", tower + "s")

    # ---- fitting ----------------------------------------------------------------------------
    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        self._check_params()
        users = self.users_.ids.tolist()
        items = self.items_.ids.tolist()
        self.user_encoder_ = FeatureEncoder.fit(
            _rows_of(side.user_features, "user_id", users),
            "user_id",
            buckets=self.feature_buckets,
            overrides=self.feature_kinds,
        )
        self.item_encoder_ = FeatureEncoder.fit(
            _rows_of(side.item_features, "item_id", items),
            "item_id",
            buckets=self.feature_buckets,
            overrides=self.feature_kinds,
        )
        if not (self._ids_in("user") or self.history or self.user_encoder_.fields):
            raise ConfigError("TwoTower: the user tower has no input (ids, history or features)")
        if not (self._ids_in("item") or self.item_encoder_.fields):
            raise ConfigError("TwoTower: the item tower has no input (ids or item features)")
        u_tok, u_num = self.user_encoder_.encode(align(side.user_features, "user_id", users))
        i_tok, i_num = self.item_encoder_.encode(align(side.item_features, "item_id", items))

        early = _items_by_time(self.seen_, interactions) if self.early_history else None
        fixed = self._prior_weights()
        on = fixed is None or bool(np.any(fixed != 0))
        # While training, validation scores use the fixed weights ("auto": selected per epoch)
        # and global popularity (segments are chosen for the trained towers).
        self.prior_ = (fixed if fixed is not None else np.zeros(2)) if on else None
        self._set_segments(None)
        weights = _train(self, side.valid, early, u_tok, u_num, i_tok, i_num)
        # Rows no training row ever touched keep their random start; zeroing them makes an
        # unseen token (a new category value) count as nothing instead of as noise, and lets
        # the artefact store the trained rows only.
        u_bucket, u_keep = self._user_id_input()
        i_bucket, i_keep = self._item_id_input()
        used = {
            "user.id": u_bucket[u_keep > 0],
            "user.hist": i_bucket[i_keep > 0],
            "item.id": i_bucket[i_keep > 0],
            # Attributes of users without training interactions (new validation users) were
            # never trained on either: as for a new user, their unseen values count as nothing.
            "user.feat": np.r_[
                u_tok[u_keep > 0].ravel(), self.user_encoder_.encode(_BLANK)[0].ravel()
            ],
            "item.feat": np.r_[i_tok.ravel(), self.item_encoder_.encode(_BLANK)[0].ravel()],
        }
        for name, rows in used.items():
            if name in weights:
                keep = np.zeros(len(weights[name]), dtype=bool)
                keep[rows] = True
                weights[name][~keep] = 0.0
        self.weights_ = weights
        self._refresh_vectors(u_tok, u_num, i_tok, i_num)
        if on:
            valid = side.valid.to_csr() if side.valid is not None and len(side.valid) else None
            table = align(side.user_features, "user_id", users)
            segments = self._fit_segments(table, valid, fixed, u_tok, u_num)
            self._set_segments(segments)
            self._refresh_vectors(u_tok, u_num, i_tok, i_num, segments)
            if fixed is not None:
                self.prior_ = fixed
            elif valid is not None:
                self.prior_ = _select_prior(self, valid, u_tok, u_num, segments)[0]
            assert self.prior_ is not None  # on: fixed, selected or zeros
            self._log(
                f"popularity prior (cold, short): {self.prior_.tolist()}, segments "
                f"{self.segment_columns_.tolist()} ({len(self.segment_keys_)})"
            )
            self._refresh_vectors(u_tok, u_num, i_tok, i_num, segments)
        self.extra_item_ids_ = np.zeros(0, dtype=str)
        self.extra_item_vectors_ = np.zeros((0, self.item_vectors_.shape[1]), np.float32)

    def _fit_segments(
        self,
        table: pd.DataFrame,
        valid: sp.csr_matrix | None,
        fixed: npt.NDArray[np.float64] | None,
        u_tok: npt.NDArray[np.int64],
        u_num: npt.NDArray[np.float32],
    ) -> SegmentPopularity | None:
        """The segment prior of ``segment_prior`` / ``segment_smoothing`` (None: global
        popularity), selected on ``valid`` where they say ``"auto"``."""
        chosen = self.segment_prior
        if chosen is None or (chosen == "auto" and valid is None):
            return None
        smoothing = self.segment_smoothing
        if chosen != "auto":
            missing = [c for c in chosen if c not in table.columns]
            if missing:
                raise ConfigError(
                    f"TwoTower.segment_prior: column(s) {missing} not in user_features "
                    f"(it has {[c for c in table.columns if c != 'user_id']})"
                )
            if valid is None or smoothing != "auto":
                share = _DEFAULT_SMOOTHING if smoothing == "auto" else float(smoothing)
                return SegmentPopularity.fit(table, list(chosen), self.seen_, share)
        assert valid is not None
        if chosen == "auto":
            kinds = self.user_encoder_.fields
            candidates = list(dict.fromkeys(c for c, k in kinds if k == "categorical"))
            greedy = True
        else:
            candidates, greedy = list(chosen), False
        grid = _SMOOTHING_GRID if smoothing == "auto" else (float(smoothing),)
        weights = _PRIOR_GRID if fixed is None else (float(fixed[0]),)
        return _select_segments(
            self, valid, u_tok, u_num, table, candidates, greedy=greedy, smoothing=grid,
            weights=weights,
        )  # fmt: skip

    def _set_segments(self, segments: SegmentPopularity | None) -> None:
        """The served part of a segment prior: columns, keys, and the prior of an item without
        interactions in each slot (slot 0: everyone)."""
        if segments is None:
            self.segment_columns_ = np.zeros(0, dtype=str)
            self.segment_keys_ = np.zeros(0, dtype=str)
            self.prior_floor_ = np.array([np.log(1.0 / max(self.seen_.nnz, 1))])
        else:
            self.segment_columns_ = np.asarray(segments.columns, dtype=str)
            self.segment_keys_ = np.asarray(segments.keys, dtype=str)
            self.prior_floor_ = segments.floor()

    def _segments_of(self, table: pd.DataFrame) -> npt.NDArray[np.int64]:
        """The prior slot of each row of a user table: its segment, 0 if none matches."""
        if not len(self.segment_keys_):
            return np.zeros(len(table), dtype=np.int64)
        where = {k: s + 1 for s, k in enumerate(self.segment_keys_.tolist())}
        keys = segment_keys(table, self.segment_columns_.tolist())
        return np.fromiter((where.get(k, 0) for k in keys.tolist()), np.int64, len(keys))

    def _refresh_vectors(
        self,
        u_tok: npt.NDArray[np.int64],
        u_num: npt.NDArray[np.float32],
        i_tok: npt.NDArray[np.int64],
        i_num: npt.NDArray[np.float32],
        segments: SegmentPopularity | None = None,
    ) -> None:
        """Vectors of every known user and item, from the current weights (NumPy)."""
        if segments is None:
            prior, codes = self._log_q()[:, None], None
        else:
            prior, codes = segments.log_prior(), segments.codes
        self.item_vectors_ = self._item_forward(self._item_id_input(), i_tok, i_num, prior)
        self.user_vectors_ = self._user_forward(
            self._user_id_input(), self.seen_, u_tok, u_num, codes
        )

    def _user_id_input(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        # Users without training interactions have an untrained id embedding: leave it out.
        keep = (np.diff(self.seen_.indptr) > 0).astype(np.float32)
        return stable_hash(self.users_.ids, self.id_buckets, "user"), keep

    def _item_id_input(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        keep = (np.asarray(self.seen_.sum(axis=0)).ravel() > 0).astype(np.float32)
        return stable_hash(self.items_.ids, self.id_buckets, "item"), keep

    # ---- the NumPy forward pass (every served vector comes from here) ----------------------
    def _mlp(self, tower: str, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        # float64 throughout: a float32 BLAS product rounds differently for one row than for
        # many, and a user's vector must not depend on who else is in the batch.
        w = {
            k: v.astype(np.float64)
            for k, v in self.weights_.items()
            if k.startswith((f"{tower}.l0.", f"{tower}.out."))
        }
        h = x.astype(np.float64)
        if self.hidden:
            h = np.maximum(h @ w[f"{tower}.l0.weight"].T + w[f"{tower}.l0.bias"], 0.0)
        out = h @ w[f"{tower}.out.weight"].T + w[f"{tower}.out.bias"]
        vec, rest = out[:, : self.dim], out[:, self.dim :]
        if self._normalized(tower):
            vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        if self.item_bias and tower == "user":
            rest = np.full((len(vec), 1), self.temperature)
        return np.concatenate([vec, rest], axis=1).astype(np.float32)

    def _fields(self, tower: str, tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        table = self.weights_[f"{tower}.feat"]  # last row: zero padding
        emb = table[tokens]  # n x F x L x d
        count = np.maximum((tokens != self.feature_buckets).sum(axis=2, keepdims=True), 1)
        pooled: npt.NDArray[np.float32] = (emb.sum(axis=2) / count).astype(np.float32)
        return pooled.reshape(len(tokens), -1)

    def _item_forward(
        self,
        ids: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None,
        tokens: npt.NDArray[np.int64],
        numeric: npt.NDArray[np.float32],
        prior: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float32]:
        """``prior``: the rows' log popularity per prior slot (None: ``prior_floor_``, new
        items)."""
        n = len(tokens)
        parts = []
        if self._ids_in("item"):
            parts.append(_id_part(self.weights_["item.id"], ids, n))
        if self.item_encoder_.n_fields:
            parts.append(self._fields("item", tokens))
        parts.append(numeric)
        out = self._mlp("item", np.concatenate(parts, axis=1).astype(np.float32))
        if not self._prior_on():
            return out
        if prior is None:
            prior = np.broadcast_to(self.prior_floor_, (n, len(self.prior_floor_)))
        return np.concatenate([out, prior], axis=1).astype(np.float32)

    def _log_q(self) -> npt.NDArray[np.float64]:
        """Each training item's log share of the training pairs (the logQ of training), the
        share of one pair for items without any."""
        counts = np.diff(self.seen_.tocsc().indptr).astype(np.float64)
        out: npt.NDArray[np.float64] = np.log(np.maximum(counts, 1.0) / max(self.seen_.nnz, 1))
        return out

    def _prior_column(self, count: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``temperature * w(n)`` for history lengths ``count`` (see ``popularity_prior``)."""
        cold, short = self.prior_ if self.prior_ is not None else (0.0, 0.0)
        w = np.where(count > 0, short * (1.0 - history_scalar(count, self.max_history)), cold)
        out: npt.NDArray[np.float64] = self.temperature * w
        return out

    def _user_forward(
        self,
        ids: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None,
        history: sp.csr_matrix,
        tokens: npt.NDArray[np.int64],
        numeric: npt.NDArray[np.float32],
        segments: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.float32]:
        """``history``: rows x training items, binary (the items each row has); ``segments``:
        each row's prior slot (None: all 0, everyone)."""
        n = len(tokens)
        parts = []
        if self._ids_in("user"):
            parts.append(_id_part(self.weights_["user.id"], ids, n))
        if self.history:
            count = np.diff(history.indptr).astype(np.float64)
            mean = sp.diags(1.0 / np.maximum(count, 1.0)) @ history
            item_rows = self.weights_[self._history_table()][self._item_id_input()[0]]
            parts.append(np.asarray(mean @ item_rows, dtype=np.float32))
            parts.append(history_scalar(count, self.max_history)[:, None].astype(np.float32))
        if self.user_encoder_.n_fields:
            parts.append(self._fields("user", tokens))
        parts.append(numeric)
        out = self._mlp("user", np.concatenate(parts, axis=1).astype(np.float32))
        if not self._prior_on():
            return out
        slots = np.zeros((n, len(self.prior_floor_)))
        at = np.zeros(n, dtype=np.int64) if segments is None else segments
        slots[np.arange(n), at] = self._prior_column(np.diff(history.indptr).astype(np.float64))
        return np.concatenate([out, slots], axis=1).astype(np.float32)

    # ---- the contract -----------------------------------------------------------------------
    def user_vectors(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        self._check_fitted()
        return self.user_vectors_[np.asarray(users, dtype=np.int64)]

    def item_vectors(self) -> npt.NDArray[np.float32]:
        self._check_fitted()
        return self.item_vectors_

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return _dot(self.user_vectors_[users], self.item_vectors_)

    def _score_pairs(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        return pair_dot(self.user_vectors_, self.item_vectors_, users, items)

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        # Directions only: the bias says how popular an item is, not what it is like.
        vecs = self.item_vectors_[:, : self.dim]
        return _dot(vecs[items], vecs)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        state: dict[str, npt.NDArray[Any]] = {}
        for name, w in self.weights_.items():
            if name in _TABLES:  # embedding tables: their non-zero rows only
                rows = np.flatnonzero(np.any(w != 0, axis=1))
                state[f"rows:{name}"] = rows
                w = w[rows]
            state[f"w:{name}"] = w
        state.update(self.user_encoder_.to_arrays("user_enc:"))
        state.update(self.item_encoder_.to_arrays("item_enc:"))
        state["user_vectors"] = self.user_vectors_
        state["item_vectors"] = self.item_vectors_
        state["extra_item_ids"] = np.asarray(self.extra_item_ids_, dtype=str)
        state["extra_item_vectors"] = self.extra_item_vectors_
        if self.prior_ is not None:
            state["popularity_prior"] = np.asarray(self.prior_, dtype=np.float64)
            state["segment_columns"] = np.asarray(self.segment_columns_, dtype=str)
            state["segment_keys"] = np.asarray(self.segment_keys_, dtype=str)
            state["prior_floor"] = np.asarray(self.prior_floor_, dtype=np.float64)
        return state

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.weights_ = {}
        for key, w in arrays.items():
            if key.startswith("w:"):
                name = key[2:]
                if name in _TABLES:
                    full = np.zeros((_table_rows(self, name), w.shape[1]), dtype=w.dtype)
                    full[arrays[f"rows:{name}"]] = w
                    w = full
                self.weights_[name] = w
        self.user_encoder_ = FeatureEncoder.from_arrays(arrays, "user_enc:", self.feature_buckets)
        self.item_encoder_ = FeatureEncoder.from_arrays(arrays, "item_enc:", self.feature_buckets)
        self.user_vectors_ = arrays["user_vectors"]
        self.item_vectors_ = arrays["item_vectors"]
        self.extra_item_ids_ = arrays["extra_item_ids"].astype(str)
        self.extra_item_vectors_ = arrays["extra_item_vectors"]
        prior = arrays.get("popularity_prior")
        self.prior_ = None if prior is None else np.asarray(prior, dtype=np.float64)
        self._set_segments(None)
        if "prior_floor" in arrays:
            self.segment_columns_ = arrays["segment_columns"].astype(str)
            self.segment_keys_ = arrays["segment_keys"].astype(str)
            self.prior_floor_ = arrays["prior_floor"].astype(np.float64)

    # ---- cold start -------------------------------------------------------------------------
    def user_vectors_from_features(
        self,
        user_features: pd.DataFrame | None,
        history: Sequence[Sequence[str]] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Vectors of users from their attributes (one row each, in order) and optionally the
        items they have interacted with so far (``history[r]`` for row r, possibly empty).

        The id input is left out (a new user's id was never trained), whatever ``user_id`` the
        table holds. History items without training interactions (added items included) are
        ignored: their embeddings were never trained. ``user_features`` may be None
        when ``history`` is given (no attributes known).
        """
        self._check_fitted()
        if user_features is None:
            if history is None:
                raise ConfigError("give user_features, history or both")
            user_features = pd.DataFrame(index=range(len(history)))
        n = len(user_features)
        if history is not None and len(history) != n:
            raise ConfigError(f"history has {len(history)} rows, user_features has {n}")
        table = user_features.reset_index(drop=True)
        tokens, numeric = self.user_encoder_.encode(table)
        return self._user_forward(
            None, self._history_matrix(history, n), tokens, numeric, self._segments_of(table)
        )

    def item_vectors_from_features(self, item_features: pd.DataFrame) -> npt.NDArray[np.float32]:
        """Vectors of items from their attributes alone (one row each, in order); the id input
        is left out, as for an item never seen in training."""
        self._check_fitted()
        tokens, numeric = self.item_encoder_.encode(item_features.reset_index(drop=True))
        return self._item_forward(None, tokens, numeric)

    def add_items(self, item_features: pd.DataFrame) -> TwoTower:
        """Make new items recommendable without retraining: each row (``item_id`` column) gets a
        vector from its attributes and joins the *extra catalogue*.

        The contract's ``recommend`` / ``score_users`` / ``similar_items`` rank the fixed
        training index ``items_`` (scores are ``n_users x n_items`` in its coordinates), so added
        items appear only where the catalogue is open: :meth:`recommend_new_users`,
        :meth:`recommend_catalogue` and :meth:`similar_catalogue`, which rank training items
        followed by added items (:meth:`catalogue_ids`). Adding an id again replaces its
        vector; ids of training items are refused (they already have a trained vector).
        """
        self._check_fitted()
        if "item_id" not in item_features.columns:
            raise ConfigError("add_items needs an 'item_id' column")
        ids = item_features["item_id"].astype(str).to_numpy()
        known = self.items_.encode(ids, missing="ignore") >= 0
        if known.any():
            raise ConfigError(f"items already in the training catalogue: {ids[known][:5].tolist()}")
        if len(set(ids.tolist())) != len(ids):
            raise ConfigError("add_items: duplicate item_id in the table")
        vectors = self.item_vectors_from_features(item_features)
        keep = ~np.isin(self.extra_item_ids_, ids)
        self.extra_item_ids_ = np.concatenate([self.extra_item_ids_[keep], ids]).astype(str)
        self.extra_item_vectors_ = np.concatenate([self.extra_item_vectors_[keep], vectors]).astype(
            np.float32
        )
        return self

    def catalogue_ids(self) -> npt.NDArray[np.str_]:
        """Training items (in index order), then added items (in order of addition)."""
        self._check_fitted()
        return np.concatenate([self.items_.ids.astype(str), self.extra_item_ids_]).astype(str)

    def _catalogue_vectors(self) -> npt.NDArray[np.float32]:
        return np.concatenate([self.item_vectors_, self.extra_item_vectors_]).astype(np.float32)

    def recommend_new_users(
        self,
        user_features: pd.DataFrame | None,
        n: int = 10,
        history: Sequence[Sequence[str]] | None = None,
        *,
        exclude_history: bool = True,
    ) -> list[ScoredList]:
        """Top ``n`` of the whole catalogue (training + added items) for users never seen in
        training, from their attributes and their first interactions (see
        :meth:`user_vectors_from_features`); items in their history are not recommended."""
        vectors = self.user_vectors_from_features(user_features, history)
        exclude = history if (exclude_history and history is not None) else None
        return self._rank_catalogue(_dot(vectors, self._catalogue_vectors()), n, exclude)

    def recommend_catalogue(
        self, user_ids: Sequence[str], n: int = 10, *, exclude_seen: bool = True
    ) -> list[ScoredList]:
        """As ``recommend`` for known users, over the whole catalogue (added items included)."""
        self._check_fitted()
        users = self.users_.encode(user_ids)
        scores = _dot(self.user_vectors_[users], self._catalogue_vectors())
        seen = None
        if exclude_seen:
            seen = [self.items_.decode(self.seen_[u].indices).tolist() for u in users]
        return self._rank_catalogue(scores, n, seen)

    def similar_catalogue(self, item_ids: Sequence[str], n: int = 10) -> list[ScoredList]:
        """The ``n`` most similar catalogue items (training or added) to each training or added
        item id; the item itself is excluded."""
        self._check_fitted()
        cat = self.catalogue_ids()
        where = {s: i for i, s in enumerate(cat.tolist())}
        missing = [i for i in item_ids if str(i) not in where]
        if missing:
            raise UnknownIdError(f"{len(missing)} id(s) not in the catalogue, e.g. {missing[:5]}")
        vectors = self._catalogue_vectors()[:, : self.dim]
        rows = np.array([where[str(i)] for i in item_ids], dtype=np.int64)
        return self._rank_catalogue(_dot(vectors[rows], vectors), n, [[str(i)] for i in item_ids])

    def _history_matrix(self, history: Sequence[Sequence[str]] | None, n: int) -> sp.csr_matrix:
        rows, cols = [], []
        trained = self._item_id_input()[1] > 0  # catalogue items with training interactions
        for r, items in enumerate(history or []):
            idx = self.items_.encode([str(i) for i in items], missing="ignore")
            idx = np.unique(idx[idx >= 0])
            idx = idx[trained[idx]]
            rows.append(np.full(len(idx), r))
            cols.append(idx)
        r_ = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c_ = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        return sp.csr_matrix((np.ones(len(r_), np.float32), (r_, c_)), shape=(n, len(self.items_)))

    def _rank_catalogue(
        self,
        scores: npt.NDArray[np.float32],
        n: int,
        exclude: Sequence[Sequence[str]] | None,
    ) -> list[ScoredList]:
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        cat = self.catalogue_ids()
        scores = np.array(scores, dtype=np.float32, copy=True)
        if exclude is not None:
            where = {s: i for i, s in enumerate(cat.tolist())}
            for r, items in enumerate(exclude):
                cols = [where[str(i)] for i in items if str(i) in where]
                scores[r, cols] = -np.inf
        idx, val = topk(scores, n)
        return [
            ScoredList(tuple(cat[i[i >= 0]].tolist()), tuple(float(x) for x in v[i >= 0]))
            for i, v in zip(idx, val, strict=True)
        ]

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if not hasattr(self, "weights_"):
            raise NotFittedError("TwoTower is not fitted: call fit() or load() first")

    def _log(self, message: str) -> None:
        if self.verbose:
            print(f"[two_tower {time.strftime('%H:%M:%S')}] {message}", flush=True)


_TABLES = ("user.id", "user.hist", "user.feat", "item.id", "item.feat")
#: A table row with every attribute missing.
_BLANK = pd.DataFrame(index=[0])


def _table_rows(model: TwoTower, name: str) -> int:
    # Attribute tables have a final all-zero padding row.
    return model.feature_buckets + 1 if name.endswith(".feat") else model.id_buckets


def _dot(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``a bᵀ`` from a float64 product rounded to float32, for the same reason as in
    :meth:`TwoTower._mlp`: scores must not depend on the batch."""
    return (a.astype(np.float64) @ b.T.astype(np.float64)).astype(np.float32)


def history_scalar(count: npt.NDArray[np.float64], cap: int) -> npt.NDArray[np.float64]:
    """How much history a row has, in [0, 1]: log1p(min(count, cap)) / log1p(cap). Tells the
    tower how far to trust the (noisy, for a few items) history mean."""
    out: npt.NDArray[np.float64] = np.log1p(np.minimum(count, cap)) / np.log1p(cap)
    return out


def _id_part(
    table: npt.NDArray[np.float32],
    ids: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None,
    n: int,
) -> npt.NDArray[np.float32]:
    # No id (a new user or item) is the zero vector, as in training rows whose id was dropped.
    if ids is None:
        return np.zeros((n, table.shape[1]), np.float32)
    buckets, keep = ids
    return (table[buckets] * keep[:, None]).astype(np.float32)


def _rows_of(table: pd.DataFrame | None, key: str, ids: Sequence[str]) -> pd.DataFrame | None:
    """The rows of ``table`` for training entities: kinds and statistics come from them."""
    if table is None:
        return None
    return align(table, key, ids)


# ---- training (torch, imported here only) -------------------------------------------------------
def in_batch_softmax_loss(
    user_vecs: Any,
    item_vecs: Any,
    items: Any,
    log_q: Any | None,
    temperature: float,
) -> Any:
    """Mean cross-entropy of in-batch softmax with the logQ correction (Yi et al. 2019, eq. 3).

    Row b's positive is column b. logits[b, j] = <u_b, v_j> / temperature - log q_j, where
    ``log_q[j]`` is the log sampling probability of column j's item (None: no correction);
    columns j != b holding the same item as row b (``items[j] == items[b]``) are removed, since
    they are row b's positive again, not a negative. Torch tensors in, scalar tensor out.
    """
    import torch
    import torch.nn.functional as F

    logits = user_vecs @ item_vecs.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    same = items[:, None] == items[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(items)))


def _items_by_time(
    seen: sp.csr_matrix, interactions: InteractionMatrix
) -> npt.NDArray[np.int64] | None:
    """``seen.indices`` reordered within each user by first interaction time (None when a
    timestamp is missing)."""
    ts = interactions.timestamp
    if len(ts) == 0 or np.isnan(ts).any():
        return None
    frame = pd.DataFrame({"u": interactions.user, "i": interactions.item, "t": ts})
    # Grouping sorts by (user, item): the order of a CSR with sorted indices.
    first = frame.groupby(["u", "i"], sort=True)["t"].min().to_numpy()
    users = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    ordered: npt.NDArray[np.int64] = seen.indices[np.lexsort((first, users))].astype(np.int64)
    return ordered


def _train(
    model: TwoTower,
    valid: InteractionMatrix | None,
    early: npt.NDArray[np.int64] | None,
    u_tok: npt.NDArray[np.int64],
    u_num: npt.NDArray[np.float32],
    i_tok: npt.NDArray[np.int64],
    i_num: npt.NDArray[np.float32],
) -> dict[str, npt.NDArray[np.float32]]:
    """Fit the towers; returns the weights (best validation epoch when ``valid`` is given)."""
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(model.n_threads)
    try:
        return _train_loop(model, valid, early, u_tok, u_num, i_tok, i_num)
    finally:
        torch.set_num_threads(previous_threads)


def _init_weights(
    model: TwoTower, u_tok: npt.NDArray[np.int64], u_num: npt.NDArray[np.float32],
    i_tok: npt.NDArray[np.int64], i_num: npt.NDArray[np.float32], gen: Any,
) -> dict[str, Any]:  # fmt: skip
    import torch

    d = model.dim
    params: dict[str, Any] = {}

    def table(name: str, rows: int, pad: bool) -> None:
        w = torch.randn(rows + pad, d, generator=gen) * 0.1
        if pad:
            w[-1] = 0.0  # the padding row of multi-token fields stays zero (padding_idx)
        params[name] = w

    def linear(name: str, n_in: int, n_out: int) -> None:
        bound = 1.0 / np.sqrt(max(n_in, 1))  # torch's nn.Linear default range
        params[f"{name}.weight"] = (torch.rand(n_out, n_in, generator=gen) * 2 - 1) * bound
        params[f"{name}.bias"] = (torch.rand(n_out, generator=gen) * 2 - 1) * bound

    widths = {}
    for tower, tok, num in (("user", u_tok, u_num), ("item", i_tok, i_num)):
        width = num.shape[1]
        if model._ids_in(tower):
            table(f"{tower}.id", model.id_buckets, pad=False)
            width += d
        if tower == "user" and model.history:
            if model._history_table() == "user.hist":
                table("user.hist", model.id_buckets, pad=False)
            width += d + 1
        if tok.shape[1]:
            table(f"{tower}.feat", model.feature_buckets, pad=True)
            width += d * tok.shape[1]
        widths[tower] = width
    for tower, width in widths.items():
        if model.hidden:
            linear(f"{tower}.l0", width, model.hidden)
            width = model.hidden
        # The item tower's extra output is its bias (log-popularity-like, from id or features).
        linear(f"{tower}.out", width, model.dim + int(model.item_bias and tower == "item"))
    for p in params.values():
        p.requires_grad_(True)
    return params


class _Adam:
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam`` computes it, lazy on sparse gradients
    (embedding tables: only the rows in the batch move, as ``torch.optim.SparseAdam``).

    Written out because creating the first ``torch.optim`` optimiser imports ``torch._dynamo``,
    which costs seconds; the update itself is a few tensor operations.
    """

    def __init__(
        self, params: list[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        import torch

        self.params = params
        self.lr = lr
        self.betas = betas
        self.eps = 1e-8
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self) -> None:
        import torch

        self.t += 1
        b1, b2 = self.betas
        step = self.lr / (1 - b1**self.t)
        root_bc2 = float(np.sqrt(1 - b2**self.t))
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v, strict=True):
                g = p.grad
                if g is None:
                    continue
                p.grad = None
                if g.is_sparse:
                    g = g.coalesce()
                    rows, val = g.indices()[0], g.values()
                    m_rows = m[rows].mul_(b1).add_(val, alpha=1 - b1)
                    v_rows = v[rows].mul_(b2).addcmul_(val, val, value=1 - b2)
                    m[rows], v[rows] = m_rows, v_rows
                    p[rows] -= step * m_rows / (v_rows.sqrt() / root_bc2 + self.eps)
                else:
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    p.addcdiv_(m, v.sqrt().div_(root_bc2).add_(self.eps), value=-step)


def _validation_ndcg(model: TwoTower, valid: sp.csr_matrix) -> float:
    """Mean NDCG@eval_k over the users with validation items, training items masked: the
    protocol of :func:`recfunnel.evaluation.harness.evaluate`, in plain NumPy."""
    users = np.flatnonzero(np.diff(valid.indptr))
    total = 0.0
    for ub in _chunks(users, valid.shape[1]):
        scores = _dot(model.user_vectors_[ub], model.item_vectors_)
        total += _ndcg_sum(scores, model.seen_[ub], valid[ub], model.eval_k)
    return total / max(len(users), 1)


def _chunks(users: npt.NDArray[np.int64], n_items: int) -> list[npt.NDArray[np.int64]]:
    step = max(1, (1 << 22) // max(n_items, 1))
    return [users[start : start + step] for start in range(0, len(users), step)]


def _ndcg_sum(
    scores: npt.NDArray[np.float32], mask: sp.csr_matrix | None, rel: sp.csr_matrix, k: int
) -> float:
    """Sum over rows of NDCG@k of ``scores`` (items of ``mask`` excluded) against ``rel``."""
    from recfunnel.evaluation.metrics import ranking_metrics

    scores = np.array(scores, dtype=np.float32, copy=True)
    if mask is not None:
        scores[np.repeat(np.arange(len(scores)), np.diff(mask.indptr)), mask.indices] = -np.inf
    idx, _ = topk(scores, k)
    dense = rel.toarray()
    ranked = np.where(idx >= 0, np.take_along_axis(dense, np.maximum(idx, 0), axis=1), 0.0)
    n_rel = np.diff(rel.indptr)
    return float(ranking_metrics(ranked, n_rel, [f"ndcg@{k}"])[f"ndcg@{k}"].sum())


#: Candidate weights of the popularity prior (see ``TwoTower.popularity_prior``), up to where
#: the prior alone decides: for a new user a segment's popularity can outweigh the tower.
_PRIOR_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0)
#: Candidate smoothing of the segment prior, shares of the training pairs (``"auto"``).
_SMOOTHING_GRID = (0.003, 0.01, 0.03, 0.1)
#: ``segment_smoothing="auto"`` where nothing selects it (no validation data).
_DEFAULT_SMOOTHING = 0.01


class _PriorRows:
    """Validation users of ``valid`` in chunks, with their tower logits (without the prior) and
    targets under the two protocols of :func:`_select_prior`.

    Cold: users from their attributes alone (no id, empty history), every item of theirs
    (training and validation) a target, nothing masked. The users are the *new* validation
    users (validation items, no training interactions: the tower never saw them, as it never
    sees a real new user) where there are any; else every validation user, which flatters the
    tower: it was trained on their attributes with their training items, and attributes such as
    a zip code nearly identify a user. Short: users with training interactions, their vectors
    from those (masked), the validation items the targets (every validation user, if none has
    training interactions).
    """

    def __init__(
        self, model: TwoTower, valid: sp.csr_matrix, u_tok: npt.NDArray[np.int64],
        u_num: npt.NDArray[np.float32], short: bool = True,
    ) -> None:  # fmt: skip
        self.model = model
        users = np.flatnonzero(np.diff(valid.indptr))
        known = np.diff(model.seen_.indptr)[users] > 0
        self.cold_users = users[~known] if (~known).any() else users
        self.short_users = users[known] if known.any() else users
        n_items = valid.shape[1]
        # The tower's part of the vectors, without the prior components.
        width = model.item_vectors_.shape[1] - (len(model.prior_floor_) if model._prior_on() else 0)
        items = model.item_vectors_[:, :width]
        t = model.temperature
        self.cold: list[dict[str, Any]] = []
        for ub in _chunks(self.cold_users, n_items):
            blank = sp.csr_matrix((len(ub), n_items), dtype=np.float32)
            vecs = model._user_forward(None, blank, u_tok[ub], u_num[ub])[:, :width]
            self.cold.append(
                {
                    "users": ub,
                    "logits": _dot(vecs, items).astype(np.float64) / t,
                    "targets": ((model.seen_[ub] + valid[ub]) > 0).astype(np.float32).tocsr(),
                }
            )
        self.short: list[dict[str, Any]] = []
        for ub in _chunks(self.short_users, n_items) if short else []:
            seen = model.seen_[ub]
            count = np.diff(seen.indptr).astype(np.float64)
            vecs = model.user_vectors_[ub][:, :width]
            self.short.append(
                {
                    "users": ub,
                    "logits": _dot(vecs, items).astype(np.float64) / t,
                    "scale": (1.0 - history_scalar(count, model.max_history))[:, None],
                    "seen": seen,
                    "targets": valid[ub],
                }
            )

    def log_prior(
        self, chunk: dict[str, Any], segments: SegmentPopularity | None
    ) -> npt.NDArray[np.float64]:
        """Each user's prior row: global log q, or their segment's without their own items."""
        if segments is None:
            return self.model._log_q()[None, :]
        return segments.loo_log_prior(chunk["users"], self.model.seen_)

    def cold_ndcg(
        self, segments: SegmentPopularity | None, weights: Sequence[float]
    ) -> npt.NDArray[np.float64]:
        """Mean cold NDCG@eval_k for each prior weight."""
        totals = np.zeros(len(weights))
        for chunk in self.cold:
            prior = self.log_prior(chunk, segments)
            for j, w in enumerate(weights):
                scores = (chunk["logits"] + w * prior).astype(np.float32)
                totals[j] += _ndcg_sum(scores, None, chunk["targets"], self.model.eval_k)
        return totals / max(len(self.cold_users), 1)

    def short_ndcg(
        self, segments: SegmentPopularity | None, weights: Sequence[float]
    ) -> npt.NDArray[np.float64]:
        """Mean short-history NDCG@eval_k for each prior weight (scaled as in serving)."""
        totals = np.zeros(len(weights))
        for chunk in self.short:
            prior = chunk["scale"] * self.log_prior(chunk, segments)
            for j, w in enumerate(weights):
                scores = (chunk["logits"] + w * prior).astype(np.float32)
                totals[j] += _ndcg_sum(scores, chunk["seen"], chunk["targets"], self.model.eval_k)
        return totals / max(len(self.short_users), 1)


def _select_prior(
    model: TwoTower, valid: sp.csr_matrix, u_tok: npt.NDArray[np.int64],
    u_num: npt.NDArray[np.float32], segments: SegmentPopularity | None = None,
) -> tuple[npt.NDArray[np.float64], float]:  # fmt: skip
    """(cold, short) weights of the popularity prior with the best validation NDCG@eval_k.

    The protocols are :class:`_PriorRows`'; in the short one the weight enters scaled by
    1 - history_scalar(n), as in serving. The prior is global popularity, or the users'
    ``segments`` (each user's counted without their own items). The first best weight of the
    grid wins. Returns the weights and the mean of the two best NDCGs (the early-stopping
    criterion).
    """
    rows = _PriorRows(model, valid, u_tok, u_num)
    grid = _PRIOR_GRID
    ndcg = np.stack([rows.cold_ndcg(segments, grid), rows.short_ndcg(segments, grid)])
    best = np.asarray(grid)[np.argmax(ndcg, axis=1)]
    model._log(
        f"prior selection, valid ndcg (cold, {len(rows.cold_users)} users | short, "
        f"{len(rows.short_users)}) by weight: "
        + " ".join(f"{w:g}:{a:.4f}|{b:.4f}" for w, a, b in zip(grid, *ndcg, strict=True))
    )
    return best.astype(np.float64), float(ndcg.max(axis=1).mean())


def _select_segments(
    model: TwoTower, valid: sp.csr_matrix, u_tok: npt.NDArray[np.int64],
    u_num: npt.NDArray[np.float32], table: pd.DataFrame, candidates: Sequence[str], *,
    greedy: bool, smoothing: Sequence[float], weights: Sequence[float],
) -> SegmentPopularity | None:  # fmt: skip
    """The segment prior with the best cold NDCG@eval_k on the validation users (each at its
    best weight of ``weights``), or None where global popularity does as well.

    ``greedy``: forward selection, adding the attribute of ``candidates`` (with the smoothing of
    ``smoothing``) that helps most while one helps and at most ``max_segments`` segments
    result; else ``candidates`` together, only the smoothing selected (and returned whatever
    its score). Segment popularity is
    counted from training interactions only, each validation user's without their own.
    """
    rows = _PriorRows(model, valid, u_tok, u_num, short=False)
    best_score = float(rows.cold_ndcg(None, weights).max())
    best: SegmentPopularity | None = None
    chosen: list[str] = []
    trail = [f"none:{best_score:.4f}"]
    while True:
        trials = [[*chosen, c] for c in candidates if c not in chosen] if greedy else [candidates]
        scored: list[tuple[float, SegmentPopularity]] = []
        for cols in trials:
            if greedy and len(set(segment_keys(table, cols).tolist())) > model.max_segments:
                continue
            for share in smoothing:
                seg = SegmentPopularity.fit(table, cols, model.seen_, share)
                scored.append((float(rows.cold_ndcg(seg, weights).max()), seg))
                trail.append(f"{'+'.join(cols)}@{share:g}:{scored[-1][0]:.4f}")
        if not scored:
            break
        score, seg = max(scored, key=lambda t: t[0])  # the first best wins
        if not greedy:  # the attributes were given: only the smoothing is selected
            best_score, best = score, seg
            break
        if score <= best_score:
            break
        best_score, best, chosen = score, seg, list(seg.columns)
    model._log(
        f"segment selection, valid cold ndcg ({len(rows.cold_users)} users): " + " ".join(trail)
    )
    return best


def _train_loop(
    model: TwoTower,
    valid: InteractionMatrix | None,
    early: npt.NDArray[np.int64] | None,
    u_tok: npt.NDArray[np.int64],
    u_num: npt.NDArray[np.float32],
    i_tok: npt.NDArray[np.int64],
    i_num: npt.NDArray[np.float32],
) -> dict[str, npt.NDArray[np.float32]]:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(model.seed)
    gen = torch.Generator().manual_seed(int(model.seed))
    params = _init_weights(model, u_tok, u_num, i_tok, i_num, gen)
    optimiser = _Adam(list(params.values()), lr=model.lr)

    seen = model.seen_
    pair_u = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    pair_i = seen.indices.astype(np.int64)
    n_pairs = len(pair_i)
    # logQ: an item's chance of filling a batch slot is its share of training pairs.
    log_q = torch.from_numpy(np.log(np.maximum(np.bincount(pair_i), 1) / n_pairs))
    degree = np.diff(seen.indptr)
    u_bucket, _ = model._user_id_input()
    i_bucket, _ = model._item_id_input()
    hist_bucket = torch.from_numpy(i_bucket)
    t = {"u_bucket": torch.from_numpy(u_bucket), "i_bucket": hist_bucket}
    u_missing = model.user_encoder_.encode(_BLANK)
    i_missing = model.item_encoder_.encode(_BLANK)
    # Dropping an id only teaches something when the tower has other inputs.
    drop_u = model.id_dropout if (model.history or u_tok.shape[1] or u_num.shape[1]) else 0.0
    drop_i = model.id_dropout if (i_tok.shape[1] or i_num.shape[1]) else 0.0
    h = model.max_history
    hist_table = model._history_table()
    pad = model.feature_buckets

    def attributes(
        tok: npt.NDArray[np.int64],
        num: npt.NDArray[np.float32],
        missing: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
        rows: npt.NDArray[np.int64],
    ) -> tuple[Any, Any]:
        # Each attribute of a row is blanked ("missing") with probability feature_dropout, so
        # a new user or item with partial attributes is no stranger to the tower.
        tok, num = tok[rows], num[rows]
        if model.feature_dropout > 0:
            drop = rng.random((len(rows), tok.shape[1])) < model.feature_dropout
            tok = np.where(drop[:, :, None], missing[0][0][None], tok)
            k = num.shape[1] // 2
            drop = rng.random((len(rows), k)) < model.feature_dropout
            num = np.where(np.concatenate([drop, drop], axis=1), missing[1][0][None], num)
        return torch.from_numpy(tok), torch.from_numpy(num.astype(np.float32))

    def fields(tower: str, tokens: Any) -> Any:
        emb = F.embedding(tokens, params[f"{tower}.feat"], padding_idx=pad, sparse=True)
        count = (tokens != pad).sum(dim=2, keepdim=True).clamp(min=1)
        return (emb.sum(dim=2) / count).reshape(len(tokens), -1)

    def mlp(tower: str, x: Any) -> Any:
        # As TwoTower._mlp: [u, temperature] . [v, b] / temperature = u . v / temperature + b.
        if model.hidden:
            x = torch.relu(F.linear(x, params[f"{tower}.l0.weight"], params[f"{tower}.l0.bias"]))
        out = F.linear(x, params[f"{tower}.out.weight"], params[f"{tower}.out.bias"])
        vec, rest = out[:, : model.dim], out[:, model.dim :]
        if model._normalized(tower):
            vec = F.normalize(vec, dim=1, eps=1e-12)
        if model.item_bias and tower == "user":
            rest = torch.full((len(vec), 1), float(model.temperature))
        return torch.cat([vec, rest], dim=1)

    def user_tower(bu: npt.NDArray[np.int64], bi: npt.NDArray[np.int64]) -> Any:
        b = len(bu)
        parts = []
        if model._ids_in("user"):
            keep = torch.from_numpy((rng.random(b) >= drop_u).astype(np.float32))
            idv = F.embedding(t["u_bucket"][bu], params["user.id"], sparse=True)
            parts.append(idv * keep[:, None])
        if model.history:
            # h draws (with replacement) from the user's items other than the target, of which
            # the first m count; m is log-uniform in 0..h in a share short_history of the rows,
            # so that users with 0, 3 or 10 known items are trained for too.
            deg = degree[bu]
            pos = seen.indptr[bu][:, None] + (rng.random((b, h)) * deg[:, None]).astype(np.int64)
            hist_items = pair_i[np.minimum(pos, n_pairs - 1)]
            m = np.floor(np.exp(rng.random(b) * np.log(h + 1))).astype(np.int64) - 1
            short = rng.random(b) < model.short_history
            m = np.where(short, m, h)
            ok = (hist_items != bi[:, None]) & (np.arange(h)[None, :] < m[:, None])
            if early is not None:
                # A new user's few items are their first ones: short histories are the user's
                # earliest m items (the target left out), not a random few.
                slot = np.arange(h)[None, :]
                first_items = early[seen.indptr[bu][:, None] + np.minimum(slot, deg[:, None] - 1)]
                ok_first = (slot < deg[:, None]) & (first_items != bi[:, None])
                ok_first &= np.cumsum(ok_first, axis=1) <= m[:, None]
                hist_items = np.where(short[:, None], first_items, hist_items)
                ok = np.where(short[:, None], ok_first, ok)
            ok &= deg[:, None] > 0
            weight = ok / np.maximum(ok.sum(axis=1, keepdims=True), 1)
            emb = F.embedding(hist_bucket[hist_items], params[hist_table], sparse=True)
            parts.append((emb * torch.from_numpy(weight.astype(np.float32))[..., None]).sum(1))
            nominal = np.minimum(m, np.maximum(deg - 1, 0))
            parts.append(torch.from_numpy(history_scalar(nominal, h).astype(np.float32))[:, None])
        tok, num = attributes(u_tok, u_num, u_missing, bu)
        if u_tok.shape[1]:
            parts.append(fields("user", tok))
        parts.append(num)
        return mlp("user", torch.cat(parts, dim=1))

    def item_tower(bi: npt.NDArray[np.int64]) -> Any:
        parts = []
        if model._ids_in("item"):
            keep = torch.from_numpy((rng.random(len(bi)) >= drop_i).astype(np.float32))
            idv = F.embedding(t["i_bucket"][bi], params["item.id"], sparse=True)
            parts.append(idv * keep[:, None])
        tok, num = attributes(i_tok, i_num, i_missing, bi)
        if i_tok.shape[1]:
            parts.append(fields("item", tok))
        parts.append(num)
        return mlp("item", torch.cat(parts, dim=1))

    def snapshot() -> dict[str, npt.NDArray[np.float32]]:
        return {k: p.detach().numpy().copy() for k, p in params.items()}

    batch = min(model.batch_size, n_pairs)
    per_epoch = -(-n_pairs // batch)
    epochs = max(model.epochs, -(-model.min_steps // per_epoch))
    best: tuple[float, int, dict[str, npt.NDArray[np.float32]]] | None = None
    valid_csr = valid.to_csr() if valid is not None else None
    steps = 0
    for epoch in range(epochs):
        started = time.perf_counter()
        order = rng.permutation(n_pairs)
        total = 0.0
        for start in range(0, n_pairs, batch):
            idx = order[start : start + batch]
            if len(idx) < 2:
                continue  # a lone row has no negative
            bu, bi = pair_u[idx], pair_i[idx]
            loss = in_batch_softmax_loss(
                user_tower(bu, bi),
                item_tower(bi),
                torch.from_numpy(bi),
                log_q[bi] if model.logq else None,
                model.temperature,
            )
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            steps += 1
        message = f"epoch {epoch + 1}/{epochs} loss {total / n_pairs:.4f}"
        if valid_csr is not None and valid_csr.nnz and steps >= model.min_steps:
            model.weights_ = snapshot()
            model._refresh_vectors(u_tok, u_num, i_tok, i_num)
            if isinstance(model.popularity_prior, str):  # "auto"
                # Users with no history count as much as those with a few (the prior's two
                # weights selected for this epoch's weights).
                prior, score = _select_prior(model, valid_csr, u_tok, u_num)
                message += f" valid ndcg@{model.eval_k} (cold + short) / 2 {score:.4f}"
                message += f" prior {prior.tolist()}"
            else:
                score = _validation_ndcg(model, valid_csr)
                message += f" valid ndcg@{model.eval_k} {score:.4f}"
            if best is None or score > best[0]:
                best = (score, epoch, model.weights_)
            elif epoch - best[1] > model.patience:
                model._log(message + " (stop)")
                break
        model._log(message + f" ({time.perf_counter() - started:.1f}s)")
    if best is not None:
        model._log(f"best epoch {best[1] + 1}: valid ndcg@{model.eval_k} {best[0]:.4f}")
        return best[2]
    return snapshot()
