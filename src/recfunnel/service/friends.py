"""Friend suggestions in the service: the live social graph and the model that reads it.

At start the graph is read from the store (every edge, streamed) and a friend model is
prepared: the saved friend funnel in ``settings.friends_model_dir`` when there is one,
otherwise mutual-friends retrieval. Either way a **fallback chain** fills the slate when the
model returns fewer than ``n`` users — popular users in the member's community, then
popular users overall — so a member with no connections (or one the graph has never seen)
still gets suggestions.

Writes go to the store first (durable), then here, through the store's change log in every
worker (``service/changes.py``): ``POST /v1/edges`` applies edges to the in-memory graph
overlay, so the next suggestion sees them (no retraining, no rebuild); ``POST /v1/users``
registers profiles of new members; deleting a user isolates their row.
One lock orders writes and reads of the graph.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfunnel.core.errors import ArtifactError, RecfunnelError, UnknownIdError
from recfunnel.core.friends import FriendGenerator
from recfunnel.core.generator import ScoredList
from recfunnel.core.graph import SocialGraph
from recfunnel.core.store import Store

log = logging.getLogger("recfunnel.service")


def _edges_frame(store: Store) -> pd.DataFrame:
    table = store.to_arrow("edges")
    return table.to_pandas()


class FriendService:
    """The live graph, the friend model and the fallback chain (thread-safe)."""

    def __init__(
        self,
        graph: SocialGraph,
        model: FriendGenerator,
        *,
        version: str,
        profiles: pd.DataFrame | None = None,
    ) -> None:
        self.graph = graph
        self.model = model
        self.version = version
        self._lock = threading.RLock()
        self._fallbacks: list[tuple[str, FriendGenerator]] = []
        self._popular_cache: tuple[int, Any, Any] | None = None
        #: Deleted users (isolated in the graph, but a fallback fitted before the deletion
        #: still ranks them by what it saw): never suggested, until they come back.
        self._forgotten: set[str] = set()
        self._refit_fallbacks(profiles)

    @classmethod
    def from_store(cls, store: Store, model_dir: Path | None) -> FriendService:
        """Read every edge and profile from ``store``; load the funnel in ``model_dir`` (or
        use mutual-friends retrieval when ``None``)."""
        from recfunnel.candidates.friends import make_friend_generator

        users = store.users_frame()
        edges = _edges_frame(store)
        ids = pd.unique(
            pd.concat(
                [users["user_id"].astype(str), edges["src_user_id"].astype(str),
                 edges["dst_user_id"].astype(str)]
            )
        ).tolist()  # fmt: skip
        from recfunnel.core.ids import IdIndex

        graph = SocialGraph.from_edges(edges, users=IdIndex(ids), source="store edges")
        model: FriendGenerator
        if model_dir is not None:
            from recfunnel.pipeline.friend_funnel import FriendFunnel

            if not (Path(model_dir) / "manifest.json").is_file():
                raise ArtifactError(f"{model_dir}: no friend model (manifest.json) there")
            model = FriendFunnel.load(model_dir, graph, user_features=users)
            version = f"friend_funnel:{Path(model_dir).name}"
        else:
            model = make_friend_generator("mutual_friends").fit(graph)
            version = "mutual_friends"
        service = cls(graph, model, version=version, profiles=users)
        log.info("friend suggestions: %r, model %s", graph, version)
        return service

    def _refit_fallbacks(self, users: pd.DataFrame | None) -> None:
        """Popular-in-community (when profiles have a community) then popular overall."""
        from recfunnel.candidates.friends import make_friend_generator

        self._fallbacks = []
        profiles = users if users is not None and len(users.columns) > 1 else None
        for name in ("community_popular", "popular_users"):
            gen = make_friend_generator(name)
            try:
                gen.fit(self.graph, user_features=profiles)
            except RecfunnelError as exc:  # e.g. no community attribute: skip this fallback
                log.info("friend fallback %s skipped: %s", name, exc)
                continue
            self._fallbacks.append((name, gen))

    # ---- reads ------------------------------------------------------------------------------
    def suggest(self, user_id: str, n: int) -> tuple[list[tuple[str, float, str]], str]:
        """Up to ``n`` ``(user_id, score, source)`` suggestions and the model version."""
        with self._lock:
            if user_id not in self.graph:
                # Never seen (no profile, no edge): the most-connected users. A GET does not
                # add the id to the graph.
                return self._popular(n), self.version
            out: list[tuple[str, float, str]] = []
            seen: set[str] = set()
            chain: list[tuple[str, FriendGenerator]] = [("model", self.model), *self._fallbacks]
            gone = self._forgotten
            for name, gen in chain:
                if len(out) >= n:
                    break
                try:
                    lists: list[ScoredList] = gen.recommend(
                        [user_id], n + min(len(gone), n), exclude=[list(seen)] if seen else ()
                    )
                except UnknownIdError:
                    continue
                for uid, score in zip(lists[0].ids, lists[0].scores, strict=True):
                    if uid not in seen and uid not in gone and len(out) < n:
                        seen.add(uid)
                        out.append((uid, float(score), name))
            return out, self.version

    def _popular(self, n: int) -> list[tuple[str, float, str]]:
        if self._popular_cache is None or self._popular_cache[0] != self.graph.version:
            degree = self.graph.degree()
            k = min(len(degree), 1000)
            top = np.argpartition(-degree, k - 1)[:k] if k else np.zeros(0, np.int64)
            top = top[np.lexsort((top, -degree[top]))]
            self._popular_cache = (self.graph.version, self.graph.decode(top), degree[top])
        _, ids, deg = self._popular_cache
        gone = self._forgotten
        k = n + min(len(gone), n)
        out = [(str(u), float(d), "popular_users") for u, d in zip(ids[:k], deg[:k], strict=True)]
        return [row for row in out if row[0] not in gone][:n]

    # ---- writes -----------------------------------------------------------------------------
    def apply_edges(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Edges already stored: apply them to the live graph."""
        rows = list(rows)
        with self._lock:
            self._forgotten.difference_update(
                str(r[k]) for r in rows for k in ("src_user_id", "dst_user_id")
            )
            self.graph.add_edges(
                [str(r["src_user_id"]) for r in rows],
                [str(r["dst_user_id"]) for r in rows],
                [str(r.get("kind") or "connect") for r in rows],
                [np.nan if r.get("timestamp") is None else float(r["timestamp"]) for r in rows],
            )

    def remove_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        pairs = list(pairs)
        with self._lock:
            self.graph.remove_edges([a for a, _ in pairs], [b for _, b in pairs])

    def add_profiles(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Users upserted with attributes: new members join the graph with their profile."""
        frame = pd.DataFrame(
            [{"user_id": str(r["user_id"]), **(r.get("attributes") or {})} for r in rows]
        )
        if frame.empty:
            return
        with self._lock:
            self._forgotten.difference_update(frame["user_id"].tolist())
            self.graph.add_users(frame["user_id"].tolist())
            add = getattr(self.model, "add_profiles", None)
            if add is not None:
                add(frame)

    def forget(self, user_ids: Iterable[str]) -> None:
        ids = [str(u) for u in user_ids]
        with self._lock:
            self._forgotten.update(ids)
            self.graph.forget_users(ids)
