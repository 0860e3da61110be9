"""LoRA adapters through peft's own API (transformers 5's ``load_adapter`` wants a peft that does
not exist).

Every adapter is loaded once under its ``name``. Its ``weight`` decides what is active:
- one adapter at weight 1.0 and no other non-zero: that adapter, exactly as ``PeftModel`` runs it;
- otherwise the non-zero ones combined by peft's ``add_weighted_adapter(..., combination_type="cat")``,
  which is exact: the combined update is the weighted sum of each adapter's own update;
- every weight 0.0: adapters disabled, the base model's outputs.
Weights can change without reloading anything (:func:`apply_weights`).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ModelLoadError
from ..secrets import scrub
from .sources import hub_kwargs, resolve_source

COMBINED = "mc_combined"


def attach(model: Any, adapters: Sequence[Any]) -> Any:
    """Wrap ``model`` in a PeftModel holding every adapter (the typed ``peft_adapters``: ``name``, ``model``,
    ``weight``); returns the PeftModel."""
    from peft import PeftModel

    peft_model = None
    for adapter in adapters:
        source = resolve_source(adapter.model)
        kwargs = hub_kwargs(source)
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, source.location, adapter_name=adapter.name, **kwargs)
            else:
                peft_model.load_adapter(source.location, adapter_name=adapter.name, **kwargs)
        except (OSError, ValueError) as e:
            first = scrub(str(e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"could not load the LoRA adapter `{adapter.name}` from `{source.location}`: "
                                 f"{first}\n  Check that the folder or repository holds adapter_config.json and "
                                 f"adapter weights saved by peft, for this base model.") from None
    apply_weights(peft_model, adapters)
    return peft_model


def apply_weights(peft_model: Any, adapters: Sequence[Any]) -> str:
    """Make the adapters' weights take effect; returns a description of what is active."""
    layers = peft_model.base_model
    if COMBINED in peft_model.peft_config:
        peft_model.set_adapter(adapters[0].name)
        peft_model.delete_adapter(COMBINED)
    active = [(a.name, float(a.weight)) for a in adapters if float(a.weight) != 0.0]
    if not active:
        layers.disable_adapter_layers()
        return "adapters off (every weight is 0)"
    layers.enable_adapter_layers()
    if len(active) == 1 and active[0][1] == 1.0:
        peft_model.set_adapter(active[0][0])
        return f"adapter {active[0][0]}"
    names, weights = zip(*active)
    peft_model.add_weighted_adapter(list(names), list(weights), adapter_name=COMBINED, combination_type="cat")
    peft_model.set_adapter(COMBINED)
    return " + ".join(f"{w:g}×{n}" for n, w in active)
