"""Cost-only options of a training step: the same function (float rounding aside; the tests check
it), computed more cheaply."""

from __future__ import annotations

from train.inputs import Encoded


def shared_prompt_prefix(encoded: list[Encoded], video_token_id: int) -> int:
    """How many leading prompt tokens every example shares, stopping before the first video token
    (the visual rows differ per clip from there on)."""
    first = encoded[0].ids
    length = first.index(video_token_id) if video_token_id in first else len(first)
    for enc in encoded[1:]:
        k = 0
        while k < length and k < len(enc.ids) and enc.ids[k] == first[k]:
            k += 1
        length = k
    return length


def prefix_shared_forward(model, inputs: dict, prefix_len: int):
    """transformers' forward of a batch whose rows all start with the same `prefix_len` tokens,
    with that prefix computed once: a batch-1 pass fills a KV cache that every row then attends to
    (its gradient sums over the rows, as the per-row forward's would). Positions come from the
    full sequences' M-RoPE index, so the rest sees exactly the positions it would have had.
    Returns the logits of positions prefix_len.. (the prefix's own logits carry no loss)."""
    from transformers import DynamicCache

    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["mm_token_type_ids"]
    positions, _ = model.model.get_rope_index(ids, mm_token_type_ids=types, video_grid_thw=inputs["video_grid_thw"],
                                              attention_mask=mask)
    cache = DynamicCache(config=model.config)
    model.model(input_ids=ids[:1, :prefix_len], attention_mask=mask[:1, :prefix_len],
                position_ids=positions[:, :1, :prefix_len], cache=cache, use_cache=True)
    rows = ids.shape[0]
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
        layer.values = layer.values.expand(rows, *layer.values.shape[1:])
    out = model(input_ids=ids[:, prefix_len:], attention_mask=mask, position_ids=positions[:, :, prefix_len:],
                cache=cache, use_cache=False, pixel_values_videos=inputs["pixel_values_videos"],
                video_grid_thw=inputs["video_grid_thw"], mm_token_type_ids=types[:, prefix_len:])
    return out.logits


class MatmulPatchEmbed:
    """While active, the vision tower's patch embedding (Conv3d, kernel == stride) runs as the
    matmul it is: same weights, same function (float rounding aside), a far cheaper backward."""

    def __init__(self, visual):
        self.embed = visual.patch_embed

    def __enter__(self) -> MatmulPatchEmbed:
        import torch

        proj = self.embed.proj

        def forward(hidden_states):
            weight = proj.weight.view(proj.out_channels, -1)
            return torch.nn.functional.linear(hidden_states.to(weight.dtype).view(-1, weight.shape[1]), weight,
                                              proj.bias)

        self.embed.forward = forward  # an instance attribute shadows the class's forward
        return self

    def __exit__(self, *exc) -> None:
        del self.embed.forward
