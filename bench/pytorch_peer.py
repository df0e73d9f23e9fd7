"""The issue's peer: a plain PyTorch eager training loop with PEFT-style LoRA, on the shape of `train-loop ... lora`
(Qwen2.5-0.5B layers: hidden 896, 14/2 heads, intermediate 4864, q/k/v biases, tied embeddings; vocabulary 32,768;
batch 4 x 384, the first 32 tokens of each row an unlabelled prompt; LoRA r 8, alpha 16, dropout 0.05 on all seven
projections; AdamW, clipping at 1.0). What a user's own script does: nn.Modules, full logits, F.cross_entropy.

Usage: python3 bench/pytorch_peer.py [steps (default 4)] [layers (default 4)] [float32|bfloat16] [threads (default:
the machine's cores)]. Prints seconds per step (the first, warm-up, left out of the median) and tokens/s as JSON.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, VOCAB, THETA, EPS = 896, 4864, 14, 2, 32768, 1_000_000.0, 1e-6
BATCH, SEQUENCE, PROMPT = 4, 384, 32


class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(HIDDEN))

    def forward(self, x):
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + EPS)).to(x.dtype)


class LoraLinear(nn.Module):
    def __init__(self, base, r=8, alpha=16, dropout=0.05):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        d = HIDDEN // HEADS
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(), RMSNorm()
        self.q_proj = LoraLinear(nn.Linear(HIDDEN, HEADS * d))
        self.k_proj = LoraLinear(nn.Linear(HIDDEN, KV_HEADS * d))
        self.v_proj = LoraLinear(nn.Linear(HIDDEN, KV_HEADS * d))
        self.o_proj = LoraLinear(nn.Linear(HEADS * d, HIDDEN, bias=False))
        self.gate_proj = LoraLinear(nn.Linear(HIDDEN, INTERMEDIATE, bias=False))
        self.up_proj = LoraLinear(nn.Linear(HIDDEN, INTERMEDIATE, bias=False))
        self.down_proj = LoraLinear(nn.Linear(INTERMEDIATE, HIDDEN, bias=False))

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        d = HIDDEN // HEADS
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, t, HEADS, d).transpose(1, 2)
        k = self.k_proj(h).view(b, t, KV_HEADS, d).transpose(1, 2)
        v = self.v_proj(h).view(b, t, KV_HEADS, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(HEADS // KV_HEADS, 1), v.repeat_interleave(HEADS // KV_HEADS, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            a = torch.softmax(scores, dim=-1) @ v
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, t, HIDDEN))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.embed_tokens.requires_grad_(False)
        self.layers = nn.ModuleList(Layer() for _ in range(layers))
        self.norm = RMSNorm()
        self.norm.requires_grad_(False)
        for layer in self.layers:
            layer.input_layernorm.requires_grad_(False)
            layer.post_attention_layernorm.requires_grad_(False)
        d = HIDDEN // HEADS
        inv_freq = 1.0 / (THETA ** (torch.arange(0, d, 2).float() / d))
        emb = torch.outer(torch.arange(SEQUENCE).float(), inv_freq).repeat(1, 2)
        self.cos, self.sin = emb.cos(), emb.sin()

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, self.cos.to(x.dtype), self.sin.to(x.dtype))
        return self.norm(x) @ self.embed_tokens.weight.T  # tied head


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[sys.argv[3] if len(sys.argv) > 3 else "float32"]
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count())
    torch.manual_seed(0)
    model = Model(layers)
    if dtype != torch.float32:  # frozen base in bfloat16, adapters float32 under autocast
        for name, p in model.named_parameters():
            if not p.requires_grad:
                p.data = p.data.to(dtype)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0)
    model.train()
    seconds = []
    for step in range(steps + 1):
        ids = torch.randint(VOCAB, (BATCH, SEQUENCE + 1))
        labels = ids[:, 1:].clone()
        labels[:, :PROMPT - 1] = -100
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float32):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()
        seconds.append(time.perf_counter() - start)
    timed = sorted(seconds[1:])
    median = timed[len(timed) // 2] if len(timed) % 2 else (timed[len(timed) // 2 - 1] + timed[len(timed) // 2]) / 2
    print(json.dumps({"peer": "pytorch eager + PEFT-style LoRA", "torch": torch.__version__,
                      "blas": torch.__config__.show().split("BLAS_INFO=")[1].split(",")[0],
                      "threads": torch.get_num_threads(), "layers": layers, "dtype": str(dtype).split(".")[1],
                      "step_s": [round(s, 3) for s in seconds], "median_step_s": round(median, 3),
                      "tokens_per_s": round(BATCH * SEQUENCE / median, 1)}))


if __name__ == "__main__":
    main()
