"""A Llama forward pass in plain tensors, giving the same bits as transformers' own.

The organism is a 1M-parameter `LlamaForCausalLM`; at that size a good part of each
forward call through transformers is Python (its layers, output records, mask builder,
cache classes and hub-kernel wrappers) rather than arithmetic, and the trainer makes
about fourteen such calls a step (a prefill and a call per decoding step, then the loss
pass). This module runs the same operations, in the same order, on the model's own
parameters (or fewer operations giving the same numbers: the rotary embedding's roll),
so that its logits are bit for bit those of `model(...)`, and so are its gradients over
whole rows.

One shortcut is exact only to rounding: the loss pass reads only the completions' real
tokens (`real`), packed, where transformers reads every row to the longest completion.
Each weight gradient then sums fewer rows, in another order: equal to rounding (relative
differences about 1e-6), not bit for bit. The logits are the same numbers computed the
same way, bit for bit where each product has a dozen rows or more; a product of a few
rows can round otherwise than those rows inside a longer one (MKL's small-matrix
kernels: on the development machine's AMD EPYC with 2 threads, products of fewer than
12 rows not a multiple of 4). On the organism's short completions this spares about a
third of the loss pass's arithmetic; a run sampled the same first step before it and then
drifts by rounding (docs/development.md, "Runs are not pinned", measures how far).

What "the same operations" means is transformers' code of the version installed, which
can change; so `plain_forward(model)` first runs both on a small batch in each of the
shapes the trainer uses (padded and unpadded prompts, a decoding step, a continuation
over a cache) and uses the plain pass only where every logit is equal. Any model it does
not reproduce exactly (another architecture, adapters, hooks, dropout, another attention
implementation) keeps going through `model(...)`.
"""

from __future__ import annotations

import copy
import inspect
import weakref
from typing import Any

import torch
import torch.nn.functional as F

#: model -> (the dtype and device it was checked on, its PlainLlama or None where it was
#: found not to reproduce the model's bits); (None, None): never (`never_plain`)
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class KVCache:
    """Keys and values per layer, each (B, H_kv, L, D), under the method names of
    transformers' `DynamicCache` that the trainer calls.

    With room reserved (`batch_repeat_interleave(..., room=n)`, what sampling does), each
    layer's keys and values are the first L positions of a buffer of L + n, and a decoding
    step writes its position in place instead of copying the whole cache to append one
    (a copy that cost a third of the organism's sampling time). Only for passes without
    gradients: the buffers are written in place.
    """

    def __init__(self, layers: list[list[torch.Tensor]],
                 room: list[list[torch.Tensor]] | None = None) -> None:
        self.layers = layers  # [[keys, values], ...]
        self.room = room  # [[key buffer, value buffer], ...] (B, H_kv, capacity, D), or None

    def batch_select_indices(self, rows: torch.Tensor) -> None:
        """Keep these rows (in this order): a row per index."""
        # index_select, not kv[rows]: the same values, and its backward (index_add) sums
        # each prompt's rows in the same order as the indexing's accumulating index_put,
        # several times faster on the CPU
        if self.room is not None:  # the buffers whole: one copy (of the room too)
            length = self.length
            for kv, buffers in zip(self.layers, self.room, strict=True):
                buffers[0], buffers[1] = buffers[0].index_select(0, rows), buffers[1].index_select(0, rows)
                kv[0], kv[1] = buffers[0][:, :, :length], buffers[1][:, :, :length]
            return
        self.layers = self.selected(rows).layers

    def selected(self, rows: torch.Tensor) -> KVCache:
        """A new cache of these rows (in this order), this one left as it is."""
        return KVCache([[kv[0].index_select(0, rows), kv[1].index_select(0, rows)] for kv in self.layers])

    def batch_repeat_interleave(self, repeats: int, room: int = 0) -> None:
        """Each row `repeats` times in a row, as `Tensor.repeat_interleave` orders them;
        with `room`, in buffers with that many positions to spare."""
        if not room:
            for kv in self.layers:
                kv[0], kv[1] = kv[0].repeat_interleave(repeats, dim=0), kv[1].repeat_interleave(repeats, dim=0)
            return
        self.room = []
        for kv in self.layers:
            U, H, L, _ = kv[0].shape  # the last size is read per tensor below
            buffers = []
            for j in range(2):
                buffer = kv[j].new_empty(U * repeats, H, L + room, kv[j].shape[-1])
                # (U, repeats, ...) view: row u's copies are rows u * repeats ... in a row
                buffer.view(U, repeats, H, L + room, -1)[:, :, :, :L] = kv[j][:, None]
                buffers.append(buffer)
                kv[j] = buffer[:, :, :L]
            self.room.append(buffers)

    @property
    def length(self) -> int:
        """Positions held."""
        return self.layers[0][0].shape[2]

    def fits(self, positions: int) -> bool:
        """Whether `positions` more can be written into the room."""
        return self.room is not None and self.length + positions <= self.room[0][0].shape[2]

    def extended(self, layer: int, keys: torch.Tensor, values: torch.Tensor,
                 in_place: bool) -> list[torch.Tensor]:
        """This layer's keys and values followed by these (B, H_kv, Q, D): written into the
        room when `in_place`, else a new tensor each."""
        old_keys, old_values = self.layers[layer]
        if not in_place:
            return [torch.cat([old_keys, keys], dim=-2), torch.cat([old_values, values], dim=-2)]
        start, end = self.length, self.length + keys.shape[2]
        key_buffer, value_buffer = self.room[layer]  # type: ignore[index]
        key_buffer[:, :, start:end] = keys
        value_buffer[:, :, start:end] = values
        return [key_buffer[:, :, :end], value_buffer[:, :, :end]]


class PlainLlama:
    """`LlamaForCausalLM`'s forward pass on its own parameters (read at each call, so
    training updates and frozen layers apply as they do to the model)."""

    def __init__(self, model: Any) -> None:
        config = model.config
        # weakly: `_CHECKED` maps the model to this, and a strong reference here would
        # keep every model ever checked alive
        self._model = weakref.ref(model)
        self.rotary = model.model.rotary_emb  # its inverse frequencies are read at each call
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scaling = self.head_dim**-0.5
        self._sign_of: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}  # `_signs`
        #: whether `real` packs the real positions (`reproduces` turns it off where the
        #: packed logits differ from the padded ones by more than rounding: then every
        #: position is read)
        self.packs = True

    def __call__(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
        real: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, Q, V) (only the last `logits_to_keep` positions when > 0) and the
        cache extended by these Q positions. ids, positions: (B, Q); mask: (B, K) over the
        cached positions and these (K = cached + Q), 1 for a real token.

        With `real` ((B, Q) bool, each row's real positions first, then its padding), the
        per-token work (norms, projections, MLP, logits) is done on the real positions
        only, packed into one (T, E) matrix, and only attention sees the rows padded: the
        logits at padding are 0. The logits at real positions are the padded pass's (to
        rounding in products of a few rows); the gradients differ in their last bits,
        since each weight gradient sums fewer rows."""
        model = self._model()
        decoder = model.model
        B, Q = ids.shape
        packed = real is not None and self.packs
        keep = real.reshape(-1).nonzero().squeeze(1) if packed else None  # (T,) of B * Q
        if keep is not None:  # the real positions only, as a batch of one: (1, T)
            ids, positions = ids.reshape(1, -1)[:, keep], positions.reshape(1, -1)[:, keep]
        x = F.embedding(ids, decoder.embed_tokens.weight, decoder.embed_tokens.padding_idx)  # (B, Q, E)
        cos, sin = self._rotary(positions, x.dtype)  # (B, 1, Q, D) each
        # transformers' `rotate_half(q) * sin` is `q.roll(D/2) * sin` with the first half of
        # sin negated: the same products bit for bit (the sign moves from one factor to the
        # other), in one operation where it takes four, and whose backward is one roll
        # instead of two slices' zero-filled copies
        half = self.head_dim // 2
        turned = sin * self._signs(sin)  # (B, 1, Q, D)
        past = 0 if cache is None else cache.length
        in_place = cache is not None and cache.fits(Q) and not torch.is_grad_enabled()
        attend = self._attention_mask(mask, Q, past)  # (B, 1, Q, K) bool, or None: causal
        layers: list[list[torch.Tensor]] = []
        for i, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            h = self._norm(x, layer.input_layernorm.weight)  # (B, Q, E)
            q = F.linear(h, attn.q_proj.weight).view(*h.shape[:2], -1, self.head_dim).transpose(1, 2)  # (B, H, Q, D)
            k = F.linear(h, attn.k_proj.weight).view(*h.shape[:2], -1, self.head_dim).transpose(1, 2)  # (B, Hkv, Q, D)
            v = F.linear(h, attn.v_proj.weight).view(*h.shape[:2], -1, self.head_dim).transpose(1, 2)  # (B, Hkv, Q, D)
            q = (q * cos) + (q.roll(half, -1) * turned)
            k = (k * cos) + (k.roll(half, -1) * turned)
            if keep is not None:  # (1, H, T, D) -> (B, H, Q, D), zeros at padding
                q, k, v = (_unpack(t, keep, B, Q) for t in (q, k, v))
            if cache is not None:  # (B, Hkv, past + Q, D)
                k, v = cache.extended(i, k, v, in_place)
            layers.append([k, v])
            o = self._attend(q, k, v, attend)  # (B, Q, H * D)
            if keep is not None:  # (B, Q, H * D) -> (1, T, H * D)
                o = o.reshape(B * Q, -1).index_select(0, keep)[None]
            x = x + F.linear(o, attn.o_proj.weight)
            h = self._norm(x, layer.post_attention_layernorm.weight)
            mlp = layer.mlp
            x = x + F.linear(F.silu(F.linear(h, mlp.gate_proj.weight)) * F.linear(h, mlp.up_proj.weight),
                             mlp.down_proj.weight)
        x = self._norm(x, decoder.norm.weight)
        if logits_to_keep:
            x = x[:, -logits_to_keep:, :]
        logits = F.linear(x, model.lm_head.weight)  # (B, Q', V), or (1, T, V) packed
        if keep is not None:  # (B, Q, V), zeros at padding
            logits = logits.new_zeros(B * Q, logits.shape[-1]).index_copy(0, keep, logits[0]).view(B, Q, -1)
        return logits, KVCache(layers, cache.room if in_place else None)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype  # RMSNorm in float32, scaled back in the model's dtype
        wide = dtype == torch.float32  # then both conversions would do nothing: none is made
        x = x if wide else x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return weight * (x if wide else x.to(dtype))

    def _signs(self, like: torch.Tensor) -> torch.Tensor:
        """(D,): -1 for the first half of a head's dimensions, +1 for the second; made once
        per dtype and device (every forward call, decoding steps included, uses it)."""
        key = (like.dtype, like.device)
        if key not in self._sign_of:
            signs = torch.ones(self.head_dim, dtype=like.dtype, device=like.device)
            signs[: self.head_dim // 2] = -1
            self._sign_of[key] = signs
        return self._sign_of[key]

    def _rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.rotary.inv_freq  # a buffer: replaced when the model moves
        freqs = positions[..., None].float() * inv_freq.to(device=positions.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, Q, D)
        cos = emb.cos() * self.rotary.attention_scaling
        sin = emb.sin() * self.rotary.attention_scaling
        return cos.to(dtype=dtype).unsqueeze(1), sin.to(dtype=dtype).unsqueeze(1)

    @staticmethod
    def _attention_mask(mask: torch.Tensor, Q: int, past: int) -> torch.Tensor | None:
        """transformers' choice for sdpa: no mask (sdpa's own causal flag) when no token is
        padding and the queries are one token or the whole sequence; else a boolean mask
        of what each query may see: a real token, not after itself."""
        K = past + Q
        if (Q == 1 or K == Q) and bool(mask.all()):
            return None
        if Q == 1:  # a decoding step: its one query follows every key, so only padding is hidden
            return mask[:, None, None, :].bool()  # (B, 1, 1, K)
        keys = torch.arange(K, device=mask.device)
        causal = keys[None, :] <= (torch.arange(Q, device=mask.device) + past)[:, None]  # (Q, K)
        return causal[None, None, :, :] & mask[:, None, None, :].bool()  # (B, 1, Q, K)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attend: torch.Tensor | None) -> torch.Tensor:
        """sdpa as transformers calls it, grouped-query layouts included; (B, Q, H * D)."""
        B, _, Q, D = q.shape
        groups = self.heads // self.kv_heads
        extra: dict[str, Any] = {}
        if groups > 1:
            if attend is None and k.shape[-1] == v.shape[-1] <= 256:
                extra["enable_gqa"] = True
            elif Q == 1:  # each key head's n_rep query heads as one head's queries
                q = q.reshape(B, self.kv_heads, groups, D)
            else:
                k = k[:, :, None].expand(B, self.kv_heads, groups, k.shape[2], D).reshape(B, self.heads, -1, D)
                v = v[:, :, None].expand(B, self.kv_heads, groups, v.shape[2], D).reshape(B, self.heads, -1, D)
        causal = Q > 1 and attend is None  # then K == Q (`_attention_mask`)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=0.0, scale=self.scaling,
                                           is_causal=causal, **extra)
        o = o.reshape(B, -1, Q, v.shape[-1]).transpose(1, 2).contiguous()  # (B, Q, H, D)
        return o.reshape(B, Q, -1).contiguous()


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (B, P): token rows padded on the left with `pad_id`, so that every
    row ends at the same column (as a prompt batch is read); the mask is 1 on real tokens."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def _unpack(packed: torch.Tensor, keep: torch.Tensor, B: int, Q: int) -> torch.Tensor:
    """(1, H, T, D) of the real positions -> (B, H, Q, D), zeros at padding."""
    H, T, D = packed.shape[1:]
    rows = packed[0].transpose(0, 1).reshape(T, H * D)  # (T, H * D)
    padded = rows.new_zeros(B * Q, H * D).index_copy(0, keep, rows)  # (B * Q, H * D)
    return padded.view(B, Q, H, D).transpose(1, 2)


def plain_forward(model: Any) -> PlainLlama | None:
    """The plain pass for `model` when it gives exactly the model's own logits, else None:
    decided once per model, on a small batch in each shape the trainer uses, and again if
    the model has moved to another dtype or device since."""
    try:
        placement = next(model.parameters())
        where = (placement.dtype, placement.device)
        known = _CHECKED.get(model)
    except (AttributeError, StopIteration, TypeError):  # not a module with parameters
        return None
    if known is not None and known[0] in (where, None):
        return known[1]
    if getattr(model, "computed_by_plain_pass", False):  # `native_llama`: its own pass
        if hooked(model):
            raise TypeError("hooks do not run in a model loaded without transformers: load it "
                            "with load_policy(..., native=False)")
        plain = PlainLlama(model)
    else:
        plain = PlainLlama(model) if eligible(model) else None
        if plain is not None and not reproduces(model, plain):
            plain = None
    _CHECKED[model] = (where, plain)
    return plain


def never_plain(model: Any) -> None:
    """Send `model` through transformers' own pass from now on (to compare the two)."""
    if getattr(model, "computed_by_plain_pass", False):
        raise TypeError("a model loaded without transformers has no other pass: load it with "
                        "load_policy(..., native=False) to compare it with transformers'")
    _CHECKED[model] = (None, None)


def eligible(model: Any) -> bool:
    """Whether `model` is a plain `LlamaForCausalLM` this pass is written for: sdpa
    attention, the default rotary positions, no biases, dropout, adapters or hooks."""
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    if type(model) is not LlamaForCausalLM:
        return False
    config = model.config
    rope = getattr(config, "rope_parameters", None) or {}
    if (
        getattr(config, "_attn_implementation", None) != "sdpa"
        or rope.get("rope_type", "default") != "default"
        or getattr(config, "hidden_act", None) != "silu"
        or getattr(config, "attention_bias", False)
        or getattr(config, "mlp_bias", False)
        or float(getattr(config, "attention_dropout", 0.0) or 0.0) != 0.0
        or getattr(model.model, "gradient_checkpointing", False)
    ):
        return False
    layers = model.model.layers
    if any(type(layer) is not LlamaDecoderLayer for layer in layers):
        return False
    for module in model.modules():  # an adapter would not run in the plain pass
        if getattr(module, "bias", None) is not None:
            return False
        if isinstance(module, torch.nn.Linear) and type(module) is not torch.nn.Linear:
            return False
    return not hooked(model)


def hooked(model: Any) -> bool:
    """Whether a forward hook would run in `model(...)`: the plain pass would skip it."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()) or bool(
        torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks
    )


@torch.no_grad()
def reproduces(model: Any, plain: PlainLlama) -> bool:
    """Whether the plain pass gives the model's logits bit for bit, on three prompts (one
    left-padded) and on two unpadded ones: each read whole, then a decoding step over
    its cache, then a continuation of three tokens over it (the loss pass's shape, one
    row's continuation padded). Sets `plain.packs`: whether reading only the real tokens
    of that continuation gives the same logits there too, to rounding."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 9), generator=generator).to(device)  # (3, 9)
    padded = torch.ones_like(ids)
    padded[0, :3] = 0
    width = 6  # the prompt; the rest continues it
    was_training = model.training
    model.eval()
    try:
        for rows, mask in ((ids, padded), (ids[1:], torch.ones_like(ids[1:]))):
            prompt, prompt_mask = rows[:, :width], mask[:, :width]
            positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
            theirs = model(input_ids=prompt, attention_mask=prompt_mask, position_ids=positions, use_cache=True)
            mine, my_cache = plain(prompt, prompt_mask, positions)
            if not torch.equal(theirs.logits, mine):
                return False
            their_cache = theirs.cache if "cache" in theirs else theirs.past_key_values
            for extra in (1, 3):
                step_positions = prompt_mask.sum(-1, keepdim=True) + torch.arange(extra, device=device)
                step, step_mask = rows[:, width : width + extra], mask[:, : width + extra].clone()
                if extra > 1:  # the first row's continuation one token shorter (padded)
                    step_mask[0, -1] = 0
                theirs = model(input_ids=step, attention_mask=step_mask, position_ids=step_positions,
                               use_cache=True, **{cache_argument(model): copy.deepcopy(their_cache)})
                mine, _ = plain(step, step_mask, step_positions, KVCache([list(kv) for kv in my_cache.layers]))
                if not torch.equal(theirs.logits, mine):
                    return False
                real = step_mask[:, width:].bool()  # the loss pass's packed read of real tokens
                packed, _ = plain(step, step_mask, step_positions, KVCache([list(kv) for kv in my_cache.layers]),
                                  real=real)
                # to rounding only: a product of a few rows can round otherwise than the
                # same rows in a longer one (MKL's small-matrix kernels, by thread count)
                plain.packs = plain.packs and torch.allclose(packed[real], theirs.logits[real],
                                                             rtol=1e-4, atol=1e-5)
    except Exception:  # a shape or an argument this pass does not know: the model's own pass
        return False
    finally:
        model.train(was_training)
    return True


def cache_argument(model) -> str:
    """The name `model.forward` takes a KV cache under (`past_key_values` before 5.24)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
