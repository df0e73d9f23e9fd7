"""transformers' Trainer (with PEFT's LoRA) step for step, in plain PyTorch: the independent side of
TransformersParityTests. It shares no code with FineTune and follows the Python libraries' documented behaviour:

- the model: Hugging Face's Llama / Qwen2 decoder from config.json (RMSNorm computed in float32, rotate-half RoPE,
  grouped-query attention over a causal + padding mask, SiLU-gated MLP, optional q/k/v biases, tied embeddings);
- LoRA as PEFT's Linear: base(x) + lora_B(lora_A(x)) * lora_alpha / r; only lora_A and lora_B train;
- a micro-batch as DataCollatorForSeq2Seq makes it: right-padded input_ids, attention_mask 0 and labels -100 on
  padding;
- the loss as ForCausalLMLoss computes it under Trainer: labels shifted left, cross-entropy summed over the labels
  that are not -100 and divided by num_items_in_batch, the label count of the whole optimizer step
  (Trainer.get_batch_samples), so the accumulated gradient is that of the step's mean token loss;
- the loop: max_steps = ceil(num_train_epochs * (batches per epoch // gradient_accumulation_steps)); each epoch is cut
  into steps of gradient_accumulation_steps micro-batches, its last step taking what is left; each step runs
  backward per micro-batch, clip_grad_norm_(max_grad_norm), torch.optim.AdamW, then the LambdaLR scheduler;
- AdamW's two groups (Trainer.create_optimizer): weight_decay for every trained weight except biases and the weights
  of norm layers, which get 0;
- the schedules of transformers.optimization (linear, cosine, constant, constant_with_warmup) with its warmup count:
  warmup_steps if set, else ceil(max_steps * warmup_ratio).

Usage: python3 transformers_trainer_reference.py JOB_FOLDER. The folder holds config.json, initial.safetensors (every
weight of the model, LoRA adapters included) and job.json (settings, examples, each epoch's micro-batches of example
indices). Writes result.json (per step: loss, gradient norm before clipping, learning rate) and final.safetensors (the
trained weights).
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": (np.float32, torch.float32)}


def read_safetensors(path):
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_size))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=DTYPES[entry["dtype"]][0]).reshape(entry["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        blob = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


class Decoder:
    """The forward pass of a Llama-family causal LM over a dictionary of weights keyed as in Hugging Face."""

    def __init__(self, config, weights, lora_scaling):
        self.c = config
        self.w = weights
        self.lora_scaling = lora_scaling
        self.head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        self.eps = config.get("rms_norm_eps", 1e-6)
        self.norm_weights = {"model.norm.weight"}
        for i in range(config["num_hidden_layers"]):
            self.norm_weights |= {f"model.layers.{i}.input_layernorm.weight",
                                  f"model.layers.{i}.post_attention_layernorm.weight"}

    def linear(self, x, name):
        w = self.w
        y = x @ w[name + ".weight"].T
        if name + ".bias" in w:
            y = y + w[name + ".bias"]
        if name + ".lora_A.weight" in w:
            y = y + (x @ w[name + ".lora_A.weight"].T @ w[name + ".lora_B.weight"].T) * self.lora_scaling
        return y

    def rms_norm(self, x, name):
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.w[name] * (x * torch.rsqrt(variance + self.eps))

    def rotary(self, length):
        dim = self.head_dim
        inv_freq = 1.0 / (self.c.get("rope_theta", 10000.0) ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def attention(self, x, prefix, cos, sin, mask):
        batch, length, _ = x.shape
        heads, kv_heads, d = self.c["num_attention_heads"], self.c["num_key_value_heads"], self.head_dim
        q = self.linear(x, prefix + ".q_proj").view(batch, length, heads, d).transpose(1, 2)
        k = self.linear(x, prefix + ".k_proj").view(batch, length, kv_heads, d).transpose(1, 2)
        v = self.linear(x, prefix + ".v_proj").view(batch, length, kv_heads, d).transpose(1, 2)
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + mask
        out = torch.softmax(scores, dim=-1, dtype=torch.float32) @ v
        return self.linear(out.transpose(1, 2).reshape(batch, length, heads * d), prefix + ".o_proj")

    def logits(self, input_ids, attention_mask):
        batch, length = input_ids.shape
        x = self.w["model.embed_tokens.weight"][input_ids]
        cos, sin = self.rotary(length)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = causal[None, None, :, :] & attention_mask[:, None, None, :].bool()
        mask = torch.zeros(batch, 1, length, length).masked_fill(~allowed, torch.finfo(torch.float32).min)
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}"
            x = x + self.attention(self.rms_norm(x, p + ".input_layernorm.weight"), p + ".self_attn", cos, sin, mask)
            h = self.rms_norm(x, p + ".post_attention_layernorm.weight")
            x = x + self.linear(F.silu(self.linear(h, p + ".mlp.gate_proj")) * self.linear(h, p + ".mlp.up_proj"),
                                p + ".mlp.down_proj")
        x = self.rms_norm(x, "model.norm.weight")
        head = self.w["model.embed_tokens.weight"] if self.c.get("tie_word_embeddings") else self.w["lm_head.weight"]
        return x @ head.T


def collate(examples):
    length = max(len(e["input_ids"]) for e in examples)
    ids, mask, labels = [], [], []
    for e in examples:
        pad = length - len(e["input_ids"])
        ids.append(e["input_ids"] + [0] * pad)
        mask.append([1] * len(e["input_ids"]) + [0] * pad)
        labels.append(e["labels"] + [-100] * pad)
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def lr_lambda(kind, warmup, total):
    def linear(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    def cosine(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

    def constant_with_warmup(step):
        return step / max(1.0, warmup) if step < warmup else 1.0

    return {"linear": linear, "cosine": cosine, "constant": lambda step: 1.0,
            "constant_with_warmup": constant_with_warmup}[kind]


def main(folder):
    torch.set_num_threads(1)
    config = json.load(open(f"{folder}/config.json"))
    job = json.load(open(f"{folder}/job.json"))
    s = job["settings"]
    weights = read_safetensors(f"{folder}/initial.safetensors")
    lora = any(".lora_A." in name for name in weights)
    model = Decoder(config, weights, s["lora_alpha"] / s["lora_r"] if lora else None)
    trained = sorted(n for n in weights if not lora or ".lora_A." in n or ".lora_B." in n)
    for name in trained:
        weights[name].requires_grad_(True)

    no_decay = {n for n in trained if n in model.norm_weights or n.endswith(".bias")}
    optimizer = torch.optim.AdamW(
        [{"params": [weights[n] for n in trained if n not in no_decay], "weight_decay": s["weight_decay"]},
         {"params": [weights[n] for n in trained if n in no_decay], "weight_decay": 0.0}],
        lr=s["learning_rate"], betas=(s["adam_beta1"], s["adam_beta2"]), eps=s["adam_epsilon"])

    epochs = job["epochs"]
    accumulation = s["gradient_accumulation_steps"]
    max_steps = math.ceil(s["num_train_epochs"] * max(len(epochs[0]) // accumulation, 1))
    warmup = s["warmup_steps"] if s["warmup_steps"] > 0 else math.ceil(max_steps * s["warmup_ratio"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(s["lr_scheduler_type"], warmup, max_steps))

    examples = job["examples"]
    steps = []
    for epoch in epochs:
        for start in range(0, len(epoch), accumulation):
            steps.append(epoch[start:start + accumulation])
    losses, grad_norms, rates = [], [], []
    for micro_batches in steps[:max_steps]:
        rates.append(optimizer.param_groups[0]["lr"])
        batches = [collate([examples[i] for i in batch]) for batch in micro_batches]
        num_items_in_batch = sum(int(labels[:, 1:].ne(-100).sum()) for _, _, labels in batches)
        step_loss = 0.0
        for ids, mask, labels in batches:
            logits = model.logits(ids, mask).float()
            shift_labels = labels[:, 1:]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shift_labels.reshape(-1),
                                   ignore_index=-100, reduction="sum") / num_items_in_batch
            loss.backward()
            step_loss += loss.item()
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_([weights[n] for n in trained], s["max_grad_norm"])))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(step_loss)

    json.dump({"losses": losses, "grad_norms": grad_norms, "learning_rates": rates, "trained": trained,
               "torch": torch.__version__}, open(f"{folder}/result.json", "w"))
    write_safetensors(f"{folder}/final.safetensors", {n: weights[n] for n in trained})


if __name__ == "__main__":
    main(sys.argv[1])
