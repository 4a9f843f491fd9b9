"""Built-in plugin ``knowledge``: answers grounded in the operator's own documents.

Markdown files in the bot profile's ``knowledge/`` folder are cut into passages (by
heading, then paragraph), embedded with the bot's embedding model when the plugin
starts, and for each message the most similar passages are given to the model with
their source (``file.md#heading``), which it is asked to cite. ``/sources QUESTION``
shows what would be used. A good start for a support bot.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from core.plugins import Context, JobContext, Plugin, Rest

log = logging.getLogger(__name__)


class KnowledgeSettings(BaseModel):
    folder: str = Field(default="knowledge", description="Inside the bot profile's folder.")
    top_k: int = Field(default=3, ge=1, le=10)
    min_similarity: float = Field(default=0.35, ge=-1, le=1)
    passage_chars: int = Field(default=700, ge=100, description="Longest passage.")
    budget_chars: int = Field(default=1500, ge=100, description="Most text given per turn.")


plugin = Plugin(
    "knowledge",
    description="Answers from the operator's Markdown documents.",
    settings=KnowledgeSettings,
)


@dataclass(frozen=True, slots=True)
class Passage:
    source: str
    text: str


def passages(folder: Path, longest: int) -> list[Passage]:
    """Every Markdown file under ``folder``, cut at headings, then at paragraphs."""
    found: list[Passage] = []
    for path in sorted(folder.rglob("*.md")):
        found += _cut(
            path.relative_to(folder).as_posix(), path.read_text("utf-8", "replace"), longest
        )
    return found


def _cut(name: str, text: str, longest: int) -> list[Passage]:
    found: list[Passage] = []
    heading, chunk = "", list[str]()
    for line in [*text.splitlines(), "# end"]:
        title = re.match(r"^#{1,6}\s+(.*)", line)
        size = sum(len(c) for c in chunk)
        if title or (not line.strip() and size >= longest // 2) or size >= longest:
            body = "\n".join(chunk).strip()
            if body:
                found.append(Passage(f"{name}#{heading}" if heading else name, body))
            chunk = []
        if title:
            heading = title.group(1).strip()
        elif line.strip() or chunk:
            chunk.append(line)
    return found


def _pieces(passage: Passage) -> list[str]:
    """What a passage is matched by: its source with its start, and each sentence."""
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+|\n+", passage.text) if x.strip()]
    return [f"{passage.source}: {passage.text[:200]}", *sentences]


@plugin.setup
async def load(ctx: JobContext) -> None:
    settings: KnowledgeSettings = ctx.settings
    if not ctx.can_embed:
        raise RuntimeError("knowledge needs the embedding model: enable [memory] in the profile")
    folder = ctx.profile_folder / settings.folder
    found = passages(folder, settings.passage_chars) if folder.is_dir() else []
    if not found:
        log.warning("knowledge: no Markdown documents in %s", folder)
    # A passage is as relevant as its best-matching sentence: a question is short, and
    # short texts compare better with short texts than with a whole section.
    owners: list[int] = []
    texts: list[str] = []
    for index, passage in enumerate(found):
        pieces = _pieces(passage)
        texts += pieces
        owners += [index] * len(pieces)
    vectors = await ctx.embed(texts) if texts else np.zeros((0, 1))
    ctx.state["passages"], ctx.state["vectors"] = found, vectors
    ctx.state["owners"] = np.asarray(owners, dtype=np.int64)
    log.info("knowledge: %d passages (%d sentences) from %s", len(found), len(texts), folder)


async def relevant(ctx: Context, question: str, vector: Any = None) -> list[tuple[float, Passage]]:
    """The passages that answer ``question`` best (``vector``: its embedding, if known)."""
    settings: KnowledgeSettings = ctx.settings
    found: list[Passage] = ctx.state.get("passages", [])
    if not found or not ctx.can_embed:
        return []
    query = vector if vector is not None else (await ctx.embed([question]))[0]
    similarity = np.asarray(ctx.state["vectors"]) @ query
    scores = np.full(len(found), -1.0)
    np.maximum.at(scores, ctx.state["owners"], similarity)
    best = np.argsort(-scores)[: settings.top_k]
    return [(float(scores[i]), found[i]) for i in best if scores[i] >= settings.min_similarity]


@plugin.on_message(priority=10)
async def ground(ctx: Context) -> None:
    settings: KnowledgeSettings = ctx.settings
    chosen, used = [], 0
    # perceive already embedded the message with the same model: no second embedding
    for _, passage in await relevant(ctx, ctx.text, ctx.vector):
        if used + len(passage.text) > settings.budget_chars:
            break
        chosen.append(f"[{passage.source}]\n{passage.text}")
        used += len(passage.text)
    if chosen:
        ctx.note(
            "Passages from the documents you answer from. Use them when they answer the "
            "question, and name the source in brackets, like [guide.md#Section]:\n\n"
            + "\n\n".join(chosen)
        )


@plugin.command("sources", help="which of my documents I would use to answer a question")
async def sources(ctx: Context, question: Rest) -> str:
    found = await relevant(ctx, question)
    if not found:
        return "None of my documents matches that."
    return "\n".join(f"- [{p.source}] ({score:.2f}) {p.text[:120]}" for score, p in found)
