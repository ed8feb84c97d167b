"""The prompt, piece by piece, in Qwen3-VL's chat format.

One source of truth for the runtime decoder, verification and training, so that the model is
trained on exactly the text it sees on the road. The system part is constant and ends right
before the first visual chunk: its KV cache is computed once and reused every cycle.

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n          <- constant prefix
    <0.2 seconds><|vision_start|>[visual rows]<|vision_end|>             <- per frame pair
    <1.2 seconds><|vision_start|>[visual rows]<|vision_end|>
    {navigation line}<|im_end|>\\n<|im_start|>assistant\\n                  <- per cycle
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.llm.video import timestamp_text

DEFAULT_SYSTEM_PROMPT = (
    "You are the scene-understanding module of a car. Watch the front camera clip and the "
    "navigation instruction, then answer with one JSON driving advice."
)
VIDEO_PAD = "<|video_pad|>"


@dataclass(frozen=True)
class PromptTemplate:
    system: str = DEFAULT_SYSTEM_PROMPT

    @classmethod
    def from_manifest(cls, prompt: dict[str, str]) -> PromptTemplate:
        return cls(system=prompt.get("system", DEFAULT_SYSTEM_PROMPT))

    def prefix(self) -> str:
        return f"<|im_start|>system\n{self.system}<|im_end|>\n<|im_start|>user\n"

    @staticmethod
    def pair_open(timestamp_s: float) -> str:
        return f"{timestamp_text(timestamp_s)}<|vision_start|>"

    @staticmethod
    def pair_close() -> str:
        return "<|vision_end|>"

    @staticmethod
    def suffix(nav_line: str) -> str:
        return f"{nav_line}<|im_end|>\n<|im_start|>assistant\n"

    def full_text(self, pair_timestamps_s: Sequence[float], tokens_per_pair: int, nav_line: str) -> str:
        """The whole prompt with `<|video_pad|>` placeholders, as transformers consumes it."""
        pairs = "".join(
            self.pair_open(t) + VIDEO_PAD * tokens_per_pair + self.pair_close() for t in pair_timestamps_s
        )
        return self.prefix() + pairs + self.suffix(nav_line)
