#!/usr/bin/env python3
"""A GGUF model with random weights and a real architecture (Qwen2), for measuring what does not
depend on the weights: load time, memory, decode speed, grammar-constrained output, freeing.
It exists because a real model of that size is too large to carry to an offline GPU machine.

The tokenizer is byte-level (the 256 GPT-2 byte symbols and one merge) plus ChatML's special
tokens, padded to the vocabulary size; the replies are noise, but every grammar still holds.
Needs the `gguf` and `numpy` Python packages. Default shape: Qwen2.5-1.5B, Q8_0.

    python3 scripts/make-random-gguf.py OUT.gguf [--layers 28 --hidden 1536 ...]
"""
import argparse

import numpy as np
import gguf


def byte_symbols():
    """GPT-2's reversible byte-to-unicode table, as llama.cpp's byte-level BPE expects."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=8960)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--context", type=int, default=32768)
    p.add_argument("--type", choices=["q8_0", "f16"], default="q8_0")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    qtype = gguf.GGMLQuantizationType.Q8_0 if args.type == "q8_0" else gguf.GGMLQuantizationType.F16
    w = gguf.GGUFWriter(args.out, "qwen2")
    w.add_name("random-qwen2")
    w.add_context_length(args.context)
    w.add_embedding_length(args.hidden)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(args.ffn)
    w.add_head_count(args.heads)
    w.add_head_count_kv(args.kv_heads)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if args.type == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = byte_symbols()
    # llama.cpp wants at least one merge: two spaces, a real token of code.
    space = tokens[ord(" ")]
    tokens.append(space + space)
    tokens += [f"<|pad_{i}|>" for i in range(args.vocab - len(tokens) - len(specials))]
    tokens += specials
    types = [gguf.TokenType.NORMAL] * 257 + [gguf.TokenType.UNUSED] * (args.vocab - 257 - 3)
    types += [gguf.TokenType.CONTROL] * 3
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{space} {space}"])
    w.add_eos_token_id(args.vocab - 1)  # <|im_end|>
    w.add_bos_token_id(args.vocab - 3)  # <|endoftext|>
    w.add_add_bos_token(False)
    w.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )

    def matrix(name, rows, cols):
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        if qtype == gguf.GGMLQuantizationType.Q8_0:
            q = gguf.quants.quantize(data, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(name, data.astype(np.float16))

    def vector(name, n, value=None):
        data = np.full(n, value, dtype=np.float32) if value is not None else (
            rng.standard_normal(n, dtype=np.float32) * 0.02)
        w.add_tensor(name, data)

    kv = args.hidden // args.heads * args.kv_heads
    matrix("token_embd.weight", args.vocab, args.hidden)
    for i in range(args.layers):
        b = f"blk.{i}"
        vector(f"{b}.attn_norm.weight", args.hidden, 1.0)
        matrix(f"{b}.attn_q.weight", args.hidden, args.hidden)
        vector(f"{b}.attn_q.bias", args.hidden)
        matrix(f"{b}.attn_k.weight", kv, args.hidden)
        vector(f"{b}.attn_k.bias", kv)
        matrix(f"{b}.attn_v.weight", kv, args.hidden)
        vector(f"{b}.attn_v.bias", kv)
        matrix(f"{b}.attn_output.weight", args.hidden, args.hidden)
        vector(f"{b}.ffn_norm.weight", args.hidden, 1.0)
        matrix(f"{b}.ffn_gate.weight", args.ffn, args.hidden)
        matrix(f"{b}.ffn_up.weight", args.ffn, args.hidden)
        matrix(f"{b}.ffn_down.weight", args.hidden, args.ffn)
    vector("output_norm.weight", args.hidden, 1.0)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}: qwen2, {args.layers} layers, width {args.hidden}, vocab {args.vocab}, {args.type}")


if __name__ == "__main__":
    main()
