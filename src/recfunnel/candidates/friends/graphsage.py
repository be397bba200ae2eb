"""GraphSAGE: inductive "people you may know" from profiles and sampled neighbourhoods.

Hamilton, Ying & Leskovec 2017, "Inductive Representation Learning on Large Graphs"
(NeurIPS '17). A user's vector is computed, not looked up: from their profile attributes and
those of the people within ``K`` hops, so a member who joined after training gets a vector
from their profile and first connections without retraining.

The network. A user's input ``h⁰`` is their profile only - no per-user id embedding:
categorical columns through learned embeddings (code 0, "unknown", for unseen values),
multi-valued columns through the mean of their tokens' embeddings (``embedding_bag``),
numeric columns standardised, and the user's friend count, ``log1p``-scaled and standardised
(:mod:`._profile_encoding`). Layer ``k = 1..K`` computes, for a sample ``S(v)`` of v's friends,

    h_v^k = normalize(σ(W_k [h_v^{k-1} ‖ AGG_k({h_u^{k-1} : u ∈ S(v)})]))

with ``AGG`` the mean (``aggregator="mean"``, GraphSAGE-mean) or an attention-weighted mean
(``"attention"``: weights softmax_u(LeakyReLU(a_kᵀ h_v + c_kᵀ h_u)), the form GAT's
``aᵀ[W h_v ‖ W h_u]`` takes before the shared projection, Veličković et al. 2018); σ is ReLU
on every layer but the last, which stays linear so that vectors can point anywhere on the
sphere.

The score of a pair is s(u, v) = z_u·z_v + bᵀz_v: the cosine of the final, unit vectors plus
a learned *candidate* term (``b`` is one vector, so the term comes from v's own vector and
stays inductive). It lets well-connected users rank higher for everyone, which unit vectors
alone express only by crowding popular users into shared directions: on the synthetic
temporal split of the tests, recall@10 was 0.05 without it and 0.15 with it (most-connected
users: 0.07). The index stores [z_v ‖ bᵀz_v] and is queried with [z_u ‖ 1].

Mini-batches (the paper's Algorithm 2). A batch's users are the seeds; hop 1 samples
``fanouts[0]`` friends of each seed, hop 2 ``fanouts[1]`` friends of every node reached so
far, and so on; layers then run from the outermost hop inwards over those samples only, each
node once however many times it was reached. A node with more friends than the fan-out gets
that many drawn uniformly with replacement (the mean stays unbiased), one with fewer keeps
them all. Everything is vectorised over the CSR; nothing is proportional to the graph.

Training is link prediction with a pairwise loss: for a training friendship ``(u, p)`` (random
orientation) and a negative ``n``, BPR −log σ((s(u, p) − s(u, n)) / ``temperature``)
(``loss="bpr"``) or the hinge max(0, ``margin`` − s(u, p) + s(u, n)) (``loss="margin"``).
Negatives are uniform non-friends, or with probability ``hard_negatives`` a friend of a
friend who is not a friend (a random 2-hop walk: the candidates the model must learn to
order). Where triangles close over time (the synthetic data, most social graphs) such pairs
are often tomorrow's friendships, and large shares cost recall: hence a default of 0.1.
The batch's own friendships are removed from every sampled neighbourhood and from the
endpoints' friend counts, so an edge never predicts itself (label leakage). An epoch is
``max_batches`` batches of ``batch_size`` friendships at most (all friendships when fewer),
which keeps an epoch's cost fixed on large graphs (measured on one thread: ~30 s per epoch at
100k users and 1M friendships, ~47 s at 1M users and 10M friendships, 3.3 GB peak). With
``fit(..., valid=...)`` recall@``eval_k`` of the held-out friendships (training friends masked)
over ``eval_users`` sampled users is measured every ``eval_every`` epochs; training stops after
``patience`` evaluations without improvement and keeps the best weights (``best_epoch_``). A
graph without friendships (a new deployment) has nothing to learn from: ``fit`` warns and
serves the untrained weights (similar profiles still get similar vectors) until the next fit.

Serving. After fit every user's vector (``user_embeddings_``, float32, unit norm) is
computed over the *whole* neighbourhood (``inference_fanout=None``; an int caps it, drawn with
``seed``) and put in a vector index (``index="exact"``, or ``"hnsw"``; ``index_params`` go to
:func:`~recfunnel.index.make_index`); candidates are the highest-scoring users.

Staleness policy (online graphs). A query user's stored vector is used while their friend
count and profile are those it was computed with; otherwise their vector is recomputed on
the fly from the current graph (overlay included) and profiles, for that query, and the
stored one is left as is. A user who joined after the vectors were computed (a new graph row)
is embedded the first time anyone who joined since is asked for, and added to the index, so
others can be suggested them too. Everything else - a friend's new friends, another user's
profile edit, the stored vectors of users whose friends changed - is picked up by
:meth:`GraphSAGE.refresh`, which :meth:`attach` runs whenever the attached graph differs
from the one the vectors were computed on. :meth:`GraphSAGE.add_profiles` registers profiles
of users who joined after fit (or edits). Save/load keeps weights, vocabularies, statistics,
profiles and vectors as arrays; ``load(..., graph)`` on the same graph reuses the vectors.

>>> import pandas as pd
>>> from recfunnel.core.graph import SocialGraph
>>> pairs = [("a1", "a2"), ("a2", "a3"), ("a1", "a3"), ("a4", "a1"), ("a4", "a2"),
...          ("b1", "b2"), ("b2", "b3"), ("b1", "b3"), ("b4", "b1"), ("b4", "b2"), ("a1", "b1")]
>>> edges = pd.DataFrame({"src_user_id": [a for a, b in pairs] + [b for a, b in pairs],
...                       "dst_user_id": [b for a, b in pairs] + [a for a, b in pairs]})
>>> graph = SocialGraph.from_edges(edges)
>>> profiles = pd.DataFrame({"user_id": graph.user_ids(),
...                          "club": [u[0] for u in graph.user_ids()]})
>>> model = GraphSAGE(dim=8, max_epochs=60).fit(graph, user_features=profiles)
>>> model.recommend(["a4"], n=1)[0].ids
('a3',)
>>> graph.add_edges(["new", "b2"], ["b2", "new"])             # joins, befriends b2
>>> _ = model.add_profiles(pd.DataFrame({"user_id": ["new"], "club": ["b"]}))
>>> model.recommend(["new"], n=1)[0].ids[0][0]
'b'
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.candidates._training import Adam, Positives, sample_negatives, torch_threads
from recfunnel.candidates.friends._profile_encoding import (
    EncodedProfiles,
    ProfileEncoder,
    profile_state,
    profiles_from_state,
)
from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.generator import SearchSpace
from recfunnel.core.graph import SocialGraph

if TYPE_CHECKING:
    import torch

    from recfunnel.core.index import VectorIndex

AGGREGATORS = ("mean", "attention")
LOSSES = ("bpr", "margin")
#: Score cells per chunk when validating (float32: 64 MB).
EVAL_CELLS = 1 << 24

Int64s = npt.NDArray[np.int64]
#: (nodes, fan-out) -> sampled neighbours as CSR over ``nodes``: (indptr, global sources).
NeighbourSampler = Callable[[Int64s, int | None], tuple[Int64s, Int64s]]


@dataclass(frozen=True)
class Block:
    """One layer's sample: targets are input rows ``0..n_targets-1``; target ``t`` aggregates
    input rows ``sources[indptr[t]:indptr[t+1]]``."""

    n_targets: int
    indptr: Int64s
    sources: Int64s


@dataclass(frozen=True)
class _TrainingGraph:
    """The training friendships as training reads them."""

    n: int
    indptr: Int64s
    indices: Int64s
    degree: Int64s
    #: "is v u's friend or u themself", for negative sampling.
    friends: Positives

    @classmethod
    def of(cls, graph: SocialGraph) -> _TrainingGraph:
        adj = graph.adjacency()
        n = graph.n_users
        indptr = adj.indptr.astype(np.int64)
        seen = sp.csr_matrix(adj + sp.identity(n, format="csr", dtype=np.float32))
        return cls(n, indptr, adj.indices.astype(np.int64), np.diff(indptr), Positives(seen))


def sample_neighbours(
    indptr: Int64s, indices: Int64s, rows: Int64s, fanout: int | None, rng: np.random.Generator
) -> tuple[Int64s, Int64s]:
    """Up to ``fanout`` neighbours of each of ``rows`` of a CSR: all of them when a row has at
    most ``fanout`` (or ``fanout`` is None), else ``fanout`` drawn uniformly with replacement.

    >>> ip, nb = sample_neighbours(np.array([0, 1, 5]), np.array([9, 1, 2, 3, 4]),
    ...                            np.array([1, 0]), 2, np.random.default_rng(0))
    >>> ip.tolist(), bool(set(nb[:2].tolist()) <= {1, 2, 3, 4}), nb[2:].tolist()
    ([0, 2, 3], True, [9])
    """
    start = indptr[rows]
    deg = indptr[rows + 1] - start
    take = deg if fanout is None else np.minimum(deg, fanout)
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(take, out=out[1:])
    owner = np.repeat(np.arange(len(rows)), take)
    offset = np.arange(out[-1], dtype=np.int64) - out[owner]
    if fanout is not None:
        big = np.flatnonzero(deg[owner] > fanout)
        offset[big] = (rng.random(len(big)) * deg[owner[big]]).astype(np.int64)
    return out, indices[start[owner] + offset]


def sample_blocks(
    seeds: Int64s,
    fanouts: Sequence[int | None],
    sample: NeighbourSampler,
    n_users: int,
    *,
    hidden: tuple[Int64s, Int64s] | None = None,
) -> tuple[Int64s, list[Block]]:
    """The nodes a K-layer forward pass over ``seeds`` (distinct rows) needs, and one
    :class:`Block` per hop (hop 1 first). Each hop's targets are the previous hop's inputs,
    so the seeds are the first rows of every hop's inputs. Friendships ``hidden`` (rows
    ``a[k] - b[k]``: the batch's own) are left out of every sample, both ways. O(sampled
    edges), plus one ``n_users`` scratch array.

    >>> nodes, blocks = sample_blocks(
    ...     np.array([2]), [None], lambda t, f: (np.array([0, 2]), np.array([0, 1])), 3)
    >>> nodes.tolist(), blocks[0].sources.tolist()
    ([2, 0, 1], [1, 2])
    """
    position = np.full(n_users, -1, dtype=np.int64)
    position[seeds] = np.arange(len(seeds))
    if hidden is not None:
        a, b = hidden
        endpoint = np.zeros(n_users, dtype=bool)
        endpoint[a] = endpoint[b] = True
        keys = np.sort(np.concatenate([a * n_users + b, b * n_users + a]))
    targets = seeds
    blocks = []
    for fanout in fanouts:
        indptr, src = sample(targets, fanout)
        if hidden is not None:
            dst = np.repeat(targets, np.diff(indptr))
            maybe = np.flatnonzero(endpoint[dst] & endpoint[src])
            drop = maybe[np.isin(dst[maybe] * n_users + src[maybe], keys)]
            if len(drop):
                owner = np.repeat(np.arange(len(targets)), np.diff(indptr))
                counts = np.bincount(np.delete(owner, drop), minlength=len(targets))
                src = np.delete(src, drop)
                indptr = np.zeros(len(targets) + 1, dtype=np.int64)
                np.cumsum(counts, out=indptr[1:])
        new = np.unique(src[position[src] < 0])
        position[new] = np.arange(len(targets), len(targets) + len(new))
        blocks.append(Block(len(targets), indptr, position[src]))
        targets = np.concatenate([targets, new])
    return targets, blocks


def graph_fingerprint(graph: SocialGraph) -> str:
    """A digest of the friendships (overlay included): equal graphs, equal digests."""
    adj = graph.adjacency()
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(graph.n_users).tobytes())
    h.update(np.ascontiguousarray(adj.indptr, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(adj.indices, dtype=np.int64).tobytes())
    return h.hexdigest()


class GraphSAGE(FriendGenerator):
    """Friend candidates from GraphSAGE vectors (see the module docstring for the model).

    Hyper-parameters: ``dim`` (width of every layer and of the final vectors),
    ``fanouts`` (friends sampled per node at hop 1, 2, ...; ``K = len(fanouts)`` layers),
    ``aggregator`` (``"mean"`` or ``"attention"``), ``embedding_dim`` (per categorical or
    multi-valued column), ``categorical`` / ``multi_valued`` / ``numeric`` (profile columns;
    ``None`` infers them, see :class:`._profile_encoding.ProfileEncoder`), ``loss`` (``"bpr"``
    or ``"margin"``), ``temperature`` (BPR), ``margin`` (hinge), ``hard_negatives`` (share of
    friend-of-friend negatives), ``lr`` (Adam), ``batch_size`` (friendships per step),
    ``max_batches`` (steps per epoch at most; None: every friendship once), ``max_epochs``,
    ``eval_every``, ``patience``, ``eval_users``, ``eval_k`` (early stopping),
    ``inference_fanout`` (None: whole neighbourhoods after training), ``index`` /
    ``index_params`` (vector index), ``seed`` (initialisation and every sample: same data
    and seed, same model), ``threads`` (torch's intra-op threads during fit, embedding and
    search; on two shared cores 2 threads made a training step ten times slower than 1, as
    idle OpenMP workers spin), ``progress`` (a bar over epochs).

    Learned: ``encoder_``, ``weights_`` (name -> tensor), ``user_embeddings_``,
    ``embedded_degree_`` (friend count each vector was computed with), ``index_``,
    ``history_`` (per epoch: ``epoch``, ``loss``, ``valid_recall``, ``seconds``),
    ``best_epoch_``, ``fit_seconds_``.
    """

    name: ClassVar[str] = "graphsage"
    encoder_: ProfileEncoder
    profiles_: EncodedProfiles
    profile_aligned_: int
    stale_rows_: Int64s
    weights_: dict[str, torch.Tensor]
    degree_stats_: npt.NDArray[np.float64]
    user_embeddings_: npt.NDArray[np.float32]
    embedded_degree_: Int64s
    graph_fingerprint_: str
    index_: VectorIndex
    history_: list[dict[str, Any]]
    best_epoch_: int
    fit_seconds_: float
    search_space: ClassVar[SearchSpace] = {
        "lr": ("float", 1e-3, 3e-2, "log"),
        "dim": ("int", 32, 128, "log"),
        "temperature": ("float", 0.05, 0.5, "log"),
        "hard_negatives": ("float", 0.0, 0.8, "linear"),
    }

    def __init__(
        self,
        dim: int = 64,
        fanouts: Sequence[int] = (15, 10),
        aggregator: str = "mean",
        embedding_dim: int = 16,
        categorical: Sequence[str] | None = None,
        multi_valued: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        loss: str = "bpr",
        temperature: float = 0.1,
        margin: float = 0.3,
        hard_negatives: float = 0.1,
        lr: float = 0.005,
        batch_size: int = 512,
        max_batches: int | None = 200,
        max_epochs: int = 30,
        eval_every: int = 1,
        patience: int = 3,
        eval_users: int = 1000,
        eval_k: int = 10,
        inference_fanout: int | None = None,
        index: str = "exact",
        index_params: dict[str, Any] | None = None,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ) -> None:
        self.dim = dim
        self.fanouts = fanouts
        self.aggregator = aggregator
        self.embedding_dim = embedding_dim
        self.categorical = categorical
        self.multi_valued = multi_valued
        self.numeric = numeric
        self.loss = loss
        self.temperature = temperature
        self.margin = margin
        self.hard_negatives = hard_negatives
        self.lr = lr
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.patience = patience
        self.eval_users = eval_users
        self.eval_k = eval_k
        self.inference_fanout = inference_fanout
        self.index = index
        self.index_params = index_params
        self.seed = seed
        self.threads = threads
        self.progress = progress

    # ---- checks --------------------------------------------------------------------------
    def _check_params(self) -> None:
        cls = type(self).__name__
        positive = (
            "dim",
            "embedding_dim",
            "lr",
            "batch_size",
            "max_epochs",
            "eval_every",
            "patience",
            "eval_users",
            "eval_k",
            "threads",
            "temperature",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{cls}.{name} must be positive, got {getattr(self, name)!r}")
        if not self.fanouts or any(int(f) <= 0 for f in self.fanouts):
            raise ConfigError(f"{cls}.fanouts must be positive integers, got {self.fanouts!r}")
        if self.aggregator not in AGGREGATORS:
            raise ConfigError(
                f"{cls}.aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}"
            )
        if self.loss not in LOSSES:
            raise ConfigError(f"{cls}.loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise ConfigError(
                f"{cls}.hard_negatives must be in [0, 1], got {self.hard_negatives!r}"
            )
        for name in ("max_batches", "inference_fanout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{cls}.{name} must be positive or None, got {value!r}")

    def _check_ready(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(f"{type(self).__name__}: call fit() or load() first")

    # ---- the network ---------------------------------------------------------------------
    def _init_weights(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        import torch

        enc = self.encoder_
        arrays: dict[str, npt.NDArray[np.float64]] = {}
        for k, rows in enumerate(enc.vocab_sizes):
            arrays[f"embed{k}"] = rng.standard_normal((rows, self.embedding_dim)) / np.sqrt(
                self.embedding_dim
            )
        d_in = self.embedding_dim * len(enc.vocab_sizes) + len(enc.numeric_) + 1
        for layer in range(len(self.fanouts)):
            bound = 1.0 / np.sqrt(2 * d_in)
            arrays[f"layer{layer}.weight"] = rng.uniform(-bound, bound, (self.dim, 2 * d_in))
            arrays[f"layer{layer}.bias"] = np.zeros(self.dim)
            if self.aggregator == "attention":
                bound = 1.0 / np.sqrt(d_in)
                arrays[f"layer{layer}.attend_self"] = rng.uniform(-bound, bound, d_in)
                arrays[f"layer{layer}.attend_neighbour"] = rng.uniform(-bound, bound, d_in)
            d_in = self.dim
        arrays["popularity"] = np.zeros(self.dim)
        return {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}

    def _inputs(self, profiles: EncodedProfiles, degree: Int64s) -> torch.Tensor:
        """h⁰ (N x D₀): categorical embeddings ‖ token-bag means ‖ numeric ‖ friend count."""
        import torch
        import torch.nn.functional as F

        w = self.weights_
        parts = []
        n_cat = profiles.categorical.shape[1]
        codes = torch.from_numpy(profiles.categorical)
        for k in range(n_cat):
            parts.append(w[f"embed{k}"].index_select(0, codes[:, k]))
        for b, (indptr, tokens) in enumerate(profiles.bags):
            parts.append(
                F.embedding_bag(
                    torch.from_numpy(tokens),
                    w[f"embed{n_cat + b}"],
                    torch.from_numpy(indptr[:-1]),
                    mode="mean",
                )
            )
        parts.append(torch.from_numpy(profiles.numeric))
        z = (np.log1p(degree) - self.degree_stats_[0]) / self.degree_stats_[1]
        parts.append(torch.from_numpy(z.astype(np.float32)[:, None]))
        return torch.cat(parts, dim=1)

    def _layer(self, layer: int, h: torch.Tensor, block: Block, last: bool) -> torch.Tensor:
        """One SAGE layer: ``h`` (N x D) -> (n_targets x dim)."""
        import torch
        import torch.nn.functional as F

        w = self.weights_
        n_t = block.n_targets
        counts = np.diff(block.indptr)
        dst = torch.from_numpy(np.repeat(np.arange(n_t), counts))
        src = torch.from_numpy(block.sources)
        h_self = h[:n_t]
        if self.aggregator == "attention":
            logits = F.leaky_relu(
                (h_self @ w[f"layer{layer}.attend_self"]).index_select(0, dst)
                + (h @ w[f"layer{layer}.attend_neighbour"]).index_select(0, src),
                0.2,
            )
            # The per-target maximum only stabilises exp(); it carries no gradient.
            peak = torch.full((n_t,), -torch.inf).scatter_reduce(
                0, dst, logits.detach(), "amax", include_self=True
            )
            e = torch.exp(logits - peak.index_select(0, dst))
            total = torch.zeros(n_t).index_add(0, dst, e)
            weight = e / total.index_select(0, dst)
        else:
            weight = torch.from_numpy(
                np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
            )
        if torch.is_grad_enabled():
            agg = torch.zeros(n_t, h.shape[1]).index_add_(
                0, dst, h.index_select(0, src) * weight.unsqueeze(1)
            )
        else:
            # Whole-graph inference: a sparse product, without one message row per edge.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch: sparse CSR is "beta"
                a = torch.sparse_csr_tensor(
                    torch.from_numpy(block.indptr),
                    src,
                    weight,
                    size=(n_t, h.shape[0]),
                    check_invariants=False,
                )
            agg = a @ h
        z = torch.addmm(
            w[f"layer{layer}.bias"], torch.cat([h_self, agg], dim=1), w[f"layer{layer}.weight"].T
        )
        if not last:
            z = torch.relu(z)
        return F.normalize(z, dim=1)

    def _forward(
        self, blocks: list[Block], profiles: EncodedProfiles, degree: Int64s
    ) -> torch.Tensor:
        """Final vectors (seeds x dim) from the input nodes' profiles and friend counts."""
        h = self._inputs(profiles, degree)
        k = len(blocks)
        for layer in range(k):
            h = self._layer(layer, h, blocks[k - 1 - layer], last=layer == k - 1)
        return h

    # ---- profiles ------------------------------------------------------------------------
    def _profile_rows(self, rows: Int64s) -> Int64s:
        """Profile row of each graph row (-1: no profile). Rows of fit's graph are aligned;
        profiles registered later (new members, edits) are found by id and take precedence."""
        out = np.where(rows < self.profile_aligned_, rows, -1)
        if not self._profile_lookup:
            return out
        if self._profile_edited:
            look = np.arange(len(rows))
        else:
            look = np.flatnonzero(rows >= self.profile_aligned_)
        if len(look):
            at = pd.Index(list(self._profile_lookup)).get_indexer(
                pd.Index(self.graph_.decode(rows[look]))
            )
            hit = at >= 0
            late = np.fromiter(self._profile_lookup.values(), np.int64, len(self._profile_lookup))
            out[look[hit]] = late[at[hit]]
        return out

    def add_profiles(self, user_features: pd.DataFrame) -> Self:
        """Register profile rows (``user_id`` + attributes) of users who joined after fit, or
        edited ones; encoded with the fitted vocabularies (unseen values -> unknown). Users
        already embedded are recomputed on their next query; :meth:`refresh` updates the
        index."""
        self._check_ready()
        if "user_id" not in user_features.columns:
            raise DataError("missing column 'user_id'", source="user_features")
        frame = user_features.drop_duplicates("user_id", keep="last").reset_index(drop=True)
        encoded = self.encoder_.transform(frame)
        start = len(self.profiles_)
        self.profiles_ = EncodedProfiles.concat([self.profiles_, encoded])
        ids = frame["user_id"].astype(str).tolist()
        for k, uid in enumerate(ids):
            self._profile_lookup[uid] = start + k
        rows = self.graph_.encode(ids, missing="ignore")
        if ((rows >= 0) & (rows < self.profile_aligned_)).any():
            self._profile_edited = True
        embedded = rows[(rows >= 0) & (rows < len(self.user_embeddings_))]
        self.stale_rows_ = np.union1d(self.stale_rows_, embedded)
        return self

    # ---- training ------------------------------------------------------------------------
    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        self._check_params()
        started = time.perf_counter()
        frame = side.user_features
        if frame is None:
            frame = pd.DataFrame({"user_id": graph.user_ids()})
        if "user_id" not in frame.columns:
            raise DataError("missing column 'user_id'", source="user_features")
        frame = frame.drop_duplicates("user_id", keep="last").reset_index(drop=True)
        self.encoder_ = ProfileEncoder(self.categorical, self.multi_valued, self.numeric).fit(frame)
        at = pd.Index(frame["user_id"].astype(str)).get_indexer(pd.Index(graph.user_ids()))
        self.profiles_ = self.encoder_.transform(frame).take(at.astype(np.int64))
        self.profile_aligned_ = graph.n_users
        self._profile_lookup: dict[str, int] = {}
        self._profile_edited = False
        self.stale_rows_ = np.zeros(0, dtype=np.int64)
        valid = side.valid
        if valid is not None and valid.shape != (graph.n_users, graph.n_users):
            raise ConfigError(
                f"valid is {valid.shape}; expected the graph's {(graph.n_users, graph.n_users)}"
            )
        with torch_threads(self.threads):
            embeddings = self._train(graph, valid)
            self._install(self._embed_all(graph) if embeddings is None else embeddings)
        self.fit_seconds_ = time.perf_counter() - started

    def _negatives(self, users: Int64s, data: _TrainingGraph, rng: np.random.Generator) -> Int64s:
        """One negative per anchor: a uniform non-friend, or (share ``hard_negatives``) the
        end of a 2-hop walk when that is not a friend (else the uniform one)."""
        neg = sample_negatives(data.friends, users, rng)
        hard = np.flatnonzero(rng.random(len(users)) < self.hard_negatives)
        if len(hard):
            u = users[hard]
            ip, ix, deg = data.indptr, data.indices, data.degree
            mid = ix[ip[u] + (rng.random(len(u)) * deg[u]).astype(np.int64)]
            end = ix[ip[mid] + (rng.random(len(u)) * deg[mid]).astype(np.int64)]
            ok = ~data.friends.contains(u, end)
            neg[hard[ok]] = end[ok]
        return neg

    def _step(
        self,
        u: Int64s,
        p: Int64s,
        data: _TrainingGraph,
        adams: list[Adam],
        rng: np.random.Generator,
    ) -> float:
        """One Adam step on friendships ``u - p`` (anchors ``u``); returns the batch loss."""
        import torch
        import torch.nn.functional as F

        neg = self._negatives(u, data, rng)
        b = len(u)
        seeds, inverse = np.unique(np.concatenate([u, p, neg]), return_inverse=True)

        def sampler(nodes: Int64s, fanout: int | None) -> tuple[Int64s, Int64s]:
            return sample_neighbours(data.indptr, data.indices, nodes, fanout, rng)

        fanouts = [int(f) for f in self.fanouts]
        nodes, blocks = sample_blocks(seeds, fanouts, sampler, data.n, hidden=(u, p))
        degree = data.degree[nodes]
        np.subtract.at(degree, inverse[: 2 * b], 1)  # the batch's friendships are hidden
        z = self._forward(blocks, self.profiles_.take(nodes), degree)
        inv = torch.from_numpy(inverse)
        zu, zp, zn = (z.index_select(0, inv[k * b : (k + 1) * b]) for k in range(3))
        gap = ((zu + self.weights_["popularity"]) * (zp - zn)).sum(1)  # s(u, p) - s(u, n)
        if self.loss == "bpr":
            loss = F.softplus(-gap / self.temperature).mean()
        else:
            loss = torch.relu(self.margin - gap).mean()
        grads = torch.autograd.grad(loss, [adam.param for adam in adams])
        with torch.no_grad():
            for adam, g in zip(adams, grads, strict=True):
                adam.step(g)
        return float(loss.detach())

    def _train(
        self, graph: SocialGraph, valid: sp.csr_matrix | None
    ) -> npt.NDArray[np.float32] | None:
        """Learn ``weights_``; returns the best evaluation's vectors when they were computed
        as serving computes them (whole neighbourhoods), else None."""
        data = _TrainingGraph.of(graph)
        log_deg = np.log1p(data.degree)
        self.degree_stats_ = np.array([log_deg.mean(), log_deg.std() or 1.0] if data.n else [0, 1])
        # A user befriended with everyone has no negative: they cannot anchor a pair.
        full = data.degree >= data.n - 1
        upper = sp.triu(graph.adjacency(), k=1).tocoo()
        a, b = upper.row.astype(np.int64), upper.col.astype(np.int64)
        a, b = a[~(full[a] & full[b])], b[~(full[a] & full[b])]
        rng = np.random.default_rng(self.seed)
        self.weights_ = self._init_weights(rng)
        if not len(a):
            warnings.warn(
                f"{type(self).__name__}: the graph has no friendship to learn from; vectors "
                "come from untrained weights (similar profiles, similar vectors) until a refit",
                UserWarning,
                stacklevel=4,
            )
            self.history_, self.best_epoch_ = [], 0
            return None
        adams = [Adam(w.requires_grad_(True), self.lr) for w in self.weights_.values()]
        per_epoch = len(a)
        if self.max_batches is not None:
            per_epoch = min(per_epoch, self.max_batches * self.batch_size)
        evaluate = self._validator(graph, valid, rng) if valid is not None else None
        history: list[dict[str, Any]] = []
        best: tuple[float, int, dict[str, torch.Tensor], npt.NDArray[np.float32]] | None = None
        stale = 0
        epochs: Any = range(1, self.max_epochs + 1)
        if self.progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=type(self).__name__, unit="epoch")
        started = time.perf_counter()
        for epoch in epochs:
            order = rng.permutation(len(a))[:per_epoch]
            flip = rng.random(len(order)) < 0.5
            u, p = np.where(flip, b[order], a[order]), np.where(flip, a[order], b[order])
            swap = full[u]  # a full user cannot anchor: the other end does
            u, p = np.where(swap, p, u), np.where(swap, u, p)
            total = 0.0
            for s in range(0, len(order), self.batch_size):
                batch = slice(s, s + self.batch_size)
                total += self._step(u[batch], p[batch], data, adams, rng) * len(u[batch])
            loss = total / len(order)
            recall = None
            if evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.max_epochs):
                emb = self._embed_all(graph)
                recall = evaluate(emb)
                if best is None or recall > best[0]:
                    snapshot = {k: v.detach().clone() for k, v in self.weights_.items()}
                    best, stale = (recall, epoch, snapshot, emb), 0
                else:
                    stale += 1
            seconds = time.perf_counter() - started
            history.append(
                {"epoch": epoch, "loss": loss, "valid_recall": recall, "seconds": seconds}
            )
            if self.progress:
                shown = {"loss": f"{loss:.4f}"}
                if best is not None:
                    shown[f"valid_recall@{self.eval_k}"] = f"{best[0]:.4f}"
                epochs.set_postfix(shown)
            if stale >= self.patience:
                break
        if self.progress:
            epochs.close()
        self.history_ = history
        for w in self.weights_.values():
            w.requires_grad_(False)
        if best is None:
            self.best_epoch_ = history[-1]["epoch"]
            return None
        self.best_epoch_, self.weights_ = best[1], best[2]
        return best[3] if self.inference_fanout is None else None

    def _validator(
        self, graph: SocialGraph, valid: sp.csr_matrix, rng: np.random.Generator
    ) -> Callable[[npt.NDArray[np.float32]], float]:
        """Recall@eval_k of ``valid`` over a fixed sample of its users, training friends and
        the user themself masked."""
        import torch

        valid = sp.csr_matrix(valid)
        has = np.flatnonzero(np.diff(valid.indptr) > 0)
        users = np.sort(rng.choice(has, size=min(self.eval_users, len(has)), replace=False))
        train = graph.rows(users)
        target = valid[users]
        k = self.eval_k

        def recall(emb: npt.NDArray[np.float32]) -> float:
            vecs = torch.from_numpy(self._index_vectors(emb))
            queries = torch.from_numpy(self._queries(emb))
            chunk = max(1, EVAL_CELLS // len(emb))
            hits = np.zeros(len(users))
            for s in range(0, len(users), chunk):
                rows = np.arange(s, min(s + chunk, len(users)))
                scores = queries.index_select(0, torch.from_numpy(users[rows])) @ vecs.T
                mask = train[rows]
                r_idx = np.repeat(np.arange(len(rows)), np.diff(mask.indptr))
                scores[r_idx, mask.indices] = -torch.inf
                scores[np.arange(len(rows)), users[rows]] = -torch.inf
                top = torch.topk(scores, min(k, len(emb)), dim=1).indices.numpy()
                got = target[rows]
                for r in range(len(rows)):
                    truth = got.indices[got.indptr[r] : got.indptr[r + 1]]
                    hits[s + r] = np.isin(top[r], truth).sum() / len(truth)
            return float(hits.mean()) if len(hits) else 0.0

        return recall

    # ---- embedding -----------------------------------------------------------------------
    def _embed_all(self, graph: SocialGraph) -> npt.NDArray[np.float32]:
        """Every user's vector from ``graph`` (no autograd): layer-wise over the whole graph."""
        import torch

        n = graph.n_users
        adj = graph.adjacency()
        indptr, indices = adj.indptr.astype(np.int64), adj.indices.astype(np.int64)
        nodes = np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        blocks = [
            Block(n, *sample_neighbours(indptr, indices, nodes, self.inference_fanout, rng))
            for _ in self.fanouts
        ]
        profiles = self.profiles_.take(self._profile_rows(nodes))
        with torch.no_grad():
            z = self._forward(blocks, profiles, np.diff(indptr))
        return np.ascontiguousarray(z.numpy(), dtype=np.float32)

    def embed(self, user_rows: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Fresh vectors (B x dim, unit norm) of graph rows ``user_rows`` from the current
        graph (overlay included) and profiles; the stored vectors and index are untouched."""
        import torch

        self._check_fitted()
        self._check_ready()
        rows = np.asarray(user_rows, dtype=np.int64)
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        graph = self.graph_
        rng = np.random.default_rng(self.seed)

        def sampler(nodes: Int64s, fanout: int | None) -> tuple[Int64s, Int64s]:
            sub = graph.rows(nodes)
            return sample_neighbours(
                sub.indptr.astype(np.int64),
                sub.indices.astype(np.int64),
                np.arange(len(nodes)),
                fanout,
                rng,
            )

        seeds, inverse = np.unique(rows, return_inverse=True)
        fanouts = [self.inference_fanout] * len(self.fanouts)
        nodes, blocks = sample_blocks(seeds, fanouts, sampler, graph.n_users)
        profiles = self.profiles_.take(self._profile_rows(nodes))
        with torch_threads(self.threads), torch.no_grad():
            z = self._forward(blocks, profiles, graph.degree(nodes))
        return np.ascontiguousarray(z.numpy()[inverse], dtype=np.float32)

    def refresh(self) -> Self:
        """Recompute every user's vector from the attached graph and profiles and rebuild the
        index (run by :meth:`attach` when the graph changed)."""
        self._check_fitted()
        self._check_ready()
        with torch_threads(self.threads):
            return self._install(self._embed_all(self.graph_))

    def _install(self, embeddings: npt.NDArray[np.float32]) -> Self:
        """Serve ``embeddings``, computed for every user of the attached graph as it is now."""
        self.user_embeddings_ = embeddings
        self.embedded_degree_ = self.graph_.degree()
        self.graph_fingerprint_ = graph_fingerprint(self.graph_)
        self.stale_rows_ = np.zeros(0, dtype=np.int64)
        self._build_index()
        return self

    def _build_index(self) -> None:
        from recfunnel.index import make_index

        index: VectorIndex = make_index(
            self.index, metric="dot", threads=self.threads, **(self.index_params or {})
        )
        n = len(self.user_embeddings_)
        if n == 0:  # an index cannot be empty: it is built when the first users join
            self.__dict__.pop("index_", None)
            return
        self.index_ = index.build(
            self._index_vectors(self.user_embeddings_), np.arange(n).astype(str)
        )

    def _attach(self, graph: SocialGraph) -> None:
        self._check_ready()
        same = (
            len(self.user_embeddings_) == graph.n_users
            and not len(self.stale_rows_)
            and graph_fingerprint(graph) == self.graph_fingerprint_
        )
        if not same:
            self.refresh()
        elif not hasattr(self, "index_"):
            self._build_index()

    # ---- serving -------------------------------------------------------------------------
    def _index_vectors(self, emb: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """[z_v ‖ bᵀz_v]: with queries [z_u ‖ 1], a dot product scores s(u, v)."""
        bias = self.weights_["popularity"].detach().numpy()
        return np.ascontiguousarray(np.hstack([emb, (emb @ bias)[:, None]]), dtype=np.float32)

    @staticmethod
    def _queries(emb: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(np.hstack([emb, np.ones((len(emb), 1), np.float32)]))

    def _query_vectors(self, users: Int64s) -> npt.NDArray[np.float32]:
        n_emb = len(self.user_embeddings_)
        if len(users) and users.max() >= n_emb:
            # Everyone who joined since the vectors were computed, at once.
            joined = np.arange(n_emb, self.graph_.n_users, dtype=np.int64)
            vecs = self.embed(joined)
            self.user_embeddings_ = np.concatenate([self.user_embeddings_, vecs])
            self.embedded_degree_ = np.concatenate(
                [self.embedded_degree_, self.graph_.degree(joined)]
            )
            if hasattr(self, "index_"):
                self.index_.add(self._index_vectors(vecs), joined.astype(str))
            else:
                self._build_index()
        out = self.user_embeddings_[users]
        stale = self.graph_.degree(users) != self.embedded_degree_[users]
        if len(self.stale_rows_):
            stale |= np.isin(users, self.stale_rows_)
        if stale.any():
            out[stale] = self.embed(users[stale])
        return out

    def user_vectors(self, user_rows: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Serving vectors of graph rows (unit norm): the stored ones, recomputed for users
        whose friendships changed since and computed for users who joined since (what the
        friend funnel's embedding-similarity feature reads)."""
        self._check_fitted()
        self._check_ready()
        return np.array(self._query_vectors(np.asarray(user_rows, dtype=np.int64)), copy=True)

    def _candidates(self, users: Int64s, n: int) -> Candidates:
        self._check_ready()
        queries = self._queries(self._query_vectors(users))
        if not hasattr(self, "index_"):
            return Candidates.from_dense(np.zeros((len(users), 0), np.int64), queries[:, :0])
        ids, scores = self.index_.search(queries, n)
        flat = ids.ravel()
        flat[pd.isna(flat)] = "-1"  # padding: fewer users than asked for
        rows = flat.astype(np.int64).reshape(ids.shape)
        return Candidates.from_dense(rows, scores)

    # ---- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_ready()
        out: dict[str, npt.NDArray[Any]] = {
            f"weight.{k}": v.detach().numpy() for k, v in self.weights_.items()
        }
        out.update(self.encoder_.state("encoder."))
        out.update(profile_state(self.profiles_, "profiles."))
        out["profile_aligned"] = np.array(self.profile_aligned_, dtype=np.int64)
        out["profile_late_ids"] = np.asarray(list(self._profile_lookup), dtype=str)
        out["profile_late_rows"] = np.asarray(list(self._profile_lookup.values()), np.int64)
        out["profile_edited"] = np.array(self._profile_edited)
        out["degree_stats"] = self.degree_stats_
        out["user_embeddings"] = self.user_embeddings_
        out["embedded_degree"] = self.embedded_degree_
        out["stale_rows"] = self.stale_rows_
        out["graph_fingerprint"] = np.array(self.graph_fingerprint_, dtype=str)
        return out

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        import torch

        self.weights_ = {
            k.removeprefix("weight."): torch.from_numpy(np.array(v, dtype=np.float32))
            for k, v in arrays.items()
            if k.startswith("weight.")
        }
        self.encoder_ = ProfileEncoder().set_state(arrays, "encoder.")
        self.profiles_ = profiles_from_state(arrays, "profiles.", len(self.encoder_.multi_valued_))
        self.profile_aligned_ = int(arrays["profile_aligned"])
        self._profile_lookup = dict(
            zip(
                arrays["profile_late_ids"].tolist(),
                arrays["profile_late_rows"].tolist(),
                strict=True,
            )
        )
        self._profile_edited = bool(arrays["profile_edited"])
        self.degree_stats_ = np.asarray(arrays["degree_stats"], dtype=np.float64)
        self.user_embeddings_ = np.asarray(arrays["user_embeddings"], dtype=np.float32)
        self.embedded_degree_ = np.asarray(arrays["embedded_degree"], dtype=np.int64)
        self.stale_rows_ = np.asarray(arrays["stale_rows"], dtype=np.int64)
        self.graph_fingerprint_ = str(arrays["graph_fingerprint"])
