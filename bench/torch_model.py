"""iGPT written plainly in PyTorch, for the peers under bench/: gain-only norm, quick GELU, causal
attention, untied LM head over the colors (the input vocabulary is the colors, then SOS).
Initialized with the distributions src/model/parameters.ts uses, and saved as a Hugging Face
ImageGPT folder (the names and Conv1D [in, out] layout of src/model/parameters.ts), so that igpt's
own eval-nll and probe measure a model trained here exactly as they measure one of ours.
"""
import json
import math
import os
import struct

import torch


class GainNorm(torch.nn.Module):
    """x · rsqrt(mean(x²) + eps) · g: iGPT's norm, without mean subtraction or bias."""

    def __init__(self, width):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.gain


class Block(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.width, self.heads = width, heads
        self.norm1, self.norm2 = GainNorm(width), GainNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.attn_out = torch.nn.Linear(width, width)
        self.fc = torch.nn.Linear(width, 4 * width)
        self.mlp_out = torch.nn.Linear(4 * width, width)

    def attention(self, x):
        batch, length, _ = x.shape
        head = self.width // self.heads
        q, k, v = self.qkv(x).split(self.width, dim=-1)
        q, k, v = (t.view(batch, length, self.heads, head).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(head)
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(-1)
        y = (weights @ v).transpose(1, 2).reshape(batch, length, self.width)
        return self.attn_out(y)

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        h = self.fc(self.norm2(x))
        return x + self.mlp_out(h * torch.sigmoid(1.702 * h))


class ImageGPT(torch.nn.Module):
    def __init__(self, colors, pixels, width, heads, layers):
        super().__init__()
        self.colors, self.pixels, self.width, self.heads_count, self.layers = colors, pixels, width, heads, layers
        self.tokens = torch.nn.Embedding(colors + 1, width)  # the colors, then SOS
        self.positions = torch.nn.Parameter(torch.zeros(pixels, width))
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = GainNorm(width)
        self.head = torch.nn.Linear(width, colors, bias=False)
        self.init_like_igpt()

    @torch.no_grad()
    def init_like_igpt(self):
        """src/model/parameters.ts initParameters: the same distributions (not the same numbers)."""
        d, layers = self.width, self.layers
        self.tokens.weight.normal_(0, 0.02)
        self.positions.normal_(0, 0.01)
        for b in self.blocks:
            b.qkv.weight.normal_(0, 1 / math.sqrt(d))
            b.attn_out.weight.normal_(0, 1 / math.sqrt(d * layers))
            b.fc.weight.normal_(0, 0.02)
            b.mlp_out.weight.normal_(0, 0.02)
            for linear in (b.qkv, b.attn_out, b.fc, b.mlp_out):
                linear.bias.zero_()
        self.head.weight.zero_()

    def forward(self, ids):
        x = self.tokens(ids) + self.positions[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def hf_tensors(self):
        """(name, float32 tensor) in Hugging Face ImageGPT's names; linear weights as Conv1D [in, out]."""
        out = [("transformer.wte.weight", self.tokens.weight), ("transformer.wpe.weight", self.positions)]
        for i, b in enumerate(self.blocks):
            p = f"transformer.h.{i}."
            out += [
                (p + "ln_1.weight", b.norm1.gain),
                (p + "attn.c_attn.weight", b.qkv.weight.t()), (p + "attn.c_attn.bias", b.qkv.bias),
                (p + "attn.c_proj.weight", b.attn_out.weight.t()), (p + "attn.c_proj.bias", b.attn_out.bias),
                (p + "ln_2.weight", b.norm2.gain),
                (p + "mlp.c_fc.weight", b.fc.weight.t()), (p + "mlp.c_fc.bias", b.fc.bias),
                (p + "mlp.c_proj.weight", b.mlp_out.weight.t()), (p + "mlp.c_proj.bias", b.mlp_out.bias),
            ]
        out += [("transformer.ln_f.weight", self.norm.gain), ("lm_head.weight", self.head.weight)]
        return [(name, t.detach().float().contiguous()) for name, t in out]


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format: an 8-byte header length, a JSON header, then the raw little-endian data."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors:
        blob = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def save_hf_folder(model, folder, clusters, side):
    """config.json, model.safetensors and preprocessor_config.json, each written to a temp file and renamed."""
    os.makedirs(folder, exist_ok=True)
    config = {
        "activation_function": "quick_gelu", "architectures": ["ImageGPTForCausalImageModeling"],
        "attn_pdrop": 0, "embd_pdrop": 0, "initializer_range": 0.02, "layer_norm_epsilon": 1e-5,
        "model_type": "imagegpt", "n_embd": model.width, "n_head": model.heads_count, "n_inner": None,
        "n_layer": model.layers, "n_positions": model.pixels, "reorder_and_upcast_attn": False, "resid_pdrop": 0,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "tie_word_embeddings": False,
        "torch_dtype": "float32", "use_cache": True, "vocab_size": model.colors + 1,
    }
    preprocessor = {
        "clusters": clusters, "do_color_quantize": True, "do_normalize": True, "do_resize": True,
        "image_processor_type": "ImageGPTImageProcessor", "resample": 2, "size": {"height": side, "width": side},
    }

    def atomic(name, write):
        tmp = os.path.join(folder, f".{name}.tmp")
        write(tmp)
        os.replace(tmp, os.path.join(folder, name))

    def json_file(obj):
        def write(path):
            with open(path, "w") as f:
                f.write(json.dumps(obj, indent=2) + "\n")
        return write

    atomic("config.json", json_file(config))
    atomic("preprocessor_config.json", json_file(preprocessor))
    atomic("model.safetensors", lambda p: write_safetensors(p, model.hf_tensors(), {"format": "pt"}))
