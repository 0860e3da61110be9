"""What plain transformers gives on the same models and inputs: the reference the tests compare with.

Each function loads the tokenizer and model from ``folder`` afresh and does the work the way a user
of plain transformers would. transformers and torch are imported inside the functions, so importing
this module never imports them (see ``tiny_models.use_offline_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union


def generate(folder: Path, prompts: Union[str, Sequence[str]], max_new_tokens: int, seed: Optional[int] = None,
             add_special_tokens: bool = True, **generate_kwargs: Any) -> Union[str, List[str]]:
    """tokenizer (left padding) -> generate -> the new tokens, decoded without special tokens.

    Greedy unless ``do_sample`` is given; with ``seed``, torch is seeded just before ``generate``.
    A str prompt gives a str, a list of prompts a list (one batch).
    """
    from transformers import AutoModelForCausalLM

    return generate_with(AutoModelForCausalLM.from_pretrained(folder), folder, prompts, max_new_tokens, seed,
                         add_special_tokens, **generate_kwargs)


def generate_with(model: Any, folder: Path, prompts: Union[str, Sequence[str]], max_new_tokens: int,
                  seed: Optional[int] = None, add_special_tokens: bool = True,
                  **generate_kwargs: Any) -> Union[str, List[str]]:
    """:func:`generate` with a model already built (a PeftModel, say); the tokenizer from ``folder``."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    single = isinstance(prompts, str)
    enc = tok([prompts] if single else list(prompts), return_tensors="pt", padding=True,
              add_special_tokens=add_special_tokens)
    if seed is not None:
        torch.manual_seed(seed)
    generate_kwargs.setdefault("do_sample", False)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **generate_kwargs)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts[0] if single else texts


def chat_prompt(folder: Path, messages: List[Dict[str, str]]) -> str:
    """The tokenizer's chat template applied to ``messages``, with the generation prompt."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def chat(folder: Path, messages: List[Dict[str, str]], max_new_tokens: int, seed: Optional[int] = None,
         **generate_kwargs: Any) -> str:
    """:func:`generate` on :func:`chat_prompt` (no special tokens added: the template has them)."""
    return generate(folder, chat_prompt(folder, messages), max_new_tokens, seed=seed, add_special_tokens=False,
                    **generate_kwargs)


def classify(folder: Path, text: str) -> Tuple[str, float]:
    """The top label of a sequence classifier and its softmax probability."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        probs = torch.softmax(model(**tok(text, return_tensors="pt")).logits, dim=-1)[0]
    best = int(probs.argmax())
    return model.config.id2label[best], float(probs[best])


def minilm_embedding(text: str) -> List[float]:
    """all-MiniLM-L6-v2 (its packaged copy): mean pooling over the attention mask, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tests import tiny_models

    folder = tiny_models.minilm_folder()
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    enc = tok([text], return_tensors="pt", padding=True)
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)[0].tolist()
