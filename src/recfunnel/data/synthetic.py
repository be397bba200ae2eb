"""Seeded synthetic datasets with a known ground truth, for tests and scale benchmarks.

:class:`SyntheticGenerator` draws a whole :class:`~recfunnel.core.schema.Dataset` (interactions,
users, items and optionally a social graph) from a latent-factor model whose parameters it keeps
afterwards (``user_factors_``, ``item_factors_``, ``community_``, ...), so a test can check what a
model recovered against what generated the data.

The model
---------
* **Latent factors.** ``n_communities`` community centres and ``n_categories`` category centres
  are drawn from N(0, I_d). A user is its community centre plus noise (``user_spread``), an item
  its category centre plus noise (``item_spread``); both are scaled so that the *affinity*
  ``user_factors_[u] @ item_factors_[i]`` is about N(0, 1) over random pairs.
* **Popularity.** Items get Zipf popularity ``rank ** -popularity_exponent`` over a random
  permutation of ranks (``item_popularity_`` sums to 1).
* **Choice.** User ``u`` draws ``n_u`` distinct items, successively without replacement, with
  probability proportional to ``popularity ** popularity_weight * exp(affinity / temperature)``.
  ``n_u`` (``user_activity_``) is ``min_activity`` plus a multinomial share of the rest of
  ``n_interactions`` with log-normal weights (``activity_sigma``): heavy-tailed, and the total is
  exactly ``n_interactions``. To scale, the users x items matrix is never formed. Per chunk of
  users (about ``chunk_size`` interactions), each user draws a candidate pool of
  ``oversample * n_u + 8`` items from a proposal that already holds most of the affinity: a
  category with probability ∝ its popularity mass times ``exp(expected affinity /
  temperature)`` (``user_factors_[u] @ category_factors_[c]``), then an item of it by popularity
  (inverse CDF). The pool's distinct items are scored ``log(multiplicity) + (affinity -
  expected affinity) / temperature + Gumbel`` and the top ``n_u`` kept: sampling-importance-
  resampling, then Gumbel-top-k, i.e. sampling without replacement. This is approximate: chosen
  pairs come out a little less affine than under the exact law (at the defaults, mean affinity
  about 1.2 instead of 1.4; 1.35 with ``oversample=16``); it becomes exact as ``oversample``
  grows.
  Users whose pool would be as large as the catalogue, or held fewer than ``n_u`` distinct
  items, are drawn exactly over the whole catalogue instead.
* **Time.** Items are created uniformly in ``[start, end)``; a fraction ``ephemeral_fraction``
  expires ``ttl`` seconds later (``expires_at`` is NaN for the others). An interaction happens
  uniformly within the item's life clipped to the window: ``created_at <= timestamp <
  min(expires_at, end)``. Times are whole seconds (as float). Rows are ordered by user, then time.
* **Values.** ``value`` is an explicit rating 1..5 for every row: the rating is a quantile cut of
  ``affinity + rating_noise * N(0, 1)`` so its marginal is exactly ``rating_dist`` (default
  close to MovieLens-1M) and it rises with affinity. ``event_type`` is the depth of the
  engagement: another quantile cut of ``affinity + event_noise * N(0, 1)`` over ``event_mix``,
  listed from the shallowest to the deepest (default 70 % ``view``, 20 % ``click``, 10 %
  ``purchase``), so the most affine pairs tend to be purchases.
* **Side features.** Users: ``age_group``, ``country`` (both skewed per community),
  ``community``, ``interests`` (1 to 4 genre names, pipe-joined like the items' ``genres``,
  drawn from the user factor's affinity to the same genre prototypes, so they follow the
  community) and ``activity`` (the user's number of interactions, ``user_activity_``).
  Items: ``category`` (the category whose centre the item factor was drawn around),
  ``genres`` (1 to 3 of ``n_genres``, pipe-joined, drawn from the factor's affinity to
  genre prototypes), ``year`` (release year, at most the year of ``created_at``) and ``price``
  (log-normal around a per-category level).
* **Social graph** (``social=True``). Friendships, stored as **two directed edges per pair**
  (``a -> b`` and ``b -> a`` with the same timestamp), so a user's friends are the rows with
  ``src_user_id == user``. There are ``round(n_users * avg_degree / 2)`` pairs (self-loops and
  repeats are redrawn; fewer only if the graph is nearly complete). A share
  ``1 - triadic_closure`` is a Chung-Lu graph: endpoints drawn in proportion to Pareto weights
  with tail exponent ``degree_exponent`` (power-law degrees), the second endpoint from the first
  one's community with probability ``homophily``. The rest close open triangles, in two rounds: a
  random edge ``a - b`` and a random friend ``c`` of ``b`` give ``a - c``. Base edges are timed
  uniformly; a closing edge comes after both edges of its wedge.

Everything is vectorised numpy (Python loops only over chunks and categories). The output
depends only on the parameters, ``chunk_size`` included, and the seed.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from tqdm import tqdm

from recfunnel.core.errors import ConfigError
from recfunnel.core.schema import Dataset

__all__ = ["SyntheticGenerator"]

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_P = (0.15, 0.30, 0.22, 0.15, 0.10, 0.08)
COUNTRIES = ("US", "IN", "BR", "GB", "DE", "FR", "JP", "MX", "CA", "ES", "IT", "KR")

# Elements per block of users x items, users x categories or pairs x factors: bounds the
# working memory whatever the sizes.
_DENSE_CELLS = 1 << 22
_SECONDS_PER_DAY = 86_400.0
_DEFAULT_START = 1_600_000_000.0  # 2020-09-13, UTC


class SyntheticGenerator:
    """Draws a seeded synthetic :class:`Dataset` from a latent-factor model (see the module doc).

    Hyper-parameters are the keyword arguments, stored unchanged; :meth:`generate` validates
    them and sets the ground truth: ``user_factors_`` (n_users x d, float32), ``item_factors_``
    (n_items x d), ``category_factors_`` (mean item factor per category), ``community_`` (int
    per user), ``item_category_`` (int per item), ``item_popularity_`` (probabilities),
    ``user_activity_`` (interactions per user), ``genre_factors_`` (the genre prototypes that
    items' ``genres`` and users' ``interests`` are drawn from) and, with ``social``,
    ``degree_weight_`` (Chung-Lu weight per user). :meth:`affinity` scores (user, item) index pairs.
    User ``k`` is ``"u{k}"`` and item ``k`` is ``"i{k}"``, so row ``k`` of every array is that id.

    >>> gen = SyntheticGenerator(n_users=50, n_items=40, n_interactions=600, social=True)
    >>> data = gen.generate(seed=7)
    >>> len(data.interactions), len(data.users), len(data.items)
    (600, 50, 40)
    >>> data.interactions.columns.tolist()
    ['user_id', 'item_id', 'event_type', 'value', 'timestamp']
    >>> data.interactions["user_id"].iloc[0], sorted(data.interactions["value"].unique().tolist())
    ('u0', [1.0, 2.0, 3.0, 4.0, 5.0])
    >>> gen.user_factors_.shape, int(gen.user_activity_.sum())
    ((50, 16), 600)
    >>> data.edges.columns.tolist()
    ['src_user_id', 'dst_user_id', 'timestamp']
    >>> data.interactions.equals(gen.generate(seed=7).interactions)
    True
    """

    def __init__(
        self,
        n_users: int = 1_000,
        n_items: int = 2_000,
        n_interactions: int = 50_000,
        *,
        n_factors: int = 16,
        n_communities: int = 10,
        n_categories: int = 20,
        n_genres: int = 18,
        user_spread: float = 0.5,
        item_spread: float = 0.7,
        popularity_exponent: float = 1.0,
        popularity_weight: float = 1.0,
        temperature: float = 0.5,
        min_activity: int = 5,
        activity_sigma: float = 1.0,
        oversample: float = 4.0,
        start: float = _DEFAULT_START,
        end: float = _DEFAULT_START + 365 * _SECONDS_PER_DAY,
        ephemeral_fraction: float = 0.2,
        ttl: float = 7 * _SECONDS_PER_DAY,
        rating_dist: Sequence[float] = (0.06, 0.11, 0.26, 0.35, 0.22),
        rating_noise: float = 0.7,
        event_mix: Mapping[str, float] | Sequence[tuple[str, float]] = (
            ("view", 0.7),
            ("click", 0.2),
            ("purchase", 0.1),
        ),
        event_noise: float = 0.7,
        social: bool = False,
        avg_degree: float = 10.0,
        degree_exponent: float = 2.5,
        homophily: float = 0.8,
        triadic_closure: float = 0.3,
        chunk_size: int = 250_000,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.n_interactions = n_interactions
        self.n_factors = n_factors
        self.n_communities = n_communities
        self.n_categories = n_categories
        self.n_genres = n_genres
        self.user_spread = user_spread
        self.item_spread = item_spread
        self.popularity_exponent = popularity_exponent
        self.popularity_weight = popularity_weight
        self.temperature = temperature
        self.min_activity = min_activity
        self.activity_sigma = activity_sigma
        self.oversample = oversample
        self.start = start
        self.end = end
        self.ephemeral_fraction = ephemeral_fraction
        self.ttl = ttl
        self.rating_dist = rating_dist
        self.rating_noise = rating_noise
        self.event_mix = event_mix
        self.event_noise = event_noise
        self.social = social
        self.avg_degree = avg_degree
        self.degree_exponent = degree_exponent
        self.homophily = homophily
        self.triadic_closure = triadic_closure
        self.chunk_size = chunk_size
        self.seed = seed
        self.progress = progress

    # ---- parameters (scikit-learn conventions) -----------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, by name (the ``__init__`` arguments)."""
        names = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in names if p != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- public API ---------------------------------------------------------------------
    def generate(self, seed: int | None = None) -> Dataset:
        """Draw the dataset for ``seed`` (default: the ``seed`` parameter).

        The same parameters and seed always give identical frames.
        """
        events, rating_p = self._validate()
        root = np.random.SeedSequence(self.seed if seed is None else seed)
        # One independent stream per purpose, so e.g. turning ``social`` on leaves the
        # interactions unchanged. Streams are only ever appended (a SeedSequence's k-th child
        # does not depend on how many are spawned), so older outputs stay as they were.
        s_latent, s_users, s_items, s_chunks, s_values, s_social, s_profile = root.spawn(7)

        self._draw_latent(np.random.default_rng(s_latent))
        # Built once, then gathered by Arrow for every id column.
        self._user_ids = _id_labels("u", self.n_users)
        self._item_ids = _id_labels("i", self.n_items)
        users = self._draw_users(np.random.default_rng(s_users))
        items, created, alive_until = self._draw_items(np.random.default_rng(s_items))
        users["interests"] = self._draw_interests(np.random.default_rng(s_profile))
        users["activity"] = self.user_activity_.astype(np.int64)
        u, i, t, z_rating = self._draw_interactions(s_chunks, created, alive_until)

        # Quantile cuts over all rows make the marginals exact whatever the affinity law.
        rng_v = np.random.default_rng(s_values)
        z_event = z_rating.copy()
        z_rating += np.float32(self.rating_noise) * rng_v.standard_normal(len(u), np.float32)
        z_event += np.float32(self.event_noise) * rng_v.standard_normal(len(u), np.float32)
        rating = _quantile_cut(z_rating, rating_p) + 1
        event = _quantile_cut(z_event, np.array([p for _, p in events]))
        del z_rating, z_event

        interactions = pd.DataFrame(
            {
                "user_id": _take_strings(self._user_ids, u),
                "item_id": _take_strings(self._item_ids, i),
                "event_type": _take_strings([name for name, _ in events], event),
                "value": rating.astype(np.float64),
                "timestamp": t,
            }
        )
        edges = None
        if self.social:
            edges = self._draw_social(np.random.default_rng(s_social))
        del self._user_ids, self._item_ids
        return Dataset(interactions, users=users, items=items, edges=edges, name="synthetic")

    def affinity(self, users: npt.ArrayLike, items: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Ground-truth affinity of (user, item) index pairs (after :meth:`generate`).

        >>> gen = SyntheticGenerator(n_users=5, n_items=5, n_interactions=25, min_activity=1)
        >>> _ = gen.generate()
        >>> gen.affinity([0, 1], [2, 2]).shape
        (2,)
        """
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        out = np.empty(len(u), dtype=np.float32)
        # Blocks keep the gathered factor rows small at 10^7 pairs.
        step = max(1, _DENSE_CELLS // self.n_factors)
        for lo in range(0, len(u), step):
            uf = self.user_factors_[u[lo : lo + step]]
            vf = self.item_factors_[i[lo : lo + step]]
            out[lo : lo + step] = np.einsum("ij,ij->i", uf, vf)
        return out

    # ---- validation ---------------------------------------------------------------------
    def _validate(self) -> tuple[list[tuple[str, float]], npt.NDArray[np.float64]]:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"SyntheticGenerator: {message}")

        for name in ("n_users", "n_items", "n_factors", "n_communities", "n_categories"):
            need(int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.n_genres >= 1, f"n_genres must be >= 1, got {self.n_genres}")
        need(self.min_activity >= 0, f"min_activity must be >= 0, got {self.min_activity}")
        low = self.n_users * self.min_activity
        high = self.n_users * self.n_items
        need(
            low <= self.n_interactions <= high,
            f"n_interactions must be in [n_users * min_activity, n_users * n_items] = "
            f"[{low}, {high}], got {self.n_interactions}",
        )
        for name in ("temperature", "oversample", "ttl", "chunk_size"):
            need(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        need(self.oversample >= 1, f"oversample must be >= 1, got {self.oversample}")
        for name in ("user_spread", "item_spread", "popularity_exponent", "popularity_weight"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("activity_sigma", "rating_noise", "event_noise"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(
            self.end - self.start >= 1, f"end must be >= start + 1, got [{self.start}, {self.end}]"
        )
        for name in ("ephemeral_fraction", "homophily", "triadic_closure"):
            v = getattr(self, name)
            need(0 <= v <= 1, f"{name} must be in [0, 1], got {v}")
        if self.social:
            need(
                0 < self.avg_degree <= self.n_users - 1,
                f"avg_degree must be in (0, n_users - 1], got {self.avg_degree}",
            )
            need(
                self.degree_exponent > 2,
                f"degree_exponent must be > 2 (finite mean degree), got {self.degree_exponent}",
            )
        rating_p = np.asarray(self.rating_dist, dtype=np.float64)
        need(
            rating_p.shape == (5,) and bool((rating_p >= 0).all()) and rating_p.sum() > 0,
            f"rating_dist must be 5 non-negative weights (ratings 1..5), got {self.rating_dist}",
        )
        events = list(dict(self.event_mix).items())
        need(
            len(events) >= 1 and all(p >= 0 for _, p in events) and sum(p for _, p in events) > 0,
            f"event_mix must map event types to non-negative weights, got {self.event_mix}",
        )
        return events, rating_p / rating_p.sum()

    # ---- latent model -------------------------------------------------------------------
    def _draw_latent(self, rng: np.random.Generator) -> None:
        d = self.n_factors
        communities = rng.standard_normal((self.n_communities, d))
        categories = rng.standard_normal((self.n_categories, d))
        # Uneven community and category sizes, as in real data.
        comm_p = rng.dirichlet(np.full(self.n_communities, 2.0))
        cat_p = rng.dirichlet(np.full(self.n_categories, 2.0))
        self.community_ = rng.choice(self.n_communities, size=self.n_users, p=comm_p)
        self.item_category_ = rng.choice(self.n_categories, size=self.n_items, p=cat_p)
        # Unit-variance coordinates scaled by d ** -1/4 on both sides: the affinity (dot
        # product) is then ~ N(0, 1) over random pairs, whatever d.
        scale = d**-0.25
        uf = communities[self.community_] + self.user_spread * rng.standard_normal(
            (self.n_users, d)
        )
        uf *= scale / math.sqrt(1 + self.user_spread**2)
        vf = categories[self.item_category_] + self.item_spread * rng.standard_normal(
            (self.n_items, d)
        )
        vf *= scale / math.sqrt(1 + self.item_spread**2)
        self.user_factors_ = uf.astype(np.float32)
        self.item_factors_ = vf.astype(np.float32)
        # The mean item factor of each category: the expected affinity of user u to an item of
        # category c is user_factors_[u] @ category_factors_[c].
        self.category_factors_ = (categories * scale / math.sqrt(1 + self.item_spread**2)).astype(
            np.float32
        )

        ranks = rng.permutation(self.n_items) + 1.0
        pop = ranks**-self.popularity_exponent
        self.item_popularity_ = pop / pop.sum()

        # Heavy-tailed activity summing to exactly n_interactions, capped at the catalogue.
        weight = rng.lognormal(0.0, self.activity_sigma, self.n_users)
        counts = np.full(self.n_users, self.min_activity, dtype=np.int64)
        rest = self.n_interactions - int(counts.sum())
        while rest > 0:
            open_ = counts < self.n_items
            w = np.where(open_, weight, 0.0)
            counts += rng.multinomial(rest, w / w.sum())
            over = np.maximum(counts - self.n_items, 0)
            counts -= over
            rest = int(over.sum())
        self.user_activity_ = counts

    def _draw_users(self, rng: np.random.Generator) -> pd.DataFrame:
        k = self.n_communities
        # Each community leans towards one country and one age group: attributes carry
        # (noisy) community information, as in real data.
        country_p = 1.0 / np.arange(1, len(COUNTRIES) + 1)
        country_p /= country_p.sum()
        home = rng.choice(len(COUNTRIES), size=k, p=country_p)
        country = np.where(
            rng.random(self.n_users) < 0.6,
            home[self.community_],
            rng.choice(len(COUNTRIES), size=self.n_users, p=country_p),
        )
        pref_age = rng.choice(len(AGE_GROUPS), size=k, p=_AGE_P)
        age = np.where(
            rng.random(self.n_users) < 0.4,
            pref_age[self.community_],
            rng.choice(len(AGE_GROUPS), size=self.n_users, p=_AGE_P),
        )
        return pd.DataFrame(
            {
                "user_id": pd.Series(_as_str(self._user_ids)),
                "age_group": _take_strings(list(AGE_GROUPS), age),
                "country": _take_strings(list(COUNTRIES), country),
                "community": self.community_.astype(np.int64),
            }
        )

    def _draw_items(
        self, rng: np.random.Generator
    ) -> tuple[pd.DataFrame, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        n = self.n_items
        span = math.floor(self.end - self.start)
        created = self.start + np.floor(rng.random(n) * span)
        ephemeral = rng.random(n) < self.ephemeral_fraction
        expires = np.where(ephemeral, created + self.ttl, np.nan)
        alive_until = np.where(ephemeral, np.minimum(created + self.ttl, self.end), self.end)

        # Genres: 1..3 per item, drawn from the item's affinity to random genre prototypes,
        # so genres follow the latent factors.
        g = self.n_genres
        protos = rng.standard_normal((g, self.n_factors)).astype(np.float32)
        self.genre_factors_ = protos
        n_genres = np.minimum(1 + rng.binomial(2, 0.35, n), min(3, g))
        genres = _draw_genre_sets(rng, self.item_factors_, protos, n_genres, sharpness=3.0)

        created_year = created.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64)
        year = created_year + 1970 - rng.geometric(0.15, n) + 1
        price_level = rng.normal(3.0, 0.8, self.n_categories)
        price = np.round(np.exp(price_level[self.item_category_] + 0.4 * rng.standard_normal(n)), 2)
        items = pd.DataFrame(
            {
                "item_id": pd.Series(_as_str(self._item_ids)),
                "created_at": created,
                "expires_at": expires,
                "category": _take_strings(
                    [f"c{c}" for c in range(self.n_categories)], self.item_category_
                ),
                "genres": genres,
                "year": year.astype(np.int64),
                "price": price,
            }
        )
        return items, created, alive_until

    def _draw_interests(self, rng: np.random.Generator) -> pd.Series:
        """1..4 genre names per user (about 2.2 on average) from the user factor's affinity to
        the genre prototypes: less sharply than item genres, so users of one community share
        interests without all having the same ones."""
        counts = np.minimum(1 + rng.binomial(3, 0.4, self.n_users), min(4, self.n_genres))
        return _draw_genre_sets(rng, self.user_factors_, self.genre_factors_, counts, sharpness=1.0)

    # ---- interactions -------------------------------------------------------------------
    def _draw_interactions(
        self,
        seeds: np.random.SeedSequence,
        created: npt.NDArray[np.float64],
        alive_until: npt.NDArray[np.float64],
    ) -> tuple[
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.float64],
        npt.NDArray[np.float32],
    ]:
        """Rows ordered by user then time: user, item, timestamp and the pair's affinity."""
        counts = self.user_activity_
        cum = np.cumsum(counts)
        # Chunks are runs of users holding about chunk_size interactions each.
        cuts = np.searchsorted(cum, np.arange(self.chunk_size, cum[-1], self.chunk_size), "right")
        bounds = np.unique(np.concatenate([[0], cuts, [self.n_users]]))
        log_q = self.popularity_weight * np.log(self.item_popularity_)
        proposal = _Proposal.build(log_q, self.item_category_, self.n_categories)
        chunk_seeds = seeds.spawn(len(bounds) - 1)
        span = math.ceil(self.end - self.start)

        parts: list[tuple[npt.NDArray[Any], ...]] = []
        bar = tqdm(total=self.n_users, unit="user", desc="synthetic", disable=not self.progress)
        with bar:
            for c, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                rng = np.random.default_rng(chunk_seeds[c])
                users = np.arange(lo, hi)
                u, i, aff = self._choose(rng, users, counts[lo:hi], proposal)
                life = alive_until[i] - created[i]
                t = created[i] + np.floor(rng.random(len(i)) * life)
                # Whole seconds since start < span + 1: one exact float key sorts by (u, t).
                order = np.argsort((u - lo) * (span + 1.0) + (t - self.start))
                parts.append(
                    (u[order].astype(np.int32), i[order].astype(np.int32), t[order], aff[order])
                )
                bar.update(hi - lo)
        u_all, i_all, t_all, aff_all = (np.concatenate(p) for p in zip(*parts, strict=True))
        return u_all, i_all, t_all, aff_all

    def _choose(
        self,
        rng: np.random.Generator,
        users: npt.NDArray[np.int64],
        n: npt.NDArray[np.int64],
        proposal: _Proposal,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(user, item, affinity) rows: ``n[k]`` distinct items for each ``users[k]``."""
        n_items = self.n_items
        pool_size = np.ceil(self.oversample * n).astype(np.int64) + 8
        # A pool as large as the catalogue costs as much as scoring the catalogue exactly.
        dense = pool_size >= n_items
        sparse = ~dense & (n > 0)
        out_u: list[npt.NDArray[np.int64]] = [np.zeros(0, np.int64)]
        out_i: list[npt.NDArray[np.int64]] = [np.zeros(0, np.int64)]
        out_a: list[npt.NDArray[np.float32]] = [np.zeros(0, np.float32)]

        # Users x categories arrays are formed per block: bounded even with many categories.
        pooled = np.flatnonzero(sparse)
        step = max(1, _DENSE_CELLS // self.n_categories)
        for lo in range(0, len(pooled), step):
            rows = pooled[lo : lo + step]
            u, i, a, short = self._choose_pooled(
                rng, users[rows], n[rows], pool_size[rows], proposal
            )
            out_u.append(u)
            out_i.append(i)
            out_a.append(a)
            dense[rows[short]] = True  # a rare pool with too few distinct items: draw exactly

        if dense.any():
            du, dn = users[dense], n[dense]
            block = max(1, _DENSE_CELLS // n_items)
            for lo in range(0, len(du), block):
                bu, bn = du[lo : lo + block], dn[lo : lo + block]
                aff = self.user_factors_[bu] @ self.item_factors_.T
                logits = aff / self.temperature + proposal.log_q + rng.gumbel(size=aff.shape)
                order = np.argsort(-logits, axis=1)
                take = np.arange(n_items)[None, :] < bn[:, None]
                out_u.append(np.repeat(bu, bn))
                out_i.append(order[take])
                out_a.append(np.take_along_axis(aff, order, axis=1)[take])
        return np.concatenate(out_u), np.concatenate(out_i), np.concatenate(out_a)

    def _choose_pooled(
        self,
        rng: np.random.Generator,
        su: npt.NDArray[np.int64],
        sn: npt.NDArray[np.int64],
        sm: npt.NDArray[np.int64],
        proposal: _Proposal,
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.bool_]
    ]:
        """Rows for users ``su`` from candidate pools of ``sm`` draws, and which users' pools
        held fewer than ``sn`` distinct items (they get no rows here)."""
        n_items, temp = self.n_items, self.temperature
        # Proposal per user: a category by its popularity mass times exp(expected affinity /
        # temperature), then an item of it by popularity. Its importance weight is only
        # exp((affinity - expected affinity) / temperature): the item's deviation from its
        # category, much less variable than the affinity itself, so a small pool suffices.
        expected = self.user_factors_[su] @ self.category_factors_.T
        logit = expected / temp + proposal.log_cat_mass
        cat_p = np.exp(logit - logit.max(axis=1, keepdims=True))
        cat_p /= cat_p.sum(axis=1, keepdims=True)
        # Draws of one user are exchangeable: only how many fall in each category matters.
        local, draws = proposal.draw(rng, rng.multinomial(sm, cat_p))

        keys, mult = np.unique(local * n_items + draws, return_counts=True)
        owner, item = keys // n_items, keys % n_items
        aff = self.affinity(su[owner], item)
        deviation = aff - expected[owner, self.item_category_[item]]
        score = np.log(mult) + deviation / temp + rng.gumbel(size=len(keys))
        # By user, best first: one float sort key (spacing users further apart than any score
        # difference) is several times faster than a lexsort.
        spacing = float(np.ptp(score)) + 1.0 if len(score) else 1.0
        order = np.argsort(owner * spacing - score)
        owner, item, aff = owner[order], item[order], aff[order]
        distinct = np.bincount(owner, minlength=len(su))
        first = np.cumsum(distinct) - distinct
        rank = np.arange(len(owner)) - np.repeat(first, distinct)
        short = distinct < sn
        keep = (rank < sn[owner]) & ~short[owner]
        return su[owner[keep]], item[keep], aff[keep], short

    # ---- social graph -------------------------------------------------------------------
    def _draw_social(self, rng: np.random.Generator) -> pd.DataFrame:
        edges, self.degree_weight_ = draw_social_graph(
            rng,
            self._user_ids,
            self.community_,
            n_communities=self.n_communities,
            avg_degree=self.avg_degree,
            degree_exponent=self.degree_exponent,
            homophily=self.homophily,
            triadic_closure=self.triadic_closure,
            start=self.start,
            end=self.end,
            progress=self.progress,
        )
        return edges


def draw_social_graph(
    rng: np.random.Generator,
    user_ids: Sequence[str] | pa.Array,
    community: npt.NDArray[np.int64],
    *,
    n_communities: int | None = None,
    avg_degree: float = 10.0,
    degree_exponent: float = 2.5,
    homophily: float = 0.8,
    triadic_closure: float = 0.3,
    start: float = _DEFAULT_START,
    end: float = _DEFAULT_START + 365 * _SECONDS_PER_DAY,
    progress: bool = False,
) -> tuple[pd.DataFrame, npt.NDArray[np.float64]]:
    """A Chung-Lu friendship graph over ``user_ids`` with power-law expected degrees
    (tail exponent ``degree_exponent``), a share ``homophily`` of partners drawn within the
    user's ``community`` (ints ``0..n_communities-1``), ``triadic_closure`` of the
    friendships closing wedges (after both of their edges), uniform times in
    ``[start, end)``. Returns two directed ``connect`` rows per friendship (``src_user_id``,
    ``dst_user_id``, ``timestamp``) and the users' degree weights. :class:`SyntheticGenerator`
    uses it with latent communities; it also gives data sets without a social graph (e.g.
    MovieLens) a seeded *synthetic* one, homophilous on a real attribute."""
    n = len(user_ids)
    k_comm = int(community.max()) + 1 if n_communities is None else n_communities
    n_pairs = round(n * avg_degree / 2)
    n_closing = round(n_pairs * triadic_closure)
    span = math.floor(end - start)

    # Pareto weights (tail exponent degree_exponent) -> Chung-Lu expected degrees; capped
    # at sqrt(total) where a hub would need more than one edge to some partners.
    weight = (1.0 - rng.random(n)) ** (-1.0 / (degree_exponent - 1.0))
    weight = np.minimum(weight, math.sqrt(weight.sum()))

    # Users sorted by community: each community is one run of the cumulative weights, so a
    # within-community draw is an inverse-CDF draw restricted to that run.
    by_comm = np.argsort(community, kind="stable")
    cum = np.cumsum(weight[by_comm])
    cum0 = np.r_[0.0, cum]
    sorted_comm = community[by_comm]
    comm_lo = cum0[np.searchsorted(sorted_comm, np.arange(k_comm), "left")]
    comm_hi = cum0[np.searchsorted(sorted_comm, np.arange(k_comm), "right")]

    def chung_lu(k: int) -> tuple[npt.NDArray[Any], ...]:
        src = by_comm[_draw_cdf(rng, cum, np.zeros(k), np.full(k, cum[-1]))]
        within = rng.random(k) < homophily
        lo = np.where(within, comm_lo[community[src]], 0.0)
        hi = np.where(within, comm_hi[community[src]], cum[-1])
        dst = by_comm[_draw_cdf(rng, cum, lo, hi)]
        return src, dst, start + np.floor(rng.random(k) * span)

    bar = tqdm(total=n_pairs, unit="pair", desc="social graph", disable=not progress)
    with bar:
        empty = np.zeros(0, dtype=np.int64)
        a, b, t = _top_up(chung_lu, (empty, empty, np.zeros(0)), n_pairs - n_closing, n)
        bar.update(len(a))

        # Triadic closure in two rounds: a random edge x - y and a random friend z of y
        # close the wedge x - y - z; the second round may close wedges made by the first.
        # A closing edge comes after both edges of its wedge.
        for r in range(2):
            target = len(a) + n_closing // 2 + (n_closing % 2 if r == 1 else 0)
            if target == len(a) or len(a) == 0:
                continue
            before = len(a)
            a, b, t = _top_up(_wedge_closer(rng, a, b, t, n, end), (a, b, t), target, n)
            bar.update(len(a) - before)

    # Two directed rows per friendship, ordered by (src, dst).
    indptr, friend, when = _friend_lists(a, b, t, n)
    edges = pd.DataFrame(
        {
            "src_user_id": _take_strings(user_ids, np.repeat(np.arange(n), np.diff(indptr))),
            "dst_user_id": _take_strings(user_ids, friend),
            "timestamp": when,
        }
    )
    return edges, weight


# ---- helpers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Proposal:
    """The popularity law arranged for drawing items of given categories."""

    log_q: npt.NDArray[np.float64]  # popularity_weight * log(popularity), per item
    by_cat: npt.NDArray[np.int64]  # items sorted by category
    cum: npt.NDArray[np.float64]  # cumulative (unnormalised) popularity in that order
    cat_start: npt.NDArray[np.int64]  # each category's run by_cat[start:end]
    cat_end: npt.NDArray[np.int64]

    @classmethod
    def build(
        cls, log_q: npt.NDArray[np.float64], category: npt.NDArray[np.int64], k: int
    ) -> _Proposal:
        by_cat = np.argsort(category, kind="stable")
        cum = np.cumsum(np.exp(log_q - log_q.max())[by_cat])
        sorted_cat = category[by_cat]
        start = np.searchsorted(sorted_cat, np.arange(k), "left")
        end = np.searchsorted(sorted_cat, np.arange(k), "right")
        return cls(log_q, by_cat, cum, start, end)

    @property
    def log_cat_mass(self) -> npt.NDArray[np.float64]:
        cum0 = np.r_[0.0, self.cum]
        with np.errstate(divide="ignore"):  # an empty category has mass 0: never drawn
            mass: npt.NDArray[np.float64] = np.log(cum0[self.cat_end] - cum0[self.cat_start])
        return mass

    def draw(
        self, rng: np.random.Generator, counts: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``counts[r, c]`` items of category ``c`` by popularity for each row ``r``: (row, item).

        One category at a time, so each inverse-CDF search stays in a cache-sized run."""
        rows = np.arange(len(counts))
        out_r, out_i = [], []
        for c in np.flatnonzero(counts.sum(axis=0)):
            lo, hi = int(self.cat_start[c]), int(self.cat_end[c])
            run = self.cum[lo:hi]
            base = self.cum[lo - 1] if lo > 0 else 0.0
            k = counts[:, c]
            u = base + rng.random(int(k.sum())) * (run[-1] - base)
            pos = np.minimum(np.searchsorted(run, u, side="right"), hi - lo - 1)
            out_r.append(np.repeat(rows, k))
            out_i.append(self.by_cat[lo + pos])
        return np.concatenate(out_r), np.concatenate(out_i)


def _draw_cdf(
    rng: np.random.Generator,
    cum: npt.NDArray[np.float64],
    lo: npt.NDArray[np.float64],
    hi: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Inverse-CDF draws restricted to the cumulative-weight range ``[lo, hi)`` of each row."""
    idx = np.searchsorted(cum, lo + rng.random(len(lo)) * (hi - lo), side="right")
    return np.minimum(idx, len(cum) - 1)


def _friend_lists(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], t: npt.NDArray[np.float64], n: int
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.float64]]:
    """Both directions of the pairs ``a - b`` as CSR arrays ``(indptr, friend, time)``, friends
    sorted within each user. SciPy's counting sort is several times faster than an argsort."""
    both = sp.csr_matrix((np.r_[t, t], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    both.sort_indices()
    return both.indptr, both.indices, both.data


def _wedge_closer(
    rng: np.random.Generator,
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    t: npt.NDArray[np.float64],
    n: int,
    end: float,
) -> Callable[[int], tuple[npt.NDArray[Any], ...]]:
    """A ``draw(k)`` of ``k`` pairs closing random wedges ``x - y - z`` of the graph ``a - b``:
    ``x -> y`` is a random directed edge, ``z`` a random friend of ``y``; the pair ``x - z`` is
    timed after both edges of its wedge."""
    indptr, friend, when = _friend_lists(a, b, t, n)
    owner = np.repeat(np.arange(n), np.diff(indptr))

    def draw(k: int) -> tuple[npt.NDArray[Any], ...]:
        pick = rng.integers(0, len(friend), k)
        x, y, t_xy = owner[pick], friend[pick], when[pick]
        hop = indptr[y] + (rng.random(k) * (indptr[y + 1] - indptr[y])).astype(np.int64)
        z, t_yz = friend[hop], when[hop]
        after = np.maximum(t_xy, t_yz)
        return x, z, after + np.floor(rng.random(k) * (end - after))

    return draw


def _top_up(
    draw: Callable[[int], tuple[npt.NDArray[Any], ...]],
    have: tuple[npt.NDArray[Any], ...],
    target: int,
    n: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Add pairs ``low < high`` from ``draw(k)`` to the distinct pairs ``have`` until there are
    ``target``, skipping self-loops and pairs already there (among repeats the earliest draw
    wins); stops short when draws keep adding nothing (a nearly complete graph)."""
    a, b, t = have
    known = np.sort(a * n + b)  # pair keys, sorted for membership by binary search
    for _ in range(50):
        missing = target - len(a)
        if missing <= 0:
            break
        x, y, tx = draw(missing + missing // 8 + 16)  # a margin for self-loops and repeats
        lo, hi = np.minimum(x, y), np.maximum(x, y)
        key = lo.astype(np.int64) * n + hi
        fresh = lo != hi
        if len(known):
            at = np.minimum(np.searchsorted(known, key), len(known) - 1)
            fresh &= known[at] != key
        cand = np.flatnonzero(fresh)
        _, first = np.unique(key[cand], return_index=True)
        new = np.sort(cand[first])[:missing]
        a, b, t = np.r_[a, lo[new]], np.r_[b, hi[new]], np.r_[t, tx[new]]
        added = np.sort(key[new])
        known = np.insert(known, np.searchsorted(known, added), added)
    return a, b, t


def _quantile_cut(z: npt.NDArray[np.float32], p: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Class 0..len(p)-1 of each value: the lowest ``p[0]`` share is 0, and so on up."""
    p = p / p.sum()
    inner = np.cumsum(p)[:-1]
    if len(z) == 0 or len(inner) == 0:
        return np.zeros(len(z), dtype=np.int64)
    cuts = np.quantile(z, np.clip(inner, 0.0, 1.0))
    return np.searchsorted(cuts, z, side="left").astype(np.int64)


def _take_strings(labels: Sequence[str] | pa.Array, codes: npt.ArrayLike) -> pd.Series:
    """A pandas string column ``labels[codes]``, built by Arrow ``take`` (fast at 10^7 rows)."""
    if not isinstance(labels, pa.Array):
        labels = pa.array(list(labels), type=pa.string())
    return pd.Series(_as_str(labels.take(pa.array(np.asarray(codes, np.int64)))))


def _as_str(arr: pa.Array) -> Any:
    """The Arrow strings as pandas' default ``str`` array, without a copy."""
    return pd.array(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _id_labels(prefix: str, n: int) -> pa.Array:
    """``prefix + str(k)`` for k in 0..n-1."""
    return pa.array(np.strings.add(prefix, np.arange(n).astype(np.str_)), type=pa.string())


def _draw_genre_sets(
    rng: np.random.Generator,
    factors: npt.NDArray[np.float32],
    protos: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    *,
    sharpness: float,
) -> pd.Series:
    """``counts[r]`` distinct genres for each row of ``factors``, drawn without replacement
    (Gumbel-top-k) with logits ``sharpness * factors @ protos.T``; pipe-joined names."""
    n, g = len(factors), len(protos)
    k_max = int(counts.max()) if n else 1
    chosen = np.empty((n, k_max), dtype=np.int64)
    block = max(1, _DENSE_CELLS // g)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        logits = sharpness * (factors[lo:hi] @ protos.T) + rng.gumbel(size=(hi - lo, g))
        top = np.argpartition(-logits, k_max - 1, axis=1)[:, :k_max]
        best_first = np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1)
        chosen[lo:hi] = np.take_along_axis(top, best_first, axis=1)
    # Unused slots get the sentinel g, then each row is sorted so a set has one spelling.
    chosen[np.arange(k_max)[None, :] >= counts[:, None]] = g
    chosen.sort(axis=1)
    return _genre_strings(chosen, g)


def _genre_strings(chosen: npt.NDArray[np.int64], g: int) -> pd.Series:
    """Pipe-joined names of each row's sorted genre indices (``g`` = none); each distinct set
    is joined once, found through one integer key per row (base ``g + 1`` digits)."""
    key = np.zeros(len(chosen), dtype=np.int64)
    for col in chosen.T:
        key = key * (g + 1) + col
    sets, inverse = np.unique(key, return_inverse=True)
    labels = []
    for code in sets.tolist():
        names = []
        for _ in range(chosen.shape[1]):
            code, j = divmod(code, g + 1)
            if j < g:
                names.append(f"g{j}")
        labels.append("|".join(reversed(names)))
    return _take_strings(labels, inverse)
