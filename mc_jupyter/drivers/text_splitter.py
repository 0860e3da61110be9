"""``type: text-splitter``: cut documents into overlapping chunks inside a workflow.

model-compose's splitter (``mindor/core/component/services/text_splitter``), which is LangChain's
``RecursiveCharacterTextSplitter`` with ``keep_separator=True``:

1. Take the first separator of the list that occurs in the text (``""`` always does: characters).
2. Cut the text before each occurrence; every piece but the first starts with the separator.
3. Pieces shorter than ``chunk_size`` are merged in order into chunks of at most ``chunk_size``
   characters; a new chunk starts with the last pieces of the one before, up to ``chunk_overlap``
   characters of them. Chunks are stripped of surrounding whitespace; empty ones are dropped.
4. A piece of ``chunk_size`` characters or more is split again, from step 1, with the separators
   after the one used; with none left it is a chunk of its own, however long.

``${result}`` is the list of chunks for one text, a list of such lists for a list of texts.
With ``streaming: true`` the chunks of one text come one by one, as they are made.

One difference from model-compose, on purpose: when no separator of a custom list (one without
``""``) occurs in the text, model-compose returns no chunks at all; here, as in LangChain, the text
is one piece and is chunked like any other, so nothing is lost. And a text that arrives in pieces
(:func:`iter_chunks`) gives exactly the chunks of the whole text: model-compose's streaming splitter
settles the separator once ``chunk_size`` characters have come, so a paragraph break that comes later
is missed there.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from ..errors import InputError, choices_text, did_you_mean
from ..tasks.base import flag
from .base import Driver, number

#: The fallback of every preset, and the separators when neither ``language`` nor ``separators`` is given.
DEFAULT_SEPARATORS: List[str] = ["\n\n", "\n", " ", ""]


def _starts(*keywords: str) -> List[str]:
    """Separators at a line that starts with one of ``keywords``, then the fallback."""
    return [f"\n{word} " for word in keywords] + DEFAULT_SEPARATORS


#: model-compose's presets (its ``separators.py``), by the names its ``language:`` accepts.
SEPARATORS: Dict[str, List[str]] = {
    "python": _starts("class", "def", "\tdef"),
    "javascript": _starts("function", "const", "let", "var", "class", "if", "for", "while", "switch", "case",
                          "default"),
    "typescript": _starts("function", "const", "let", "var", "class", "interface", "type", "enum", "namespace", "if",
                          "for", "while", "switch", "case", "default"),
    "java": _starts("class", "public", "protected", "private", "static", "if", "for", "while", "switch", "case"),
    "kotlin": _starts("class", "object", "interface", "fun", "val", "var", "if", "for", "while", "when"),
    "scala": _starts("class", "object", "trait", "def", "val", "var", "if", "for", "while", "match"),
    "go": _starts("func", "var", "const", "type", "if", "for", "switch", "case"),
    "rust": _starts("fn", "const", "let", "static", "struct", "enum", "trait", "impl", "if", "for", "while", "loop",
                    "match"),
    "cpp": _starts("class", "void", "int", "float", "double", "if", "for", "while", "switch", "case"),
    "c": _starts("void", "int", "float", "double", "char", "struct", "if", "for", "while", "switch"),
    "csharp": _starts("class", "public", "private", "protected", "internal", "static", "namespace", "if", "for",
                      "foreach", "while", "switch"),
    "ruby": _starts("def", "class", "module", "if", "unless", "while", "for", "do", "begin"),
    "php": _starts("function", "class", "if", "foreach", "while", "for", "switch", "case"),
    "swift": _starts("func", "class", "struct", "enum", "protocol", "extension", "if", "for", "while", "switch",
                     "case"),
    "html": [f"<{tag}" for tag in ("body div p br li h1 h2 h3 h4 h5 h6 span table tr td th ul ol header footer nav "
                                   "head style script meta title").split()] + [""],
    "markdown": ["\n## ", "\n### ", "\n#### ", "\n##### ", "\n###### ", "```\n", "\n\n---\n", "\n\n***\n",
                 "\n\n___\n"] + DEFAULT_SEPARATORS,
    "latex": ["\n\\chapter{", "\n\\section{", "\n\\subsection{", "\n\\subsubsection{"]
             + [f"\n\\begin{{{env}}}" for env in ("enumerate", "itemize", "description", "list", "quote", "quotation",
                                                   "verse", "verbatim", "align")] + ["$$", "$"] + DEFAULT_SEPARATORS,
    "sql": _starts("SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "JOIN", "LEFT JOIN", "RIGHT JOIN",
                   "INNER JOIN", "OUTER JOIN", "UNION", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER"),
    "solidity": _starts("pragma", "using", "contract", "interface", "library", "constructor", "type", "function",
                        "event", "modifier", "error", "struct", "enum", "mapping", "if", "for", "while", "do",
                        "assembly"),
    "proto": _starts("message", "service", "enum", "options", "import", "syntax"),
}

#: Names people write for a language that model-compose spells otherwise (for the error's hint only).
_ALIASES = {"py": "python", "js": "javascript", "ts": "typescript", "golang": "go", "rs": "rust", "c++": "cpp",
            "cxx": "cpp", "c#": "csharp", "cs": "csharp", "rb": "ruby", "md": "markdown", "tex": "latex",
            "htm": "html", "protobuf": "proto", "sol": "solidity", "kt": "kotlin"}


class _Merger:
    """Pieces in, chunks out: LangChain's ``_merge_splits`` with an empty join, one piece at a time."""

    def __init__(self, chunk_size: int, chunk_overlap: int):
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        self.pieces: deque = deque()
        self.length = 0

    def add(self, piece: str) -> Iterator[str]:
        if self.length + len(piece) > self.chunk_size:
            yield from self._chunk()
            while self.length > self.chunk_overlap or (self.length and self.length + len(piece) > self.chunk_size):
                self.length -= len(self.pieces.popleft())
        self.pieces.append(piece)
        self.length += len(piece)

    def flush(self) -> Iterator[str]:
        yield from self._chunk()
        self.pieces, self.length = deque(), 0

    def _chunk(self) -> Iterator[str]:
        text = "".join(self.pieces).strip()
        if text:
            yield text


class _Splitter:
    """The splitter of one text that arrives in pieces (:meth:`feed`, then :meth:`flush`).

    Its chunks are those of the whole text at once, whatever the pieces: the separator is the text's
    first one that occurs, so it is settled as soon as the first separator of the list arrives (a
    paragraph break, for the defaults), and at the end of the text otherwise; until then the text waits.
    """

    def __init__(self, separators: List[str], chunk_size: int, chunk_overlap: int):
        self.separators, self.chunk_size = separators, chunk_size
        self.merger = _Merger(chunk_size, chunk_overlap)
        self.pending = ""                     # the text not yet cut into pieces
        self.separator: Optional[str] = None  # settled once
        self.finer: List[str] = []            # for pieces of chunk_size or more
        self.first = True                     # the piece before the first separator is pending
        self.searched = 0                     # how far `pending` holds no separators[0]

    def feed(self, text: str) -> Iterator[str]:
        self.pending += text
        if self.separator is None:
            top = self.separators[0]
            if top and top not in self.pending[max(0, self.searched - len(top) + 1):]:
                self.searched = len(self.pending)
                return
            self._settle()
        yield from self._cut(final=False)

    def flush(self) -> Iterator[str]:
        if self.separator is None:
            self._settle()
        yield from self._cut(final=True)
        yield from self.merger.flush()

    def _settle(self) -> None:
        index = next((i for i, s in enumerate(self.separators) if s == "" or s in self.pending),
                     len(self.separators) - 1)   # none occurs: the last, which cuts nothing
        self.separator = self.separators[index]
        self.finer = [] if self.separator == "" else self.separators[index + 1:]

    def _cut(self, final: bool) -> Iterator[str]:
        sep, text, start = self.separator, self.pending, 0
        if sep == "":
            for char in text:
                yield from self._piece(char)
            self.pending = ""
            return
        if self.first:
            start = text.find(sep)
            if start < 0 and not final:
                return
            start = len(text) if start < 0 else start
            if start:
                yield from self._piece(text[:start])
            self.first = False
        while start < len(text):
            end = text.find(sep, start + len(sep))
            if end < 0:
                if not final:
                    break
                end = len(text)
            yield from self._piece(text[start:end])
            start = end
        self.pending = text[start:]

    def _piece(self, piece: str) -> Iterator[str]:
        if len(piece) < self.chunk_size:
            yield from self.merger.add(piece)
            return
        yield from self.merger.flush()
        if not self.finer:
            piece = piece.strip()
            if piece:
                yield piece
            return
        inner = _Splitter(self.finer, self.chunk_size, self.merger.chunk_overlap)
        yield from inner.feed(piece)
        yield from inner.flush()


def iter_chunks(pieces: Iterable[str], chunk_size: int = 1000, chunk_overlap: int = 200,
                separators: Optional[List[str]] = None, language: Optional[str] = None) -> Iterator[str]:
    """The chunks of the text made of ``pieces`` (a stream of tokens, lines, ...), each as soon as it is
    known; the same chunks as :func:`split_text` of the joined text. Arguments are checked as the
    action's fields are (an InputError naming the field)."""
    splitter = _Splitter(*_options(separators, language, chunk_size, chunk_overlap))
    for piece in pieces:
        yield from splitter.feed(_text(piece, "`text:`"))
    yield from splitter.flush()


def split_text(text: str, chunk_size: int = 1000, chunk_overlap: int = 200, separators: Optional[List[str]] = None,
               language: Optional[str] = None) -> List[str]:
    """``text`` cut into chunks of at most ``chunk_size`` characters (save a piece no separator can cut),
    neighbours sharing up to ``chunk_overlap`` characters, at ``separators`` (or the ``language``
    preset of :data:`SEPARATORS`; default :data:`DEFAULT_SEPARATORS`) tried in order."""
    return list(iter_chunks([text], chunk_size, chunk_overlap, separators, language))


def _options(separators: Any, language: Any, chunk_size: Any, chunk_overlap: Any) -> Tuple[List[str], int, int]:
    """(separators, chunk_size, chunk_overlap) from the action's fields, or an InputError naming the field."""
    size = number(chunk_size, "chunk_size", minimum=1)
    overlap = number(chunk_overlap, "chunk_overlap", minimum=0)
    if overlap > size:
        raise InputError(f"`chunk_overlap` ({overlap}) is larger than `chunk_size` ({size}): a chunk would repeat "
                         f"more than its own length.\n  Write e.g. `chunk_overlap: {size // 5}` (the default is 200, "
                         f"for the default `chunk_size: 1000`).")
    language = getattr(language, "value", language)   # a schema's enum member
    if language not in (None, "") and separators:
        raise InputError("`language` and `separators` were both given; the language picks its own separators.\n"
                         "  Keep one of them (model-compose refuses both too).")
    if language not in (None, ""):
        return list(_preset(language)), size, overlap
    if not separators:
        return list(DEFAULT_SEPARATORS), size, overlap
    if isinstance(separators, str) or not isinstance(separators, (list, tuple)):
        raise InputError(f"`separators` must be a list of texts, not a {type(separators).__name__}.\n"
                         f"  Write e.g. `separators: [\"\\n\\n\", \"\\n\", \" \", \"\"]` (tried in order).")
    for i, item in enumerate(separators):
        if not isinstance(item, str):
            raise InputError(f"item {i} of `separators` is a {type(item).__name__}, not a text.\n"
                             f"  Quote it, e.g. `\"{item}\"`.")
    return list(separators), size, overlap


def _preset(language: Any) -> List[str]:
    if isinstance(language, str) and language in SEPARATORS:
        return SEPARATORS[language]
    alias = _ALIASES.get(str(language).strip().lower())
    hint = f" (did you mean `{alias}`?)" if alias else did_you_mean(str(language).lower(), SEPARATORS)
    raise InputError(f"`language: {language}` is not one the text splitter knows{hint}.\n"
                     f"  Choose one of {choices_text(SEPARATORS)}, or give `separators:` instead.")


def _text(value: Any, where: str) -> str:
    """A text to split: text, bytes (read as UTF-8) or a number (written as text); else an InputError."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    got = "nothing (null)" if value is None else f"a {type(value).__name__}"
    raise InputError(f"the text splitter takes text, but {where} is {got}.\n  Give a text or a list of texts, e.g. "
                     f"`text: ${{input.text}}` (`${{input.doc as text}}` for other values).")


class TextSplitter(Driver):
    """A ``type: text-splitter`` component: nothing to load, every action splits its ``text``.

    Fields (model-compose's ``TextSplitterActionConfig``): ``text`` (one text or a list), ``language`` or
    ``separators``, ``chunk_size`` (1000), ``chunk_overlap`` (200), ``batch_size`` (texts per batch:
    accepted and checked, it changes nothing here) and ``streaming`` (one text's chunks one by one)."""

    streams = True
    #: A stream's result is the list of its chunks, not their joined text (see :func:`mc_jupyter.engine._stream`).
    stream_result = "list"

    def load(self) -> None:
        self.device = "—"
        self.source_description = "text splitter (no model)"

    def _parse(self, fields: Dict[str, Any]) -> Tuple[List[str], bool, Tuple[List[str], int, int]]:
        text = fields.get("text")
        many = isinstance(text, (list, tuple))
        items = [_text(item, f"item {i} of `text:`") for i, item in enumerate(text)] if many else \
            [_text(text, "`text:`")]
        if fields.get("batch_size") is not None:
            number(fields["batch_size"], "batch_size", minimum=1)
        options = _options(fields.get("separators"), fields.get("language"), _given(fields, "chunk_size", 1000),
                           _given(fields, "chunk_overlap", 200))
        return items, many, options

    def run(self, fields: Dict[str, Any]) -> Any:
        """The chunks of ``text``, or a list of chunk lists for a list of texts."""
        items, many, (separators, size, overlap) = self._parse(fields)
        chunks = [split_text(item, size, overlap, separators) for item in items]
        return chunks if many else chunks[0]

    def wants_stream(self, fields: Dict[str, Any], per_chunk_output: bool) -> bool:
        """``streaming: true`` on one text; a list of texts gives its list of chunk lists at once."""
        return bool(flag(fields.get("streaming"), "streaming")) and not isinstance(fields.get("text"), (list, tuple))

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[str]:
        items, _, (separators, size, overlap) = self._parse(fields)   # checked before the first chunk
        return self._chunks(items[0], size, overlap, separators, stop)

    @staticmethod
    def _chunks(text: str, size: int, overlap: int, separators: List[str], stop: threading.Event) -> Iterator[str]:
        for chunk in iter_chunks([text], size, overlap, separators):
            if stop.is_set():
                return
            yield chunk


def _given(fields: Dict[str, Any], name: str, default: int) -> Any:
    value = fields.get(name)
    return default if value is None else value
