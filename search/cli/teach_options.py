"""The `search` and `classify` options for searching by example and scoring with probes, and their checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from indexer.errors import BadInput

LikeOpt = Annotated[
    Optional[list[str]],
    typer.Option("--like", help="more like this: a window id, PATH (its windows' mean) or PATH@SECONDS; repeatable"),
]
UnlikeOpt = Annotated[
    Optional[list[str]], typer.Option("--unlike", help="less like this (same targets as --like); repeatable")
]
LikeFileOpt = Annotated[
    Optional[list[Path]], typer.Option("--like-file", help="more like this clip (embedded as the index embeds audio)")
]
IncludeSelfOpt = Annotated[
    bool, typer.Option("--include-self", help="keep the --like targets' own windows among the hits")
]
TextWeightOpt = Annotated[float, typer.Option("--text-weight", help="Rocchio weight of the text")]
LikeWeightOpt = Annotated[float, typer.Option("--like-weight", help="Rocchio weight of the --like examples' mean")]
UnlikeWeightOpt = Annotated[
    float, typer.Option("--unlike-weight", help="Rocchio weight of the --unlike examples' mean")
]
SearchProbeOpt = Annotated[
    Optional[str], typer.Option("--probe", help="rank windows by a probe's probability of a class: PROBE:CLASS")
]
ClassifyProbeOpt = Annotated[
    Optional[str], typer.Option("--probe", help="score with a trained probe (`soundsift train`) instead of --labels")
]


def like_query(like, unlike, like_file, include_self, text_weight, like_weight, unlike_weight, probe, queries):
    """The LikeQuery the options ask for (None without examples), checked before any model loads."""
    from search.core.like import LikeQuery, LikeWeights
    from search.core.probes import parse_probe_class

    if probe:
        parse_probe_class(probe)
        if like or unlike or like_file or queries:
            raise BadInput("--probe PROBE:CLASS ranks by the probe alone: give it without queries, --like or --unlike")
        return None
    for f in like_file or []:
        if not Path(f).is_file():
            raise BadInput(f"no such file: {f}")
    if not (like or unlike or like_file):
        if not queries:
            raise BadInput("give a query, --said WORDS, --like/--like-file TARGET or --probe PROBE:CLASS")
        return None
    if not (like or like_file or queries):
        raise BadInput("--unlike only moves away from examples: add a query or a --like/--like-file target")
    return LikeQuery(
        like=list(like or []),
        unlike=list(unlike or []),
        include_self=include_self,
        weights=LikeWeights(text_weight, like_weight, unlike_weight),
    )


def embed_like_files(sx, query, like_files):
    """``query`` with the --like-file clips embedded through the index's audio path (the audio tower loads here)."""
    if query is None or not like_files:
        return query
    from search.core.like import embed_clip

    encoder = sx.encoder.full()
    query.like_vectors = [embed_clip(f, encoder, sx.settings, sx.plugins) for f in like_files]
    return query


def remote_like(query, probe: str | None, like_files) -> dict:
    """The /search body fields for examples and probes."""
    if like_files:
        raise BadInput("--like-file cannot go through the server yet: POST the clip to /search/like-file on it")
    body: dict = {}
    if probe:
        body["probe"] = probe
    if query is not None:
        body.update(
            like=[target_json(t) for t in query.like],
            unlike=[target_json(t) for t in query.unlike],
            include_self=query.include_self,
            like_weights={"text": query.weights.text, "like": query.weights.like, "unlike": query.weights.unlike},
        )
    return body


def target_json(spec: str):
    """A CLI target as POST /search takes it: a window id, or {path, start} (the server resolves the path)."""
    import os

    text = str(spec).strip()
    if text.isdigit() and not os.path.exists(text):
        return int(text)
    path, at, seconds = text.rpartition("@")
    if at:
        try:
            return {"path": os.path.abspath(path), "start": float(seconds)}
        except ValueError:
            pass
    return {"path": os.path.abspath(text)}
