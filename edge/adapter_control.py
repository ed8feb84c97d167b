"""The `adapter` control message: switch the decoder's LoRA adapters while the runtime runs.

The message arrives on the inbound socket (nav's, under the same CURVE allow-list). Every check and
the load happen here, between cycles; the decoder applies the new set at the start of its next
cycle and rebuilds its cached system prefix once. A refusal keeps the adapters in use."""

from __future__ import annotations

from collections.abc import Callable

from edge.llm.adapters import AdapterRefused, AdapterSet
from edge.messages import AdapterSwitch


def offer_adapter_switch(adapters: AdapterSet, message: AdapterSwitch, event: Callable[[str, str], None]) -> bool:
    """Request the switch; report it (or its refusal) as a status event. True when accepted."""
    wanted = [(choice.name, choice.scale) for choice in message.adapters]
    current = "+".join(adapters.names) or "the base model"
    try:
        adapters.request(wanted)
    except AdapterRefused as exc:
        event("adapter_refused", f"kept {current}: {exc}"[:200])
        return False
    event("adapter_switch", f"from the next cycle: {'+'.join(n for n, _ in wanted) or 'the base model'}"[:200])
    return True
