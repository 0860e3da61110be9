"""text-to-text through a sequence-to-sequence model's ``generate`` (the task: :mod:`mc_jupyter.tasks.text_to_text`).

``AutoModelForSeq2SeqLM`` loads T5, BART, Marian, Pegasus, mBART, NLLB/M2M100 and the other encoder-decoder
text models: the texts are encoded (padded; cut to ``max_input_length`` tokens when given), the model
generates, and every output token is decoded with the special ones dropped (the decoder's start token,
a forced language token, the end). ``architecture:`` is checked against the model's config when given.
Without ``max_output_length`` the model's own generation config says how long, where it says (BART-CNN's
142 tokens), else 256 new tokens (fewer when the decoder has fewer positions).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import InputError, ModelLoadError
from ..tasks.base import Call
from ..tasks.text_to_text import TextToTextParams, TextToTextTask
from .hf_common import HFDriver, checked_architecture, model_type_of
from .hf_generation import group_sequences, max_positions, seed_torch, stream_generate
from .sources import ModelSource, config_source

#: ``architecture:`` -> the config.json ``model_type``\ s of that family.
ARCHITECTURE_TYPES: Dict[str, Tuple[str, ...]] = {
    "t5": ("t5", "mt5", "umt5", "longt5"),
    "bart": ("bart",),
    "marian": ("marian",),
    "pegasus": ("pegasus", "pegasus_x"),
    "mbart": ("mbart",),
}


class TextToText(HFDriver, TextToTextTask):
    """``text:`` (one or a list) -> the generated text (a translation, a summary)."""

    auto_class = "AutoModelForSeq2SeqLM"
    #: The family of the loaded model (None for one outside the table, such as NLLB's m2m_100).
    architecture: Optional[str] = None

    def load(self) -> None:
        self.architecture = self._architecture(config_source(self.config))
        super().load()

    def _architecture(self, source: ModelSource) -> Optional[str]:
        """The model's family, checked against ``architecture:``; a model that is not seq2seq is refused."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

        model_type = model_type_of(source)
        if model_type not in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
            raise ModelLoadError(f"`{source.location}` is a `{model_type}` model, not a sequence-to-sequence one: "
                                 f"text-to-text needs an encoder-decoder such as T5, BART, Marian, Pegasus, mBART "
                                 f"or NLLB.\n  Give e.g. `model: google-t5/t5-small`, or the task this model does "
                                 f"(`text-generation` for a decoder-only model).")
        return checked_architecture(self.config.architecture, model_type, ARCHITECTURE_TYPES, source.location)

    # -- before anything is generated ------------------------------------------------------------
    def check(self, call: Call) -> None:
        """Each text and ``max_output_length`` against the model's positions, the forced token against its
        vocabulary (so a typo fails before any work), then torch seeded."""
        params: TextToTextParams = call.params
        cut = params.generation.max_input_length
        found = max_positions(self.model)
        if found is not None and call.items:     # an empty list gives an empty list
            limit, field = found
            counts = [min(len(ids), cut or len(ids)) for ids in self.tokenizer(call.items)["input_ids"]]
            for index, count in enumerate(counts, 1):
                if count > limit:
                    which = f"text #{index} of the list" if call.many else "the text"
                    raise InputError(f"{which} has {count} tokens, more than the {limit} this model reads (`{field}` "
                                     f"in its config).\n  Set `max_input_length: {limit}` to keep its first {limit} "
                                     f"tokens, or split the text.")
            if params.max_output_given and params.generation.max_output_length >= limit:
                raise InputError(f"`max_output_length: {params.generation.max_output_length}` is more than this "
                                 f"model writes: its decoder has {limit} positions (`{field}`), one for the start "
                                 f"token.\n  Lower `max_output_length` to {limit - 1} or less.")
        if params.forced_bos_token is not None:
            self.token_id(params.forced_bos_token)
        seed_torch(params.generation)

    def token_id(self, token: str) -> int:
        """The id of ``token`` in the tokenizer's vocabulary; an InputError naming ``forced_bos_token`` if absent."""
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            codes = [t for t in self.tokenizer.all_special_tokens if "_" in t and not t.startswith("<")]
            known = (f" Its language tokens include {', '.join(f'`{c}`' for c in codes[:6])} ({len(codes)} in all)."
                     if codes else "")
            raise InputError(f"`forced_bos_token: {token}` is not a token of this model's tokenizer.{known}\n  "
                             f"Give a token it has (NLLB's are like `fra_Latn`, `deu_Latn`), or remove the key.")
        return token_id

    # -- generate's arguments --------------------------------------------------------------------
    def generation_arguments(self, params: TextToTextParams) -> Dict[str, Any]:
        """Keyword arguments of ``generate``: model-compose's seq2seq defaults (``num_beams`` 4, early
        stopping with beams, no sampling unless ``do_sample: true``), what the action gives, and the
        model's generation config for the rest."""
        g = params.generation
        sample = bool(g.do_sample) and g.temperature != 0.0      # temperature 0 is greedy, as in text-generation
        kwargs: Dict[str, Any] = {"num_beams": params.num_beams, "do_sample": sample}
        if params.max_output_given:
            kwargs["max_new_tokens"] = g.max_output_length
        elif "max_length" not in self.model.generation_config.to_diff_dict():
            found = max_positions(self.model)      # the default never runs past the decoder's positions
            kwargs["max_new_tokens"] = min(g.max_output_length, found[0] - 1) if found else g.max_output_length
        if g.min_output_length is not None:
            kwargs["min_new_tokens"] = g.min_output_length
        if sample:
            kwargs.update({name: getattr(g, name) for name in ("temperature", "top_k", "top_p")
                           if getattr(g, name) is not None})
        if params.num_beams > 1:
            kwargs["early_stopping"] = True if g.early_stopping is None else g.early_stopping
            if g.length_penalty is not None:
                kwargs["length_penalty"] = g.length_penalty
        for name in ("repetition_penalty", "num_return_sequences"):
            if getattr(g, name) is not None:
                kwargs[name] = getattr(g, name)
        if params.no_repeat_ngram_size is not None:
            kwargs["no_repeat_ngram_size"] = params.no_repeat_ngram_size
        if params.forced_bos_token is not None:
            kwargs["forced_bos_token_id"] = self.token_id(params.forced_bos_token)
        if g.stop_sequences:
            kwargs.update(stop_strings=list(g.stop_sequences), tokenizer=self.tokenizer)
        return kwargs

    def encode(self, texts: List[str], params: TextToTextParams) -> Dict[str, Any]:
        """The encoder's batch on the model's device, padded, cut to ``max_input_length`` when given."""
        cut = params.generation.max_input_length
        return self.tokenizer(texts, return_tensors="pt", padding=True, truncation=cut is not None,
                              max_length=cut).to(self.model.device)

    # -- the backend's hooks ---------------------------------------------------------------------
    def generate(self, texts: List[str], params: TextToTextParams) -> List[Any]:
        import torch

        with torch.inference_mode():
            out = self.model.generate(**self.encode(texts, params), **self.generation_arguments(params))
        return group_sequences(self.tokenizer.batch_decode(out, skip_special_tokens=True), params.generation.sequences)

    def generate_stream(self, text: str, params: TextToTextParams, stop: Any) -> Iterator[str]:
        yield from stream_generate(self, self.encode([text], params), self.generation_arguments(params), stop)
