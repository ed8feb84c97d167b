"""The GBNF grammar that admits only advice JSON, and the parsing of what it produced.

The grammar is generated from the closed vocabulary in ``edge.messages`` so the two can never
drift apart. Keys come in a fixed order with the decision first: once ``action`` and
``urgency`` are out, a generation cut by its deadline still carries a usable decision
(``partial_decision``), which is what lets the loop send ``late`` advice instead of nothing.
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from edge.messages import MAX_HAZARDS, RATIONALE_MAX_CHARS, Advice, Hazard, MetaAction, Urgency

# Characters the rationale may use: enough for a short clause, nothing that can close the JSON
# string or start an escape.
RATIONALE_CHARS = r"[a-zA-Z0-9 ,.;:'()/%+-]"


def _alternatives(values: list[str]) -> str:
    return " | ".join(f'"\\"{v}\\""' for v in values)


def advice_grammar(with_rationale: bool = True, rationale_max_chars: int = RATIONALE_MAX_CHARS) -> str:
    """GBNF for one advice object. Without rationale (a degraded cycle) the text is empty, which
    saves most of the generated tokens."""
    actions = _alternatives([a.value for a in MetaAction])
    urgencies = _alternatives([u.value for u in Urgency])
    hazards = _alternatives([h.value for h in Hazard])
    rationale = (
        f'"\\"" {RATIONALE_CHARS}{{0,{rationale_max_chars}}} "\\""' if with_rationale else '"\\"\\""'
    )
    hazard_list = f'"[" ( hazard ( "," hazard ){{0,{MAX_HAZARDS - 1}}} )? "]"'
    return "\n".join(
        [
            'root ::= "{" "\\"action\\":" action ",\\"urgency\\":" urgency ",\\"lateral\\":" lateral '
            '",\\"hazards\\":" hazards ",\\"rationale\\":" rationale "}"',
            f"action ::= {actions}",
            f"urgency ::= {urgencies}",
            'lateral ::= action | "null"',
            f"hazard ::= {hazards}",
            f"hazards ::= {hazard_list}",
            f"rationale ::= {rationale}",
        ]
    ) + "\n"


class AdviceParseError(ValueError):
    pass


def parse_advice(text: str) -> Advice:
    """Validate a complete generation. The grammar should make this infallible; it is checked
    anyway because the planner must never receive something the contract does not allow."""
    try:
        return Advice.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise AdviceParseError(f"model output is not valid advice: {exc}; text={text[:200]!r}") from None


_DECISION = re.compile(r'^\{"action":"([a-z_]+)","urgency":"([a-z]+)"')


def partial_decision(text: str) -> Advice | None:
    """The decision from a generation cut short, if its action and urgency are complete."""
    match = _DECISION.match(text)
    if match is None:
        return None
    try:
        return Advice(action=MetaAction(match.group(1)), urgency=Urgency(match.group(2)))
    except ValueError:
        return None


def format_advice_json(advice: Advice) -> str:
    """The exact text the grammar admits for this advice (training targets use it)."""
    body = {
        "action": advice.action.value,
        "urgency": advice.urgency.value,
        "lateral": advice.lateral.value if advice.lateral is not None else None,
        "hazards": [h.value for h in advice.hazards],
        "rationale": advice.rationale,
    }
    return json.dumps(body, separators=(",", ":"))
