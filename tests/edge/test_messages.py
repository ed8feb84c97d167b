import json

import jsonschema
import pytest
from pydantic import ValidationError

from edge.bench.bus import sample_advice
from edge.commands.schema import message_schemas, write_schemas
from edge.messages import (
    NAV_TEXT_MAX_CHARS,
    RATIONALE_MAX_CHARS,
    Advice,
    MetaAction,
    NavInstruction,
    Urgency,
)


def test_advice_round_trips_through_json():
    advice = sample_advice()
    again = type(advice).model_validate_json(advice.model_dump_json())
    assert again == advice


def test_free_text_is_bounded():
    with pytest.raises(ValidationError):
        Advice(action=MetaAction.STOP, urgency=Urgency.HIGH, rationale="x" * (RATIONALE_MAX_CHARS + 1))
    with pytest.raises(ValidationError):
        NavInstruction(nav_id="n1", maneuver="turn_left", distance_m=10, text="y" * (NAV_TEXT_MAX_CHARS + 1))


def test_a_repeated_hazard_reaches_the_planner_once():
    """The grammar admits "red_light, red_light" (the default model wrote it); the advice keeps the
    first of each, in order, whether built in Python or parsed from the model's text."""
    from edge.grammar import parse_advice

    text = ('{"action":"stop","urgency":"medium","lateral":"keep_lane",'
            '"hazards":["red_light","red_light","cyclist","red_light"],"rationale":"red light"}')
    assert [h.value for h in parse_advice(text).hazards] == ["red_light", "cyclist"]
    advice = Advice(action=MetaAction.STOP, urgency=Urgency.HIGH, hazards=["cyclist", "pedestrian", "cyclist"])
    assert [h.value for h in advice.hazards] == ["cyclist", "pedestrian"]


def test_vocabulary_is_closed_and_extra_fields_refused():
    with pytest.raises(ValidationError):
        Advice(action="teleport", urgency="high")
    with pytest.raises(ValidationError):
        NavInstruction.model_validate({"nav_id": "n1", "maneuver": "turn_left", "distance_m": 5, "prompt": "hi"})
    with pytest.raises(ValidationError):
        NavInstruction.model_validate({"nav_id": "bad id with spaces", "maneuver": "turn_left", "distance_m": 5})


def test_schema_files_validate_real_messages(tmp_path):
    paths = {p.name: p for p in write_schemas(tmp_path)}
    assert set(paths) == {"advice.schema.json", "nav.schema.json", "status.schema.json", "feedback.schema.json",
                          "adapter.schema.json"}
    adapter = json.loads(paths["adapter.schema.json"].read_text())
    jsonschema.validate({"schema_version": 1, "adapters": [{"name": "fog", "scale": 0.5}]}, adapter)
    jsonschema.validate({"schema_version": 1, "adapters": []}, adapter)  # back to the base model
    with pytest.raises(jsonschema.ValidationError):  # names are bundle adapter names, not paths
        jsonschema.validate({"schema_version": 1, "adapters": [{"name": "../etc/x.gguf"}]}, adapter)
    feedback = json.loads(paths["feedback.schema.json"].read_text())
    jsonschema.validate({"schema_version": 1, "seq": 0, "mono_ns": 1, "wall_ns": 1, "advice_seq": 7,
                         "reason": "braked for a shadow", "expected_action": "keep_speed"}, feedback)
    with pytest.raises(jsonschema.ValidationError):  # a feedback must say why
        jsonschema.validate({"schema_version": 1, "advice_seq": 7}, feedback)
    schema = json.loads(paths["advice.schema.json"].read_text())
    jsonschema.validate(json.loads(sample_advice().model_dump_json()), schema)
    bad = json.loads(sample_advice().model_dump_json())
    bad["advice"]["action"] = "teleport"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_shipped_schemas_are_current():
    """The schemas in the repo (for planners in other languages) match the models."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "edge" / "schemas"
    for name, schema in message_schemas().items():
        assert json.loads((shipped / name).read_text()) == schema, f"regenerate with `edge schema --out {shipped}`"
