"""The text splitter: model-compose's (LangChain's recursive character splitter) chunk for chunk."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mc_jupyter.drivers.text_splitter import DEFAULT_SEPARATORS, SEPARATORS, TextSplitter, iter_chunks, split_text
from mc_jupyter.errors import InputError

#: model-compose 0.4.120's ``TextSplitterLanguage`` values, all of which must have a preset.
MODEL_COMPOSE_LANGUAGES = ["python", "javascript", "typescript", "java", "kotlin", "scala", "go", "rust", "cpp", "c",
                           "csharp", "ruby", "php", "swift", "html", "markdown", "latex", "sql", "solidity", "proto"]


def langchain_split(text, separators, size, overlap):
    """LangChain's ``RecursiveCharacterTextSplitter._split_text`` (keep_separator=True, strip_whitespace=True),
    transcribed with its regex split, as the oracle. One change, model-compose's: a piece no separator
    can cut is stripped (and dropped when blank), where LangChain keeps it as it is."""
    separator, finer = separators[-1], []
    for i, s in enumerate(separators):
        if s == "":
            separator = s
            break
        if re.search(re.escape(s), text):
            separator, finer = s, separators[i + 1:]
            break
    if separator:
        parts = re.split(f"({re.escape(separator)})", text)
        splits = [parts[0]] + [parts[i] + parts[i + 1] for i in range(1, len(parts), 2)]
    else:
        splits = list(text)
    chunks, good = [], []
    for s in [s for s in splits if s != ""]:
        if len(s) < size:
            good.append(s)
            continue
        if good:
            chunks += langchain_merge(good, size, overlap)
            good = []
        if finer:
            chunks += langchain_split(s, finer, size, overlap)
        elif s.strip():
            chunks.append(s.strip())
    return chunks + (langchain_merge(good, size, overlap) if good else [])


def langchain_merge(splits, size, overlap):
    docs, current, total = [], [], 0
    for d in splits:
        if total + len(d) > size and current:
            doc = "".join(current).strip()
            if doc:
                docs.append(doc)
            while total > overlap or (total + len(d) > size and total > 0):
                total -= len(current.pop(0))
        current.append(d)
        total += len(d)
    doc = "".join(current).strip()
    return docs + ([doc] if doc else [])


# -- hand-checked chunks -------------------------------------------------------------------------------

def test_paragraphs_are_kept_whole_and_merged_up_to_the_chunk_size():
    text = "One two.\n\nThree four five.\n\nSix."
    assert split_text(text, 20, 0) == ["One two.", "Three four five.", "Six."]
    assert split_text(text, 30, 0) == ["One two.\n\nThree four five.", "Six."]


def test_words_overlap_by_at_most_chunk_overlap_characters():
    chunks = split_text("the quick brown fox jumps over the lazy dog", chunk_size=15, chunk_overlap=5)
    assert chunks == ["the quick brown", "fox jumps over", "over the lazy", "lazy dog"]


def test_a_word_longer_than_the_chunk_is_cut_into_characters():
    assert split_text("a supercalifragilistic b", chunk_size=8, chunk_overlap=0) == \
        ["a", "superca", "lifragil", "istic", "b"]


def test_custom_separators_are_tried_in_order_and_kept_at_the_start_of_each_piece():
    # pieces "one", ". two", ". three": the separator opens the piece after it, and stays in the chunk
    assert split_text("one. two. three", 10, 0, separators=[". ", " ", ""]) == ["one. two", ". three"]


def test_text_that_no_custom_separator_cuts_is_one_chunk_not_lost():
    # model-compose returns [] here; LangChain (and we) keep the text
    assert split_text("abc def", 100, 0, separators=["\n"]) == ["abc def"]
    assert split_text("abc def", 3, 0, separators=["\n"]) == ["abc def"]


def test_short_and_empty_texts():
    assert split_text("  hello  ") == ["hello"]
    assert split_text("") == []
    assert split_text(" \n\n \n ") == []


# -- language presets -------------------------------------------------------------------------------

def test_every_model_compose_language_has_its_preset():
    assert sorted(SEPARATORS) == sorted(MODEL_COMPOSE_LANGUAGES)
    assert DEFAULT_SEPARATORS == ["\n\n", "\n", " ", ""]
    assert SEPARATORS["python"] == ["\nclass ", "\ndef ", "\n\tdef ", "\n\n", "\n", " ", ""]
    assert SEPARATORS["html"][:3] == ["<body", "<div", "<p"] and SEPARATORS["html"][-1] == ""


@pytest.mark.parametrize("language", MODEL_COMPOSE_LANGUAGES)
def test_every_preset_cuts_at_its_first_separator_then_its_second(language):
    first, second = SEPARATORS[language][:2]
    width = max(len(first), len(second)) + 4          # every piece: more than half a chunk, so none merge
    head, one, two, six = "h" * width, first.ljust(width, "o"), second.ljust(width, "t"), second.ljust(width, "s")
    size = 2 * width - 1
    assert split_text(head + one + one, size, 0, language=language) == [head, one.strip(), one.strip()]
    # the piece after `first` is too long for a chunk: it is cut again at the preset's next separator
    assert split_text(head + one + two + six, size, 0, language=language) == \
        [head, one.strip(), two.strip(), six.strip()]


@pytest.mark.parametrize("language,text,size,chunks", [
    ("python", "import os\n\nclass A:\n    x = 1\n\ndef f():\n    return 2\n", 30,
     ["import os", "class A:\n    x = 1", "def f():\n    return 2"]),
    ("markdown", "# Title\n\nIntro.\n## One\nFirst part.\n## Two\nSecond part.\n", 25,
     ["# Title\n\nIntro.", "## One\nFirst part.", "## Two\nSecond part."]),
    ("sql", "SELECT a, b\nFROM t\nWHERE a > 1\nORDER BY b", 15, ["SELECT a, b", "FROM t", "WHERE a > 1", "ORDER BY b"]),
    ("latex", "\\title{T}\n\\section{One} text one\n\\section{Two} text two", 25,
     ["\\title{T}", "\\section{One} text one", "\\section{Two} text two"]),
    # `</body` is no `<body`: the body is cut at `<div`, its last div (no tag of the preset) into characters
    ("html", "<html><body><div>one</div><div>two</div></body></html>", 20,
     ["<html>", "<body><div>one</div>", "<div>two</div></body", "></html>"]),
])
def test_small_samples_of_a_language(language, text, size, chunks):
    assert split_text(text, size, 0, language=language) == chunks


# -- against the oracle; streaming -------------------------------------------------------------------

ALPHABET = ["a", "b", "c", " ", "\n", "\n\n", ". ", "\ndef ", "\nclass ", "\tdef ", "<p", "<div", "$"]
SEPARATOR_LISTS = [DEFAULT_SEPARATORS, SEPARATORS["python"], SEPARATORS["html"], SEPARATORS["latex"],
                   ["\n", " ", ""], ["\n", ". "], ["aa", "a"], ["b"]]
texts = st.lists(st.sampled_from(ALPHABET), max_size=60).map("".join)


@st.composite
def sizes(draw):
    size = draw(st.integers(1, 30))
    return size, draw(st.integers(0, size))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(texts, sizes(), st.sampled_from(SEPARATOR_LISTS))
def test_chunks_are_langchains(text, size_overlap, separators):
    size, overlap = size_overlap
    assert split_text(text, size, overlap, separators) == langchain_split(text, separators, size, overlap)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(texts, sizes(), st.sampled_from(SEPARATOR_LISTS), st.lists(st.integers(0, 60), max_size=8))
def test_streamed_pieces_give_the_chunks_of_the_whole_text(text, size_overlap, separators, cuts):
    size, overlap = size_overlap
    cuts = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
    assert list(iter_chunks(pieces, size, overlap, separators)) == split_text(text, size, overlap, separators)


def test_streaming_yields_chunks_before_the_text_has_ended():
    def pieces():
        yield "first paragraph\n\nsecond paragraph\n\nthird\n\n"
        raise AssertionError("read past the point where two chunks were known")
    stream = iter_chunks(pieces(), chunk_size=20, chunk_overlap=0)
    assert [next(stream), next(stream)] == ["first paragraph", "second paragraph"]


def test_against_langchain_itself_when_installed():
    splitters = pytest.importorskip("langchain_text_splitters")
    import random
    rnd = random.Random(0)
    for _ in range(300):
        text = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 80)))
        size = rnd.randint(2, 30)
        overlap = rnd.randint(0, size)
        theirs = splitters.RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap).split_text(text)
        assert split_text(text, size, overlap) == [c.strip() for c in theirs if c.strip()]


# -- the component ----------------------------------------------------------------------------------

@pytest.fixture
def splitter():
    driver = TextSplitter("splitter", None)
    driver.load()
    return driver


def test_the_component_loads_nothing(splitter):
    assert splitter.info()["device"] == "—"


def test_one_text_gives_its_chunks_and_a_list_gives_a_list_of_them(splitter):
    fields = {"text": "one two three four", "chunk_size": "9", "chunk_overlap": "0"}
    assert splitter.run(fields) == ["one two", "three", "four"]
    assert splitter.run({**fields, "text": ["one two", "three four", ""], "batch_size": 2}) == \
        [["one two"], ["three", "four"], []]
    assert splitter.run({"text": "a\n\nb", "chunk_size": 1000}) == ["a\n\nb"]   # default overlap 200 fits


def test_language_and_separators_fields(splitter):
    code = "x = 1\nclass A:\n    pass\ndef f():\n    pass"
    assert splitter.run({"text": code, "language": "python", "chunk_size": 20, "chunk_overlap": 0}) == \
        ["x = 1", "class A:\n    pass", "def f():\n    pass"]
    assert splitter.run({"text": "a;b;c", "separators": [";"], "chunk_size": 2, "chunk_overlap": 0}) == \
        ["a", ";b", ";c"]
    assert splitter.run({"text": "a b", "language": None, "separators": [], "chunk_size": 2,
                         "chunk_overlap": 0}) == ["a", "b"]


def test_streaming_one_text_yields_the_chunks_and_stops_when_asked(splitter):
    fields = {"text": "aa bb cc dd", "chunk_size": 3, "chunk_overlap": 0, "streaming": "true"}
    assert splitter.wants_stream(fields, False)
    assert not splitter.wants_stream({**fields, "streaming": False}, False)
    assert not splitter.wants_stream({**fields, "text": ["aa", "bb"]}, False)   # a list: list of lists at once
    assert list(splitter.stream(fields, threading.Event())) == ["aa", "bb", "cc", "dd"] == splitter.run(fields)
    stop = threading.Event()
    stream = splitter.stream(fields, stop)
    assert next(stream) == "aa"
    stop.set()
    assert list(stream) == []


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,message", [
    ({"text": "x", "chunk_size": 100, "chunk_overlap": 300},
     "`chunk_overlap` (300) is larger than `chunk_size` (100): a chunk would repeat more than its own length.\n"
     "  Write e.g. `chunk_overlap: 20` (the default is 200, for the default `chunk_size: 1000`)."),
    ({"text": "x", "chunk_size": 100},
     "`chunk_overlap` (200) is larger than `chunk_size` (100)"),
    ({"text": "x", "language": "python", "separators": ["\n"]},
     "`language` and `separators` were both given; the language picks its own separators.\n"
     "  Keep one of them (model-compose refuses both too)."),
    ({"text": "x", "language": "pyhton"}, "`language: pyhton` is not one the text splitter knows (did you mean "
                                          "`python`?).\n  Choose one of `c`, `cpp`, `csharp`,"),
    ({"text": "x", "language": "js"}, "`language: js` is not one the text splitter knows (did you mean "
                                      "`javascript`?)"),
    ({"text": "x", "language": "Python"}, "(did you mean `python`?)"),
    ({"text": {"body": "x"}}, "the text splitter takes text, but `text:` is a dict.\n  Give a text or a list of "
                              "texts, e.g. `text: ${input.text}` (`${input.doc as text}` for other values)."),
    ({"text": None}, "the text splitter takes text, but `text:` is nothing (null)."),
    ({"text": ["ok", ["nested"]]}, "item 1 of `text:` is a list."),
    ({"text": "x", "chunk_size": "big"}, "`chunk_size` must be a whole number of at least 1, not 'big'."),
    ({"text": "x", "chunk_size": 0}, "`chunk_size` must be a whole number of at least 1, not 0."),
    ({"text": "x", "chunk_overlap": -1}, "`chunk_overlap` must be a whole number of at least 0, not -1."),
    ({"text": "x", "batch_size": 0}, "`batch_size` must be a whole number of at least 1, not 0."),
    ({"text": "x", "separators": "\n"}, "`separators` must be a list of texts, not a str."),
    ({"text": "x", "separators": ["\n", 3]}, "item 1 of `separators` is a int, not a text."),
])
def test_bad_fields_name_the_field_and_the_fix(splitter, fields, message):
    with pytest.raises(InputError) as caught:
        splitter.run(fields)
    assert message in str(caught.value)


def test_bad_streaming_input_fails_before_the_first_chunk(splitter):
    with pytest.raises(InputError, match="`chunk_overlap` \\(50\\) is larger than `chunk_size` \\(10\\)"):
        splitter.stream({"text": "x", "chunk_size": 10, "chunk_overlap": 50, "streaming": True}, threading.Event())
    with pytest.raises(InputError, match="`streaming` must be true or false"):
        splitter.wants_stream({"text": "x", "streaming": "maybe"}, False)


def test_a_secret_language_is_masked_in_the_message(splitter, monkeypatch):
    from mc_jupyter.secrets import read_env
    monkeypatch.setenv("MC_TEST_SPLITTER_SECRET", "pyth0n-s3cret")
    language = read_env("MC_TEST_SPLITTER_SECRET")
    with pytest.raises(InputError) as caught:
        splitter.run({"text": "x", "language": language})
    assert "pyth0n-s3cret" not in str(caught.value) and "`language: ***`" in str(caught.value)
