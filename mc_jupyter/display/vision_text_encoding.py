"""vision-text-encoding's result in a few words: per prompt, the hidden states' shape and dtype, the layer,
and how many of its tokens are text, image and video (the arrays themselves are too big to show)."""

from __future__ import annotations

import html
from typing import Any, Dict, List, Optional

from .images import BOX

Bundle = Dict[str, Any]
_TYPE_NAMES = {0: "text", 1: "image", 2: "video"}


def is_encoding(value: Any) -> bool:
    """A vision-text-encoding result: ``{hidden_states, token_types, spec}``, the states an array."""
    return (isinstance(value, dict) and {"hidden_states", "token_types", "spec"} <= set(value)
            and hasattr(value["hidden_states"], "shape") and isinstance(value["spec"], dict))


def summary(value: Dict[str, Any]) -> str:
    """``hidden states 50 x 32 (float32), layer -1 · tokens: 30 text, 20 image``."""
    shape = " x ".join(str(n) for n in value["hidden_states"].shape)
    line = f"hidden states {shape} ({value['spec'].get('dtype')}), layer {value['spec'].get('layer')}"
    types = value["token_types"]
    if types is not None:
        counts = {}
        for kind in (int(t) for t in types):
            counts[kind] = counts.get(kind, 0) + 1
        line += " · tokens: " + ", ".join(f"{n} {_TYPE_NAMES.get(k, f'type {k}')}" for k, n in sorted(counts.items()))
    return line


def render_encodings(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    """One line per prompt (the prompt's text beside it); None for anything else."""
    items: List[Any] = value if isinstance(value, list) else [value]
    if not items or not all(is_encoding(v) for v in items):
        return None
    texts = fields.get("text")
    texts = texts if isinstance(texts, list) else [texts]
    lines = [summary(v) for v in items]
    labels = [str(texts[i]) if i < len(texts) and texts[i] is not None else f"#{i + 1}" for i in range(len(items))]
    if isinstance(value, list):
        plain = "\n".join(f"{i + 1}. {line}" for i, line in enumerate(lines))
    else:
        plain = lines[0]
    rows = "".join(f'<tr><td style="color:#777;vertical-align:top;padding-right:8px">{i + 1}</td>'
                   f'<td><code>{html.escape(line)}</code><br><span style="color:#555">{html.escape(label[:200])}</span>'
                   f'</td></tr>' for i, (line, label) in enumerate(zip(lines, labels)))
    return {"text/plain": plain, "text/html": f'<table style="{BOX}">{rows}</table>'}
