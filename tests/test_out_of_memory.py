"""A load that runs out of memory ends in a clear error, and the registry stays as it was.

Run in a child process whose address space is capped (RLIMIT_AS) just above what it uses, so the
real allocator really fails while a 0.6 B-parameter model's weights are allocated.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    root = Path(sys.argv[1])
    from tests import tiny_models
    tiny_models.use_offline_cache(root)
    import torch, transformers
    from safetensors.torch import save_file
    import mc_jupyter as mc

    big = root / "big"
    big.mkdir(parents=True)
    transformers.LlamaConfig(vocab_size=400, hidden_size=2048, intermediate_size=5632, num_hidden_layers=12,
                             num_attention_heads=16, num_key_value_heads=4).save_pretrained(big)
    tiny_models.build_tokenizer().save_pretrained(big)
    save_file({"model.norm.weight": torch.ones(2048)}, str(big / "model.safetensors"))  # the rest is allocated
    small = tiny_models.build_causal_lm(root / "small")
    mc.compose(f"component:\\n  id: small\\n  task: text-generation\\n  model: {small}\\n  text: ${{input.p}}\\n"
               f"  params: {{max_output_length: 3, temperature: 0}}\\n")
    before = mc.REGISTRY.snapshot()
    kept = mc.REGISTRY.entries["small"].driver.model
    used = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + 1_000_000_000, resource.RLIM_INFINITY))
    try:
        mc.compose(f"component:\\n  id: big\\n  task: text-generation\\n  model: {big}\\n")
        print("RESULT loaded")
    except mc.UserError as e:
        print("RESULT", type(e).__name__, str(e).replace("\\n", " | "))
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("UNCHANGED", mc.REGISTRY.snapshot() == before and mc.REGISTRY.entries["small"].driver.model is kept)
    print("STILL RUNS", isinstance(mc.run(inputs={"p": "hi"}).output, str))
""")


@pytest.mark.slow
def test_running_out_of_memory_while_loading_is_a_clear_error_and_changes_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(ROOT)], capture_output=True, text=True,
                         timeout=300)
    lines = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in out.stdout.splitlines() if l.startswith(("RESULT", "UNCHANGED", "STILL"))}
    assert lines.get("RESULT", "").startswith("ModelLoadError component `big` ran out of memory while loading"), \
        out.stdout + out.stderr[-2000:]
    assert "What it had taken is freed. Try `quantization: nf4` or `int8`" in lines["RESULT"]
    assert lines["UNCHANGED"] == "True" and lines["STILL"] == "RUNS True"
