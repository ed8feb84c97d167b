"""The data recipe: which scenes the default model is trained on, and which are held out.

Scenes are a pure function of (scenario, variant, seed) (sim.drive), so a recipe is all it takes to
re-create the training data anywhere; training.json stores it next to the sha256 of every rendered
scene. Held-out seeds are disjoint from training and calibration seeds by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

VARIANTS = ("day", "dusk", "night", "rain")


@dataclass(frozen=True)
class Recipe:
    name: str
    seeds: tuple[int, ...]
    variants: tuple[str, ...] = VARIANTS
    scenarios: tuple[str, ...] = ()  # empty: every built-in scenario
    overrides: dict = field(default_factory=dict)  # render_scene keyword overrides (duration_s, ...)

    def scenario_names(self) -> list[str]:
        from sim.scenario import builtin_names

        return list(self.scenarios) or builtin_names()

    def folders(self) -> list[tuple[str, str, int, str]]:
        """(scenario, variant, seed, relative folder) in the layout of `edge scene --scenario all`."""
        return [(name, variant, seed, f"{name}/{variant}/seed{seed}")
                for name in self.scenario_names() for variant in self.variants for seed in self.seeds]

    def to_json(self) -> dict:
        data = asdict(self)
        data["scenarios"] = self.scenario_names()
        data["equivalent_command"] = (
            f"edge scene --scenario all --seeds {','.join(map(str, self.seeds))} --variant all --out DIR"
            if not self.scenarios and not self.overrides and tuple(self.variants) == VARIANTS else None)
        return data


# Training: every built-in scenario in every look, two seeds each (112 scenes).
TRAIN = Recipe("train", seeds=(0, 1))
# Validation: what choices between trained models (a batch order, a recipe change) are made on, so that
# the held-out scenes stay unseen by every decision and their figure stays an unbiased estimate.
VALIDATION = Recipe("validation", seeds=(500,))
# Held out: seeds never used for training, calibration or choosing a model.
HELDOUT = Recipe("heldout", seeds=(1000,))
# INT8 calibration of the default bundle: a few training scenes, cut short.
CALIBRATION = Recipe("calibration", seeds=(0,), variants=("day", "night"),
                     scenarios=("red_light", "pedestrian_crossing", "cyclist_nudge"), overrides={"duration_s": 8.0})
RECIPES = {r.name: r for r in (TRAIN, VALIDATION, HELDOUT, CALIBRATION)}


def render_recipe(recipe: Recipe, out: Path | str, progress: Callable[[str], None] | None = None) -> Path:
    """Render every scene of the recipe under `out` (scenes already there are kept)."""
    from sim.scene import META_NAME, render_scene

    out = Path(out)
    folders = recipe.folders()
    for i, (name, variant, seed, rel) in enumerate(folders, 1):
        target = out / rel
        if (target / META_NAME).is_file():
            continue
        render_scene(name, seed, target, variant=variant, **recipe.overrides)
        if progress is not None:
            progress(f"rendered {i}/{len(folders)}: {rel}")
    return out
