"""llama.cpp decoder core for Qwen3-VL (llama-cpp-python low-level API; no torch).

- model.LlamaModel: load a GGUF, widths (n_embd, n_embd_inp), tokenizer, end-of-generation ids
- context.LlamaContext: KV cache; eval text / visual rows at M-RoPE positions; logits; mark/rewind
- sampling.GreedySampler + sampling.generate: greedy (optionally GBNF-constrained) generation
- positions: the M-RoPE position arithmetic; video: Qwen3-VL's frame-pair timestamps
"""

from edge.llm.openmp import set_wait_policy

set_wait_policy()  # before llama_cpp loads libgomp: see edge/llm/openmp.py

from edge.llm.context import ContextSettings, KvMark, LlamaContext
from edge.llm.errors import ContextFullError, DeadlineExceeded, EmbeddingWidthError, LlamaError
from edge.llm.model import LlamaModel
from edge.llm.sampling import Generation, GreedySampler, generate

__all__ = [
    "ContextFullError",
    "ContextSettings",
    "DeadlineExceeded",
    "EmbeddingWidthError",
    "Generation",
    "GreedySampler",
    "KvMark",
    "LlamaContext",
    "LlamaError",
    "LlamaModel",
    "generate",
]
