"""image-text-to-text's result: each reply beside thumbnails of the images it was about, and its question.

The job's fields are read back into conversations by the task's own rule
(:func:`mc_jupyter.tasks.image_text_to_text.conversations_of`), so each reply sits beside the images its
conversation held. Static HTML with the thumbnails embedded as PNG, and a ``text/plain`` of the replies.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Optional

from ..errors import UserError
from ..tasks.image_text_to_text import Conversation, conversations_of
from .images import BOX, png_base64

Bundle = Dict[str, Any]
THUMBNAIL_SIDE = 160


def _texts(value: Any) -> Optional[List[str]]:
    """One input's replies: a text, or a list of texts (``num_return_sequences``)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


def _thumbnail(image: Any) -> str:
    shown = image
    if max(image.size) > THUMBNAIL_SIDE:
        shown = image.copy()
        shown.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return (f'<img src="data:image/png;base64,{png_base64(shown)}" title="{image.size[0]}×{image.size[1]}" '
            f'style="margin:0 6px 6px 0;border-radius:4px;vertical-align:top"/>')


def _question(conversation: Conversation) -> str:
    """The text of the conversation's last user message (what the reply answers)."""
    for message in reversed(conversation):
        if message["role"] == "user":
            return " ".join(p["text"] for p in message["content"] if p["type"] == "text")
    return ""


def _row(conversation: Conversation, replies: List[str]) -> str:
    images = "".join(_thumbnail(p["image"]) for m in conversation for p in m["content"] if p["type"] == "image")
    question = _question(conversation)
    asked = f'<div style="color:#777;font-size:12px;margin-bottom:4px">{html.escape(question)}</div>' if question else ""
    answers = "".join(f'<div style="white-space:pre-wrap;margin-bottom:4px">{html.escape(r)}</div>' for r in replies)
    return (f'<div style="display:flex;align-items:flex-start;margin-bottom:8px">'
            f'<div style="flex:none">{images}</div><div style="{BOX};min-width:12em">{asked}{answers}</div></div>')


def render_reply(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    """The replies beside their images, or None when ``value`` is not replies to the fields' inputs (a
    workflow's output may be something else) or the fields cannot be read back."""
    if _texts(value) is None and not (isinstance(value, list) and value and all(_texts(v) for v in value)):
        return None
    try:
        conversations, many = conversations_of(fields)
    except UserError:
        return None
    if many:
        if not isinstance(value, list) or len(value) != len(conversations):
            return None
        replies = [_texts(v) for v in value]
    else:
        replies = [_texts(value)]
    if any(r is None for r in replies):
        return None
    lines = [" | ".join(r) for r in replies]
    plain = lines[0] if len(lines) == 1 else "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))
    rows = "".join(_row(c, r) for c, r in zip(conversations, replies))
    return {"text/plain": plain, "text/html": f"<div>{rows}</div>"}
