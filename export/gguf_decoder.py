"""The text decoder of a Qwen3-VL-MoE checkpoint -> GGUF (arch `qwen3vlmoe`) -> quantised GGUFs.

What llama.cpp needs, and how we give it:
- hyperparameters of the MoE decoder, plus `n_deepstack_layers` (llama.cpp then takes input rows
  n_embd * (1 + n_deepstack) wide) and the M-RoPE `rope.dimension_sections` [t, h, w, 0];
- the full byte-level BPE tokenizer (model "gpt2", pre-tokenizer "qwen2", tokens, token types,
  merges, special ids, chat template), so llama.cpp tokenizes text exactly as transformers does;
- experts stacked per layer as `ffn_{gate,up}_exps` (E, I, H) and `ffn_down_exps` (E, H, I) in numpy
  order. transformers 5 saves `gate_up_proj` (E, 2I, H) and `down_proj` (E, H, I); original Qwen
  checkpoints save (E, H, 2I) and (E, I, H); older text-only ones one tensor per expert. All three
  are recognised from the shapes (2I != H for real models, and for the tiny test checkpoint).

Streaming: tensor infos are declared from the safetensors headers, then each tensor is read,
converted and written before the next is read, so peak memory is about one source tensor plus its
converted copy, never the model. Quantisation is llama.cpp's (export/quantize.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.manifest import DecoderArtifact
from export.checkpoint import CheckpointError, CheckpointReader
from export.quantize import QUANT_FTYPES, quantize_gguf

log = logging.getLogger(__name__)

ARCH = "qwen3vlmoe"
TOKENIZER_MODEL = "gpt2"  # byte-level BPE
TOKENIZER_PRE = "qwen2"  # Qwen2/3's pre-tokenizer regex, as llama.cpp names it
# Where the text decoder lives in the different naming generations of Qwen-VL checkpoints.
TEXT_PREFIXES = ("model.language_model.", "language_model.model.", "model.")
LM_HEAD_NAMES = ("lm_head.weight", "language_model.lm_head.weight", "model.language_model.lm_head.weight")
# Unquantised bases we write ourselves; every other quant is made from one by llama.cpp.
BASE_QUANTS = ("f32", "f16")


class DecoderExportError(CheckpointError):
    """The text decoder cannot be converted; the message says which tensor/field and why."""


# ---------------------------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecoderHparams:
    n_layer: int
    n_embd: int
    n_ff: int
    n_ff_exp: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_expert: int
    n_expert_used: int
    n_vocab: int
    n_ctx_train: int
    rope_theta: float
    rms_eps: float
    rope_sections: tuple[int, int, int, int]
    n_deepstack: int
    tie_embeddings: bool

    @property
    def n_embd_inp(self) -> int:
        return self.n_embd * (1 + self.n_deepstack)

    @classmethod
    def from_config(cls, config: dict) -> DecoderHparams:
        text = config.get("text_config")
        vision = config.get("vision_config") or {}
        if not isinstance(text, dict):
            raise DecoderExportError("config.json has no text_config; not a Qwen3-VL checkpoint")

        def need(key: str):
            if key not in text:
                raise DecoderExportError(f"config.json text_config.{key} is missing")
            return text[key]

        rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
        sections = list(rope.get("mrope_section") or [])
        head_dim = int(text.get("head_dim") or need("hidden_size") // need("num_attention_heads"))
        if len(sections) != 3 or sum(sections) != head_dim // 2:
            raise DecoderExportError(
                f"text_config rope mrope_section {sections} must hold 3 sections summing to head_dim/2 = {head_dim // 2}"
            )
        if rope.get("mrope_interleaved") is False:
            raise DecoderExportError("text_config says mrope_interleaved=false; llama.cpp's qwen3vl uses interleaved M-RoPE")
        # llama.cpp's qwen3vlmoe graph makes every layer a MoE layer with normalised top-k weights.
        if text.get("mlp_only_layers"):
            raise DecoderExportError(f"text_config.mlp_only_layers={text['mlp_only_layers']}: dense layers are not supported by llama.cpp's qwen3vlmoe")
        if int(text.get("decoder_sparse_step", 1)) != 1:
            raise DecoderExportError("text_config.decoder_sparse_step != 1: llama.cpp's qwen3vlmoe expects MoE in every layer")
        if text.get("norm_topk_prob") is False:
            raise DecoderExportError("text_config.norm_topk_prob=false: llama.cpp's qwen3vlmoe always renormalises the top-k weights")
        theta = rope.get("rope_theta", text.get("rope_theta"))
        if theta is None:
            raise DecoderExportError("text_config has no rope_theta (rope_parameters.rope_theta)")
        n_deepstack = len(vision.get("deepstack_visual_indexes") or [])
        n_layer = int(need("num_hidden_layers"))
        if n_deepstack >= n_layer:
            raise DecoderExportError(f"{n_deepstack} DeepStack levels need more than {n_layer} decoder layers (llama.cpp asserts)")
        return cls(
            n_layer=n_layer,
            n_embd=int(need("hidden_size")),
            n_ff=int(text.get("intermediate_size") or need("moe_intermediate_size")),
            n_ff_exp=int(need("moe_intermediate_size")),
            n_head=int(need("num_attention_heads")),
            n_head_kv=int(text.get("num_key_value_heads") or need("num_attention_heads")),
            head_dim=head_dim,
            n_expert=int(text.get("num_experts") or need("num_local_experts")),  # renamed in transformers 5
            n_expert_used=int(need("num_experts_per_tok")),
            n_vocab=int(need("vocab_size")),
            n_ctx_train=int(text.get("max_position_embeddings", 32768)),
            rope_theta=float(theta),
            rms_eps=float(text.get("rms_norm_eps", 1e-6)),
            rope_sections=(int(sections[0]), int(sections[1]), int(sections[2]), 0),
            n_deepstack=n_deepstack,
            tie_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
        )


# ---------------------------------------------------------------------------------------------
# tensor plan
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputTensor:
    name: str  # GGUF name, e.g. blk.0.ffn_gate_exps.weight
    shape: tuple[int, ...]  # numpy order (GGUF stores it reversed)
    dtype: type  # np.float16 or np.float32

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class ConversionStep:
    """Source tensors read once, producing `outputs` in order (e.g. gate and up from one gate_up)."""

    sources: list[str]
    outputs: list[OutputTensor]
    produce: Callable[[], Iterator[np.ndarray]]


# The text tensors of one decoder layer besides the experts. Their GGUF names come from the gguf
# package's TensorNameMap (llama.cpp's own table, the one convert_hf_to_gguf.py uses).
_LAYER_TENSORS = (
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "self_attn.q_norm.weight",
    "self_attn.k_norm.weight",
    "post_attention_layernorm.weight",
    "mlp.gate.weight",
)
# Kept in F32 at every quant (llama.cpp does the same): norms and the MoE router, which are tiny
# and whose precision decides expert selection.
_F32_SUFFIXES = ("norm.weight", "ffn_gate_inp.weight")
_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)$")
_EXPERT_RE = re.compile(r"mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


class GgufNames:
    """HF text tensor name (after the text prefix) -> GGUF name, by llama.cpp's TensorNameMap."""

    def __init__(self, n_layer: int):
        import gguf

        self._map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3VLMOE, n_layer)

    def __call__(self, hf_name: str) -> str:
        key = hf_name if hf_name == "lm_head.weight" else "model." + hf_name
        name = self._map.get_name(key, try_suffixes=(".weight",))
        if name is None:
            raise DecoderExportError(f"llama.cpp's tensor map has no GGUF name for {hf_name!r} (arch {ARCH})")
        return name


def _torch():
    import torch

    return torch


def _to_numpy(tensor, dtype: type, name: str) -> np.ndarray:
    torch = _torch()
    target = torch.float16 if dtype is np.float16 else torch.float32
    out = tensor.to(target).contiguous().numpy()
    # bf16 has float32's range; values beyond 65504 become inf in f16. Test the exponent bits
    # (all ones = inf/nan): an integer pass, ~10x faster than isfinite on half floats.
    if dtype is np.float16 and ((out.view(np.uint16) & 0x7C00) == 0x7C00).any():
        raise DecoderExportError(f"{name}: values overflow float16 (or are NaN); export with base f32 instead")
    return out


def _text_prefix(reader: CheckpointReader) -> str:
    for prefix in TEXT_PREFIXES:
        if reader.has(prefix + "embed_tokens.weight"):
            return prefix
    raise DecoderExportError(
        f"{reader.path}: no text decoder found (looked for {', '.join(p + 'embed_tokens.weight' for p in TEXT_PREFIXES)})"
    )


def _expert_layout(reader: CheckpointReader, gate_up: str, down: str, hp: DecoderHparams) -> str:
    """'hf5' for (E, 2I, H)/(E, H, I), 'qwen' for (E, H, 2I)/(E, I, H); from the shapes."""
    E, H, I = hp.n_expert, hp.n_embd, hp.n_ff_exp  # noqa: E741 - the paper's names
    gu, dn = tuple(reader.shape(gate_up)), tuple(reader.shape(down))
    hf5 = gu == (E, 2 * I, H) and dn == (E, H, I)
    qwen = gu == (E, H, 2 * I) and dn == (E, I, H)
    if hf5 and not qwen:
        return "hf5"
    if qwen and not hf5:
        return "qwen"
    raise DecoderExportError(
        f"cannot tell the expert layout of {gate_up} {gu} / {down} {dn}: expected (E, 2I, H)/(E, H, I) "
        f"(transformers 5) or (E, H, 2I)/(E, I, H) (original Qwen) with E={E}, H={H}, I={I}"
    )


def expected_text_shapes(hp: DecoderHparams) -> dict[str, tuple[int, ...]]:
    """Shape of each non-expert text tensor (HF suffix, `{i}` for the layer) the hyperparameters imply."""
    H, q, kv = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    return {
        "embed_tokens.weight": (hp.n_vocab, H),
        "norm.weight": (H,),
        "lm_head.weight": (hp.n_vocab, H),
        "input_layernorm.weight": (H,),
        "self_attn.q_proj.weight": (q, H),
        "self_attn.k_proj.weight": (kv, H),
        "self_attn.v_proj.weight": (kv, H),
        "self_attn.o_proj.weight": (H, q),
        "self_attn.q_norm.weight": (hp.head_dim,),
        "self_attn.k_norm.weight": (hp.head_dim,),
        "post_attention_layernorm.weight": (H,),
        "mlp.gate.weight": (hp.n_expert, H),
    }


def _check_shape(reader: CheckpointReader, name: str, want: tuple[int, ...]) -> None:
    got = tuple(reader.shape(name))
    if got != tuple(want):
        raise DecoderExportError(f"{reader.path}: tensor {name!r} has shape {got}, the config implies {tuple(want)}")


def plan_decoder_tensors(reader: CheckpointReader, hp: DecoderHparams, base: str) -> list[ConversionStep]:
    """Every GGUF tensor of the decoder, in file order, with how to make it from the checkpoint."""
    if base not in BASE_QUANTS:
        raise ValueError(f"base must be one of {BASE_QUANTS}, not {base!r}")
    wide = np.float32 if base == "f32" else np.float16
    prefix = _text_prefix(reader)
    names = set(reader.tensor_names())
    steps: list[ConversionStep] = []
    used: set[str] = set()

    expected = expected_text_shapes(hp)

    def simple(src: str, dst: str) -> None:
        shape = tuple(reader.shape(src))
        suffix = _LAYER_RE.search(src)
        _check_shape(reader, src, expected["lm_head.weight" if src in LM_HEAD_NAMES
                                           else suffix.group(2) if suffix else src[len(prefix):]])
        dtype = np.float32 if (len(shape) == 1 or dst.endswith(_F32_SUFFIXES)) else wide

        def produce() -> Iterator[np.ndarray]:
            yield _to_numpy(reader.get(src, dtype="stored"), dtype, src)

        steps.append(ConversionStep([src], [OutputTensor(dst, shape, dtype)], produce))
        used.add(src)

    gguf_name = GgufNames(hp.n_layer)
    simple(prefix + "embed_tokens.weight", gguf_name("embed_tokens.weight"))

    E, H, I = hp.n_expert, hp.n_embd, hp.n_ff_exp  # noqa: E741
    for il in range(hp.n_layer):
        lp = f"{prefix}layers.{il}."
        for hf_suffix in _LAYER_TENSORS:
            if lp + hf_suffix not in names:
                raise DecoderExportError(f"{reader.path}: tensor {lp + hf_suffix} is missing")
            simple(lp + hf_suffix, gguf_name(f"layers.{il}.{hf_suffix}"))
        gate_up, down = lp + "mlp.experts.gate_up_proj", lp + "mlp.experts.down_proj"
        gate_name, up_name, down_name = (gguf_name(f"layers.{il}.mlp.experts.{k}_proj.weight")
                                         for k in ("gate", "up", "down"))
        if gate_up in names and down in names:
            layout = _expert_layout(reader, gate_up, down, hp)
            steps.append(_fused_gate_up_step(reader, gate_up, layout, gate_name, up_name, (E, I, H), wide))
            steps.append(_fused_down_step(reader, down, layout, down_name, (E, H, I), wide))
            used.update((gate_up, down))
        else:
            per_expert = {k: [f"{lp}mlp.experts.{e}.{k}.weight" for e in range(E)] for k in ("gate_proj", "up_proj", "down_proj")}
            missing = [n for group in per_expert.values() for n in group if n not in names]
            if missing:
                raise DecoderExportError(
                    f"{reader.path}: layer {il} has neither fused experts ({gate_up}) nor all per-expert tensors "
                    f"(missing e.g. {missing[0]})"
                )
            for kind, out_name, shape in (("gate_proj", gate_name, (E, I, H)), ("up_proj", up_name, (E, I, H)),
                                          ("down_proj", down_name, (E, H, I))):
                for src in per_expert[kind]:
                    _check_shape(reader, src, shape[1:])
                steps.append(_stacked_step(reader, per_expert[kind], out_name, shape, wide))
                used.update(per_expert[kind])

    simple(prefix + "norm.weight", gguf_name("norm.weight"))
    head = next((n for n in LM_HEAD_NAMES if n in names), None)
    if head is not None:
        simple(head, gguf_name("lm_head.weight"))
    elif not hp.tie_embeddings:
        raise DecoderExportError(f"{reader.path}: lm_head.weight is missing and tie_word_embeddings is false")
    # llama.cpp reuses token_embd as the output when output.weight is absent (tied embeddings).

    leftovers = sorted(n for n in names - used if n.startswith(prefix) and not n.startswith("model.visual."))
    leftovers = [n for n in leftovers if not n.startswith(("model.visual.", "visual."))]
    if leftovers:
        raise DecoderExportError(
            f"{reader.path}: {len(leftovers)} text tensors have no GGUF mapping (e.g. {leftovers[0]}); "
            f"this checkpoint is not the Qwen3-VL-MoE layout llama.cpp supports"
        )
    return steps


def _fused_gate_up_step(reader, src, layout, gate_name, up_name, shape, dtype) -> ConversionStep:
    I = shape[1]  # noqa: E741

    def produce() -> Iterator[np.ndarray]:
        stored = reader.get(src, dtype="stored")
        if layout == "hf5":
            halves = (stored[:, :I, :], stored[:, I:, :])  # gate rows first
        else:  # (E, H, 2I): gate columns first; transpose each half to (E, I, H)
            halves = (stored[:, :, :I].transpose(1, 2), stored[:, :, I:].transpose(1, 2))
        for half in halves:
            yield _to_numpy(half, dtype, src)

    return ConversionStep([src], [OutputTensor(gate_name, shape, dtype), OutputTensor(up_name, shape, dtype)], produce)


def _fused_down_step(reader, src, layout, name, shape, dtype) -> ConversionStep:
    def produce() -> Iterator[np.ndarray]:
        stored = reader.get(src, dtype="stored")
        yield _to_numpy(stored if layout == "hf5" else stored.transpose(1, 2), dtype, src)

    return ConversionStep([src], [OutputTensor(name, shape, dtype)], produce)


def _stacked_step(reader, sources, name, shape, dtype) -> ConversionStep:
    def produce() -> Iterator[np.ndarray]:
        out = np.empty(shape, dtype=dtype)
        for e, src in enumerate(sources):  # one expert in memory at a time (shapes checked in the plan)
            out[e] = _to_numpy(reader.get(src, dtype="stored"), dtype, src)
        yield out

    return ConversionStep(list(sources), [OutputTensor(name, shape, dtype)], produce)


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------
def _tokenizer_tables(checkpoint_dir: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Token strings and types for ids 0..n_vocab-1, as llama.cpp's gpt2 vocab wants them."""
    import gguf

    path = checkpoint_dir / "tokenizer.json"
    if not path.is_file():
        raise DecoderExportError(f"{checkpoint_dir}: tokenizer.json is missing (needed for the GGUF vocabulary)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise DecoderExportError(f"{path}: expected a byte-level BPE tokenizer, found model type {model.get('type')!r}")
    by_id: dict[int, tuple[str, int]] = {i: (tok, gguf.TokenType.NORMAL) for tok, i in model["vocab"].items()}
    for added in data.get("added_tokens") or []:
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], kind)
    if max(by_id) >= n_vocab:
        raise DecoderExportError(f"{path}: token id {max(by_id)} >= vocab_size {n_vocab} of the model")
    tokens, types = [], []
    for i in range(n_vocab):
        # Embedding rows beyond the tokenizer (vocab padded to a multiple of 64) get unused placeholders.
        tok, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(tok)
        types.append(int(kind))
    return tokens, types


def _add_tokenizer(writer, checkpoint_dir: Path, n_vocab: int) -> dict[str, int]:
    import gguf

    tokens, types = _tokenizer_tables(checkpoint_dir, n_vocab)
    writer.add_tokenizer_model(TOKENIZER_MODEL)
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(checkpoint_dir, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise DecoderExportError(f"{checkpoint_dir}: tokenizer.json has no BPE merges")
    index = {t: i for i, t in enumerate(tokens)}
    # Qwen: <|im_end|> ends a turn (EOS), <|endoftext|> pads; no BOS is ever added.
    for kind, text in (("eos", "<|im_end|>"), ("pad", "<|endoftext|>"), ("bos", "<|endoftext|>")):
        if kind not in special.special_token_ids and text in index:
            special.special_token_ids[kind] = index[text]
    # Neither is added to a prompt; written as llama.cpp's converter writes them (tokenizer.ggml.add_*).
    special.add_special_token.setdefault("bos", False)
    special.add_special_token.setdefault("eos", False)
    if special.chat_template is None:
        raise DecoderExportError(f"{checkpoint_dir}: no chat template (tokenizer_config.json, chat_template.json/.jinja)")
    special.add_to_gguf(writer, quiet=True)
    return dict(special.special_token_ids)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def write_decoder_gguf(reader: CheckpointReader, out_path: Path, base: str = "f16", progress: bool = True) -> Path:
    """Write the unquantised (f32 or f16) decoder GGUF, streaming one tensor at a time."""
    import gguf
    from tqdm import tqdm

    hp = DecoderHparams.from_config(reader.config)
    steps = plan_decoder_tensors(reader, hp, base)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")

    writer = gguf.GGUFWriter(tmp, ARCH)
    writer.add_name(reader.name)
    writer.add_file_type(QUANT_FTYPES[base])
    writer.add_context_length(hp.n_ctx_train)
    writer.add_embedding_length(hp.n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layer)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_rope_dimension_sections(list(hp.rope_sections))
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_expert_count(hp.n_expert)
    writer.add_expert_used_count(hp.n_expert_used)
    writer.add_expert_feed_forward_length(hp.n_ff_exp)
    writer.add_num_deepstack_layers(hp.n_deepstack)
    _add_tokenizer(writer, reader.path, hp.n_vocab)

    outputs = [o for step in steps for o in step.outputs]
    for o in outputs:
        writer.add_tensor_info(o.name, o.shape, np.dtype(o.dtype), o.nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = sum(o.nbytes for o in outputs)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"GGUF {base}", disable=not progress) as bar:
        for step in steps:
            produced = step.produce()
            for want in step.outputs:
                array = next(produced)
                if array.shape != want.shape or array.dtype != np.dtype(want.dtype):
                    raise DecoderExportError(
                        f"{want.name}: produced {array.shape} {array.dtype}, planned {want.shape} {np.dtype(want.dtype)}"
                    )
                writer.write_tensor_data(array)
                bar.update(array.nbytes)
                del array  # keep at most one converted tensor alive
            produced.close()
    writer.close()
    tmp.replace(out_path)
    return out_path


def decoder_filename(quant: str) -> str:
    return f"decoder-{quant}.gguf"


def write_decoder_artifacts(reader: CheckpointReader, out_dir: Path, quants: list[str] | tuple[str, ...],
                            progress: bool = True, subdir: str = "decoder") -> list[DecoderArtifact]:
    """Write one GGUF per requested quant into `out_dir/subdir` and describe them for the manifest.

    The unquantised base is f32 when "f32" is requested (best source for quantisation and the
    exact reference check), else f16; it is removed afterwards unless it was requested itself.
    Artifact paths are relative to `out_dir` (the bundle folder).
    """
    quants = list(dict.fromkeys(q.lower() for q in quants))
    unknown = [q for q in quants if q not in QUANT_FTYPES]
    if not quants or unknown:
        raise DecoderExportError(f"decoder quants {unknown or quants} not supported; choose from {', '.join(QUANT_FTYPES)}")
    hp = DecoderHparams.from_config(reader.config)
    out_dir = Path(out_dir)
    target_dir = out_dir / subdir if subdir else out_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    base = "f32" if "f32" in quants else "f16"
    base_path = target_dir / decoder_filename(base)
    write_decoder_gguf(reader, base_path, base=base, progress=progress)
    paths: dict[str, Path] = {base: base_path}
    for quant in quants:
        if quant not in paths:
            if progress:
                log.info("quantising decoder to %s", quant)
            paths[quant] = quantize_gguf(base_path, target_dir / decoder_filename(quant), quant)
    if base not in quants:
        base_path.unlink()
    return [
        DecoderArtifact(
            path=paths[q].relative_to(out_dir).as_posix(), quant=q, n_embd=hp.n_embd, n_embd_inp=hp.n_embd_inp,
            n_deepstack=hp.n_deepstack, n_vocab=hp.n_vocab, n_layer=hp.n_layer,
        )
        for q in quants
    ]
