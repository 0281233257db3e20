"""An independent reference decoder for byte-model archives: numpy and constriction only.

It exists to prove the exact arithmetic: it shares no code with lmpress (run it
as a script; it imports neither torch nor lmpress) and computes every step from
the definition, plainly — position-ordered caches instead of rings, Python's
``math.isqrt``, float64 matmuls (exact for these integers), the full softmax
without the fast path's shortcuts, every row stepped to the end. If it decodes
an archive made by ``lmpress`` bit for bit, the archive's probabilities
depend on nothing but the integers.

    python reference.py ARCHIVE MODEL.npz OUTPUT

``MODEL.npz`` comes from ``lmpress export-exact MODEL MODEL.npz`` (the
integer weights, tables and constants of the exact model).
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib

import constriction
import numpy as np


class ReferenceModel:
    def __init__(self, path: str) -> None:
        z = np.load(path)
        self.a = {k: z[k] for k in z.files}
        meta = json.loads(self.a["meta"].tobytes())
        self.id, self.cfg, self.c = meta["id"], meta["config"], meta["constants"]

    def linear(self, name: str, q: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
        w = self.a[name + ".weight"].astype(np.float64)
        y = (q.astype(np.float64) @ w).astype(np.int64)  # integer products, sums below 2**53: exact
        m, shift = self.a[name + ".multiplier"], int(self.a[name + ".shift"])
        return rshift(rshift(y * m, self.c["PRE_SHIFT"]) * row_scale[:, None], shift)

    def norm_quantize(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, amax = quantize(x)
        rms = np.array([max(math.isqrt(int(v)), 1) for v in (x * x).sum(axis=1) // x.shape[1]], dtype=np.int64)
        return q, (amax[:, 0] << self.c["ROW_BITS"]) // (127 * rms)

    def attention(self, q, q_amax, keys, k_amax, values, v_amax):
        """q [B, H, G, hd], q_amax [B, H, G], keys/values [B, H, n, hd] (int8 values), their scales
        [B, H, n]: the weighted value sums [B, H, G, hd]."""
        c = self.c
        table = self.a["attention_exp"]
        dots = np.matmul(q.astype(np.float64), np.swapaxes(keys, -1, -2).astype(np.float64)).astype(np.int64)
        scores = dots * k_amax[:, :, None, :]  # [B, H, G, n]
        gaps = (scores.max(axis=-1, keepdims=True) - scores) >> c["SCORE_SHIFT"]
        row_mul = (q_amax[..., None] << c["ROW_MUL_SHIFT"]) // (127 * 127)
        p = table[np.minimum((gaps * row_mul) >> c["MUL_SHIFT"], len(table) - 1)]
        w = p * v_amax[:, :, None, :]
        peak = np.maximum(w.max(axis=-1, keepdims=True), 1)
        bits = c["WEIGHT_BITS_ATTENTION"]
        w14 = rshift(w * ((np.int64(1 << bits) << 40) // peak), 40)
        sums = np.matmul(w14.astype(np.float64), values.astype(np.float64)).astype(np.int64)  # [B, H, G, hd]
        out = np.empty_like(sums)
        totals = p.sum(axis=-1)
        for index in np.ndindex(*peak.shape[:3]):
            pk = int(peak[index][0])
            shift = max(0, pk.bit_length() - 24)
            out[index] = rshift((sums[index] * (pk >> shift)) // totals[index], bits - shift)
        return out

    def step(self, x: np.ndarray, history: list[dict], pos: int) -> np.ndarray:
        """Logits for input vectors x [B, d]; ``history`` holds each layer's keys and values so far."""
        cfg, c = self.cfg, self.c
        hd = cfg["d_model"] // cfg["n_head"]
        n_q, n_kv, span = cfg["n_head"], cfg["n_kv_head"], cfg["attn_span"]
        groups, half = n_q // n_kv, hd // 2
        cos, sin = self.a["rope_cos"][pos], self.a["rope_sin"][pos]
        limit = c["RESIDUAL_LIMIT"]
        for i in range(cfg["n_layer"]):
            q8, rs = self.norm_quantize(x)
            qkv = np.clip(self.linear(f"layer{i}.qkv", q8, rs), -c["QKV_LIMIT"], c["QKV_LIMIT"])
            qkv = qkv.reshape(len(x), n_q + 2 * n_kv, hd)
            a, e = qkv[:, : n_q + n_kv, :half], qkv[:, : n_q + n_kv, half:]
            rot = np.concatenate([rshift(a * cos - e * sin, c["ROPE_BITS"]), rshift(a * sin + e * cos, c["ROPE_BITS"])],
                                 axis=-1)
            q, q_amax = quantize(rot[:, :n_q])
            k, k_amax = quantize(rot[:, n_q:])
            v, v_amax = quantize(qkv[:, n_q + n_kv:])
            layer = history[i]  # position-ordered keys, values and scales [B, n_kv, positions, ...]
            layer["k"][:, :, pos], layer["ka"][:, :, pos] = k, k_amax[..., 0]
            layer["v"][:, :, pos], layer["va"][:, :, pos] = v, v_amax[..., 0]
            seen = slice(max(0, pos + 1 - span), pos + 1)
            out = self.attention(q.reshape(len(x), n_kv, groups, hd), q_amax.reshape(len(x), n_kv, groups),
                                 layer["k"][:, :, seen], layer["ka"][:, :, seen],
                                 layer["v"][:, :, seen], layer["va"][:, :, seen])
            q8, amax = quantize(out.reshape(len(x), n_q * hd))
            rs = (amax[:, 0] << (c["ROW_BITS"] - c["QKV_BITS"])) // (127 * 127)
            x = np.clip(x + self.linear(f"layer{i}.out", q8, rs), -limit, limit)
            q8, rs = self.norm_quantize(x)
            h = self.linear(f"layer{i}.up", q8, rs)
            g_lim = c["GELU_LIMIT"] << c["HIDDEN_BITS"]
            gelu = np.where(h >= g_lim, h, np.where(h <= -g_lim, 0, self.a["gelu"][np.clip(h + g_lim, 0, 2 * g_lim)]))
            q8, amax = quantize(gelu)
            rs = (amax[:, 0] << (c["ROW_BITS"] - c["HIDDEN_BITS"])) // 127
            x = np.clip(x + self.linear(f"layer{i}.down", q8, rs), -limit, limit)
        q8, rs = self.norm_quantize(x)
        return self.linear("head", q8, rs)

    def weights(self, logits: np.ndarray) -> np.ndarray:
        """Coder weights (frequencies minus one) from 8-bit logits, by the exp table."""
        table = self.a["logit_exp"]
        e = table[np.minimum(logits.max(axis=1, keepdims=True) - logits, len(table) - 1)]
        free = self.c["TOTAL"] - logits.shape[1]
        w = (e * ((free << 30) // e.sum(axis=1, keepdims=True))) >> 30
        w[np.arange(len(w)), logits.argmax(axis=1)] += free - w.sum(axis=1)
        return w


def rshift(x: np.ndarray, s: int) -> np.ndarray:
    return x << -s if s <= 0 else (x + (1 << (s - 1))) >> s


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1)
    return rshift(x * ((127 << 40) // amax), 40), amax


def decode_block(model: ReferenceModel, payload: bytes, raw_length: int, chunk_size: int) -> bytes:
    lengths = [min(chunk_size, raw_length - i) for i in range(0, raw_length, chunk_size)]
    batch = len(lengths)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    family = constriction.stream.model.Categorical(perfect=False)
    cfg = model.cfg
    shape = (batch, cfg["n_kv_head"], max(lengths), cfg["d_model"] // cfg["n_head"])
    history = [{"k": np.zeros(shape, np.int64), "ka": np.zeros(shape[:3], np.int64),
                "v": np.zeros(shape, np.int64), "va": np.zeros(shape[:3], np.int64)} for _ in range(cfg["n_layer"])]
    bos = model.a["embed"].shape[0] - 1
    logits = model.step(model.a["embed"][np.full(batch, bos)], history, 0)
    out = np.zeros((batch, max(lengths)), dtype=np.int64)
    fed = np.zeros(batch, dtype=np.int64)
    for t in range(max(lengths)):
        live = np.array([t < n for n in lengths])
        w = model.weights(logits)[live]
        symbols = np.asarray(decoder.decode(family, w.astype(np.float64)), dtype=np.int64)
        out[live, t] = symbols
        fed[live] = symbols  # finished rows repeat their last symbol (they no longer matter)
        if t + 1 < max(lengths):
            logits = model.step(model.a["embed"][fed], history, t + 1)
    return b"".join(out[i, :n].astype(np.uint8).tobytes() for i, n in enumerate(lengths))


def decode_archive(data: bytes, model: ReferenceModel) -> bytes:
    if data[:4] != b"LMPZ" or data[4] not in (2, 3):
        raise SystemExit("not an lmpress archive of format 2 or 3")
    version = data[4]
    (n,) = struct.unpack_from("<H", data, 5)
    settings = json.loads(data[7:7 + n])
    pos = 7 + n + 32
    arithmetic = settings.get("arithmetic", {})
    if arithmetic.get("name") != "exact-int/v1" or settings.get("prompt"):
        raise SystemExit("the reference decoder reads exact-int/v1 archives without soft prompts or context "
                         "mixing (lmpress --no-mix)")
    if not model.id.startswith(arithmetic["id"]):
        raise SystemExit(f"archive needs arithmetic {arithmetic['id']}, the model file has {model.id}")
    if struct.unpack_from("<I", data, pos)[0] != zlib.crc32(data[:pos]):
        raise SystemExit("header checksum mismatch")
    pos += 4
    parts = []
    while struct.unpack_from("<I", data, pos)[0] != 0xFFFFFFFF:
        raw_length, payload_length, raw_crc, _ = struct.unpack_from("<IIII", data, pos)
        stored = version >= 3 and data[pos + 16] == 0  # format 3: a method byte, 0 = stored raw
        pos += 20 + (version >= 3)
        payload = data[pos:pos + payload_length]
        block = payload if stored else decode_block(model, payload, raw_length, settings["chunk_size"])
        if zlib.crc32(block) != raw_crc:
            raise SystemExit(f"block {len(parts)} decodes to data failing its checksum")
        parts.append(block)
        pos += payload_length
    return b"".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-4].strip(), file=sys.stderr)
        return 2
    archive, model_path, output = argv
    with open(archive, "rb") as f:
        data = decode_archive(f.read(), ReferenceModel(model_path))
    with open(output, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
