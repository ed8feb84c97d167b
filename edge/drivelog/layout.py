"""The Foxglove layout shipped as docs/foxglove-layout.json, built with the foxglove SDK's layout
types: the camera beside the advice, the navigation message under it, stage latencies and the
verdict and action over time below. `python -m edge.drivelog.layout docs/foxglove-layout.json`
writes it (a test holds the shipped file equal to this)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import foxglove.layouts as fl

STAGE_SERIES = ("encode", "prefill", "decode", "total")


def build_layout() -> fl.Layout:
    camera = fl.ImagePanel(title="camera (sampled frames)",
                           config=fl.ImageConfig(image_mode=fl.ImageModeConfig(image_topic="/camera")))
    advice = fl.RawMessagesPanel(title="advice", config=fl.RawMessagesConfig(topic_path="/advice.advice",
                                                                               expansion="all"))
    nav = fl.RawMessagesPanel(title="navigation", config=fl.RawMessagesConfig(topic_path="/nav", expansion="all"))
    verdict = fl.StateTransitionsPanel(title="verdict and action", config=fl.StateTransitionsConfig(paths=[
        fl.StateTransitionsSeries(value="/advice.verdict", label="verdict"),
        fl.StateTransitionsSeries(value="/advice.advice.action", label="action"),
    ]))
    stages = fl.PlotPanel(title="stage latency (ms)", config=fl.PlotConfig(paths=[
        fl.PlotSeries(value=f"/advice.stages.{stage}_ms", label=stage) for stage in STAGE_SERIES
    ]))
    status = fl.RawMessagesPanel(title="status", config=fl.RawMessagesConfig(topic_path="/status"))
    right = fl.SplitContainer(direction="column", items=[
        fl.SplitItem(proportion=2, content=advice), fl.SplitItem(proportion=1, content=nav)])
    top = fl.SplitContainer(direction="row", items=[
        fl.SplitItem(proportion=2, content=camera), fl.SplitItem(proportion=1, content=right)])
    bottom = fl.SplitContainer(direction="row", items=[
        fl.SplitItem(content=verdict), fl.SplitItem(content=stages), fl.SplitItem(content=status)])
    return fl.Layout(content=fl.SplitContainer(direction="column", items=[
        fl.SplitItem(proportion=2, content=top), fl.SplitItem(proportion=1, content=bottom)]))


def layout_json() -> str:
    return json.dumps(json.loads(build_layout().to_json()), indent=2) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(layout_json())
