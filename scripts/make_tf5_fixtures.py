#!/usr/bin/env python3
"""Tiny random Hugging Face models saved by transformers, with float32 greedy references.

Each model is built from a config object of the installed transformers, given random
weights (fixed torch seed, std 0.2 so that logits are not near-ties), rounded to bfloat16
and saved with `save_pretrained` (safetensors; bfloat16 keeps every file under 300 KB).
The reference is then computed from the *saved* directory: it is loaded back with
`dtype=torch.float32` (an exact upcast of the bfloat16 weights) and run in float32 with a
plain greedy loop over `model.forward`.

The tokenizer is the stories260K one (vocab 512) from tests/fixtures/stories260K-hf,
loaded and re-saved by the same transformers.

Usage (from the repository root, with the venv of scripts/requirements-reference.txt):

    nice -n 10 /work/venv-ref/bin/python scripts/make_tf5_fixtures.py

Writes tests/fixtures/tf5/<name>/{config.json, generation_config.json, model.safetensors,
tokenizer files, reference.json}.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = ROOT / "tests" / "fixtures" / "stories260K-hf"
OUT_ROOT = ROOT / "tests" / "fixtures" / "tf5"

PROMPT_TEXT = "Once upon a time, there was a little"
NEW_TOKENS = 24
WEIGHT_STD = 0.2
FINAL_NORM_GAIN = 4.0  # spreads the logits (std ~6) so that top-2 near-ties are rare
MIN_MARGIN = 0.05  # seeds seed, seed+1, ... are tried until every step's margin is at least this
# (and the continuation holds no EOS id)
MAX_SEED_TRIES = 50
MAX_FILE_BYTES = 300 * 1024

COMMON = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    hidden_act="silu",
)

MODELS = [
    {
        "name": "qwen2-theta1e6",
        "seed": 1001,
        "config_cls": Qwen2Config,
        "model_cls": Qwen2ForCausalLM,
        "kwargs": dict(
            max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
    },
    {
        "name": "llama3-rope",
        "seed": 1002,
        "config_cls": LlamaConfig,
        "model_cls": LlamaForCausalLM,
        "kwargs": dict(
            max_position_embeddings=512,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    },
    {
        "name": "llama-linear",
        "seed": 1003,
        "config_cls": LlamaConfig,
        "model_cls": LlamaForCausalLM,
        "kwargs": dict(
            max_position_embeddings=512,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        ),
    },
    {
        "name": "llama-yarn",
        "seed": 1004,
        "config_cls": LlamaConfig,
        "model_cls": LlamaForCausalLM,
        "kwargs": dict(
            # 256 = factor * original_max_position_embeddings, so transformers' YaRN
            # consistency check has nothing to warn about.
            max_position_embeddings=256,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    },
]


# Architectures past the Llama family (issue 19). Their reference skips the plain-RoPE
# comparison ("plain_rope": False): what they test is the architecture's own arithmetic.
MODELS += [
    {
        "name": "qwen3-qknorm",
        "seed": 1005,
        "config_cls": Qwen3Config,
        "model_cls": Qwen3ForCausalLM,
        "plain_rope": False,
        "kwargs": dict(
            max_position_embeddings=512,
            head_dim=32,  # explicit, and 4 x 32 = 128 is not hidden_size
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
    },
    {
        "name": "gemma3-sliding",
        "seed": 1006,
        "config_cls": Gemma3TextConfig,
        "model_cls": Gemma3ForCausalLM,
        "plain_rope": False,
        # A continuation that repeats one id could hide a wrong window; the reference also
        # records the ids without the window, which must differ.
        "min_distinct_ids": 8,
        "no_window_check": True,
        "kwargs": dict(
            max_position_embeddings=512,
            num_hidden_layers=3,
            head_dim=16,
            hidden_act="gelu_pytorch_tanh",
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=24,  # not head_dim: the scale is tested
            final_logit_softcapping=30.0,
            # Shorter than prompt + continuation (8 + 24): the window is tested, on sliding
            # layers before and after a global one.
            sliding_window=6,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        ),
    },
]


def is_tf5() -> bool:
    return int(transformers.__version__.split(".")[0]) >= 5


def build_config(spec):
    kwargs = dict(COMMON, **spec["kwargs"])
    if not is_tf5():
        # transformers 4.x: rope_theta / rope_scaling.
        rp = dict(kwargs.pop("rope_parameters"))
        kwargs["rope_theta"] = rp.pop("rope_theta")
        rtype = rp.pop("rope_type")
        if rtype != "default":
            kwargs["rope_scaling"] = dict(rope_type=rtype, **rp)
    return spec["config_cls"](**kwargs)


@torch.no_grad()
def randomize(model, seed: int):
    """N(0, WEIGHT_STD) for matrices and biases; layer norms 1 + 0.1 N(0,1); the final norm
    FINAL_NORM_GAIN * (1 + 0.1 N(0,1))."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name == "model.norm.weight":
            p.copy_(FINAL_NORM_GAIN * (1.0 + 0.1 * torch.randn(p.shape, generator=g)))
        elif "norm" in name:
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=g))


@torch.no_grad()
def greedy(model, prompt_ids, n):
    ids = torch.tensor([prompt_ids])
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1]
    first_logits = logits.tolist()
    new_ids, margins = [], []
    for _ in range(n):
        top = torch.topk(logits, 2)
        nxt = int(torch.argmax(logits))
        new_ids.append(nxt)
        margins.append(float(top.values[0] - top.values[1]))
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1]
    return new_ids, margins, first_logits


@torch.no_grad()
def greedy_no_cache(model, prompt_ids, n):
    seq = list(prompt_ids)
    for _ in range(n):
        logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1]
        seq.append(int(torch.argmax(logits)))
    return seq[len(prompt_ids):]


def compact_json(obj) -> str:
    """indent=1, but lists of numbers kept on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    return re.sub(
        r"\[\s+([-0-9.eE+,\s]+?)\s+\]",
        lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
        text,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_ROOT)
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    args = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    prompt_ids = tok(PROMPT_TEXT).input_ids  # BOS + pieces
    assert prompt_ids[0] == tok.bos_token_id
    print(f"prompt {PROMPT_TEXT!r} -> {prompt_ids}", file=sys.stderr)

    only = set(args.only.split(",")) if args.only else None
    for spec in MODELS:
        if only and spec["name"] not in only:
            continue
        out_dir = args.out / spec["name"]
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)

        for seed in range(spec["seed"], spec["seed"] + MAX_SEED_TRIES):
            for f in out_dir.iterdir():
                f.unlink()
            torch.manual_seed(seed)
            config = build_config(spec)
            model = spec["model_cls"](config)
            randomize(model, seed)
            model = model.to(torch.bfloat16)
            model.save_pretrained(str(out_dir), safe_serialization=True)
            tok.save_pretrained(str(out_dir))

            st = out_dir / "model.safetensors"
            st.chmod(0o644)
            size = st.stat().st_size
            assert size < MAX_FILE_BYTES, f"{st}: {size} bytes"

            # The reference comes from the saved files, upcast exactly to float32.
            ref_model = AutoModelForCausalLM.from_pretrained(
                str(out_dir), dtype=torch.float32, attn_implementation="eager"
            )
            ref_model.eval()
            assert type(ref_model) is spec["model_cls"]
            ids, margins, first_logits = greedy(ref_model, prompt_ids, NEW_TOKENS)
            # Also keep EOS out of the continuation, so a harness that stops at EOS and one
            # that does not agree on all NEW_TOKENS ids.
            varied = len(set(ids)) >= spec.get("min_distinct_ids", 1)
            if min(margins) >= MIN_MARGIN and config.eos_token_id not in ids and varied:
                break
            print(f"{spec['name']}: seed {seed} has min margin {min(margins):.4f}, "
                  f"eos in ids: {config.eos_token_id in ids}; next seed", file=sys.stderr)
        else:
            raise SystemExit(f"{spec['name']}: no seed without near-ties")
        assert greedy_no_cache(ref_model, prompt_ids, NEW_TOKENS) == ids, "cache/no-cache differ"

        # Same weights with plain (unscaled) RoPE: shows the test can tell the rope kind apart.
        # (For a model whose rope is already plain, the comparison uses theta 10000 instead.)
        plain_rope, plain_ids, first_diff = None, None, None
        if spec.get("plain_rope", True):
            rp = spec["kwargs"]["rope_parameters"]
            plain_rope = {"rope_type": "default",
                          "rope_theta": rp["rope_theta"] if rp["rope_type"] != "default" else 10000.0}
            plain_cfg = build_config(dict(spec, kwargs=dict(spec["kwargs"], rope_parameters=plain_rope)))
            plain = spec["model_cls"](plain_cfg)
            plain.load_state_dict(ref_model.state_dict())
            plain.eval()
            plain_ids, _, plain_first = greedy(plain, prompt_ids, NEW_TOKENS)
            first_diff = max(abs(a - b) for a, b in zip(first_logits, plain_first))

        no_window_ids = None
        if spec.get("no_window_check"):
            wide_cfg = build_config(dict(spec, kwargs=dict(spec["kwargs"], sliding_window=512)))
            wide = spec["model_cls"](wide_cfg)
            wide.load_state_dict(ref_model.state_dict())
            wide.eval()
            no_window_ids, _, _ = greedy(wide, prompt_ids, NEW_TOKENS)
            assert no_window_ids != ids, "the window changes nothing: pick another seed"

        rot = ref_model.model.rotary_emb
        saved_cfg = json.loads((out_dir / "config.json").read_text())
        ref = {
            "model": spec["name"],
            "architecture": spec["model_cls"].__name__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "config_shape": "transformers 5.x save_pretrained (rope_parameters)" if is_tf5()
                            else "transformers 4.x save_pretrained (rope_theta/rope_scaling)",
            "rope_parameters": saved_cfg.get("rope_parameters", saved_cfg.get("rope_scaling")),
            "seed": seed,
            "weight_init": f"torch.Generator seeded with `seed`: N(0, {WEIGHT_STD}) for matrices and "
                           f"biases, 1 + 0.1 N(0,1) for layer norms, {FINAL_NORM_GAIN} * (1 + 0.1 N(0,1)) "
                           "for the final norm; rounded to bfloat16 before saving",
            "weights_dtype": "bfloat16 (safetensors BF16)",
            "compute_dtype": "float32 (saved bfloat16 weights upcast exactly; eager attention)",
            "decoding": "greedy argmax, plain model.forward loop with KV cache (checked against "
                        "recomputing without cache); exactly max_new_tokens (no EOS id occurs)",
            "prompt_text": PROMPT_TEXT,
            "prompt_ids": prompt_ids,
            "max_new_tokens": NEW_TOKENS,
            "greedy_ids": ids,
            "top2_margins": margins,
            "min_margin": min(margins),
            "near_tie_steps": [i for i, m in enumerate(margins) if m < 0.05],
            "text": tok.decode(ids),
            "first_step_logits": first_logits,
            "rope_inv_freq": getattr(rot, "inv_freq", getattr(rot, "full_attention_inv_freq", None)).tolist(),
            "rope_attention_scaling": float(getattr(rot, "attention_scaling",
                                                    getattr(rot, "full_attention_attention_scaling", 1.0))),
            "plain_rope": plain_rope,
            "plain_rope_greedy_ids": plain_ids,
            "no_window_greedy_ids": no_window_ids,
            "plain_rope_first_step_max_abs_logit_diff": first_diff,
            "safetensors_bytes": size,
        }
        (out_dir / "reference.json").write_text(compact_json(ref) + "\n", encoding="utf-8")
        print(f"{spec['name']}: {size} B, ids {ids}, min margin {min(margins):.4f}, "
              f"near ties {ref['near_tie_steps']}, plain-rope ids differ: {plain_ids != ids} "
              f"(first-step max |dlogit| {first_diff})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
