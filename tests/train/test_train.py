"""edge train: the dataset is the runtime's exact prompt and the grammar's answer; training is
deterministic and learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge.grammar import parse_advice
from edge.messages import Hazard, MetaAction, Urgency
from edge.prompt import PromptTemplate
from sim.labels import LabelWindow, load_labels
from train.dataset import load_dataset
from train.targets import END_OF_TURN, short_rationale, target_action, target_advice, target_text

SCENE_SECONDS = 5.0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two short rendered scenes: one with a navigation timeline (turn_right) and one without nav
    updates in the window (red_light)."""
    from sim.scene import render_scene

    root = tmp_path_factory.mktemp("train_scenes")
    render_scene("red_light", 7, root / "red_light", duration_s=SCENE_SECONDS)
    render_scene("turn_right", 7, root / "turn_right", duration_s=SCENE_SECONDS, variant="night")
    return root


@pytest.fixture(scope="module")
def dataset(scenes, tmp_path_factory):
    return load_dataset(scenes, tmp_path_factory.mktemp("frame_cache"))


def test_every_target_parses_as_the_label_advice(scenes):
    windows = [w for path in sorted(scenes.rglob("labels.jsonl")) for w in load_labels(path)]
    assert windows
    for window in windows:
        text = target_text(window)
        assert text.endswith(END_OF_TURN)
        advice = parse_advice(text.removesuffix(END_OF_TURN))
        assert advice == target_advice(window)
        assert advice.action == target_action(window)
        assert advice.action in window.actions  # always an answer the label accepts
        assert advice.urgency == window.urgency
        assert advice.lateral != advice.action
        assert advice.lateral in (window.lateral, window.primary, None)
        assert advice.hazards == list(window.hazards)
        assert 0 < len(advice.rationale) <= 20


def test_target_action_is_one_canonical_accepted_answer():
    def window(*actions, lateral=None):
        return LabelWindow(0, 500, tuple(MetaAction(a) for a in actions), (), Urgency.LOW,
                           MetaAction(lateral) if lateral else None, "", "x")

    # look-alike situations share one answer
    assert target_action(window("decelerate", "stop")) is MetaAction.STOP  # yellow light, braking lead car
    assert target_action(window("yield", "decelerate", "stop")) is MetaAction.STOP
    assert target_action(window("accelerate", "keep_speed")) is MetaAction.KEEP_SPEED  # speeding up
    cones = window("keep_lane", "keep_speed", "decelerate", lateral="keep_speed")
    assert target_action(cones) is MetaAction.KEEP_SPEED
    assert target_advice(cones).lateral is MetaAction.KEEP_LANE
    # manoeuvres stay
    assert target_action(window("pull_over", "stop", "decelerate")) is MetaAction.PULL_OVER
    assert target_action(window("turn_left", "decelerate")) is MetaAction.TURN_LEFT
    assert target_action(window("nudge_right", "decelerate")) is MetaAction.NUDGE_RIGHT


def test_short_rationale_is_deterministic_and_names_the_hazard():
    red = LabelWindow(0, 500, (MetaAction.STOP, MetaAction.DECELERATE), (Hazard.RED_LIGHT, Hazard.LOW_VISIBILITY),
                      Urgency.HIGH, MetaAction.KEEP_LANE, "waiting at the red light", "traffic_light")
    assert short_rationale(red) == "red light"
    green = LabelWindow(0, 500, (MetaAction.ACCELERATE,), (), Urgency.LOW, None, "light turned green", "traffic_light")
    assert short_rationale(green) == "green light"
    cruise = LabelWindow(0, 500, (MetaAction.KEEP_SPEED,), (), Urgency.LOW, None, "road clear", "cruise")
    assert short_rationale(cruise) == "road clear"


def test_examples_follow_the_runtime_sampling(dataset):
    ex = next(e for e in dataset.examples if e.newest_ms == 2000.0)
    # 4 samples 500 ms apart at 10 fps: frames 5, 10, 15, 20; pair timestamps 0.25 and 1.25 s.
    assert ex.frames == (5, 10, 15, 20)
    nav = ex.prompt[ex.prompt.rindex("<|vision_end|>") + len("<|vision_end|>"):ex.prompt.rindex("<|im_end|>\n<|im_start|>assistant")]
    expected = PromptTemplate().full_text([0.25, 1.25], dataset.sampling.profile.tokens_per_pair, nav)
    assert ex.prompt == expected
    assert "<0.2 seconds>" in ex.prompt and "<1.2 seconds>" in ex.prompt
    pixels = dataset.pixel_values(ex)
    profile = dataset.sampling.profile
    assert pixels.shape == (profile.patches_per_clip, profile.patch_dim)


def test_balancing_by_scenario_and_action_evens_out_each_group(dataset):
    from train.batches import balance_group, sample_weights

    def group_mass(p, balance_by):
        mass: dict[tuple[str, ...], float] = {}
        for ex, w in zip(dataset.examples, p, strict=True):
            group = balance_group(dataset, ex, balance_by)
            mass[group] = mass.get(group, 0.0) + w
        return mass

    groups = group_mass(sample_weights(dataset, 1.0, "scenario_action"), "scenario_action")
    # Both scenes contribute groups (red_light: stop and keep_speed windows; turn_right: cruise + turn).
    assert {scenario for scenario, _ in groups} == {"red_light", "turn_right"} and len(groups) >= 3
    assert max(groups.values()) == pytest.approx(min(groups.values()))  # every group weighs the same
    uniform = sample_weights(dataset, 0.0)
    assert uniform == pytest.approx(1.0 / len(dataset.examples))
    by_action = group_mass(sample_weights(dataset, 1.0, "action"), "action")
    assert max(by_action.values()) == pytest.approx(min(by_action.values()))
    # action_balance=1 divides each (scenario, action) group by the scenarios sharing its action:
    # every action then weighs the same in total (keep_speed, in both scenes, no longer counts twice).
    even = group_mass(sample_weights(dataset, 1.0, "scenario_action", action_balance=1.0), "action")
    assert max(even.values()) == pytest.approx(min(even.values()))
    assert even != pytest.approx(group_mass(sample_weights(dataset, 1.0, "scenario_action"), "action"))
    with pytest.raises(ValueError, match="balance_by"):
        sample_weights(dataset, 1.0, "scene")


def test_decoder_seed_sets_phase_two_batch_order(dataset):
    from train.batches import batch_plan
    from train.config import TrainConfig

    plan = {seed: batch_plan(dataset, TrainConfig(seed=seed, steps=6)) for seed in (0, 1)}
    assert plan[0] != plan[1]
    assert batch_plan(dataset, TrainConfig(seed=0, decoder_seed=1, steps=6)) == plan[1]
    assert batch_plan(dataset, TrainConfig(seed=1, decoder_seed=0, steps=6)) == plan[0]


def test_validation_and_heldout_scenes_share_no_seed_with_training():
    """Models are chosen on the validation seeds and judged on the held-out ones: neither may have been
    trained on, and judging must not reuse what choosing saw."""
    from train.recipe import CALIBRATION, HELDOUT, RECIPES, TRAIN, VALIDATION

    assert set(RECIPES) == {"train", "validation", "heldout", "calibration"}
    trained = set(TRAIN.seeds) | set(CALIBRATION.seeds)
    assert not trained & set(VALIDATION.seeds)
    assert not trained & set(HELDOUT.seeds)
    assert not set(VALIDATION.seeds) & set(HELDOUT.seeds)


def test_prompt_matches_a_lockstep_replay_of_the_runtime(dataset, tiny_checkpoint, tiny_bundle, tmp_path):
    """The real loop (lock-step replay) picks the same frames and builds the same nav line for the
    same newest frame, and llama.cpp's tokenisation of the decoder's prompt pieces equals the
    training tokenisation (transformers) of the whole text."""
    from transformers import AutoTokenizer

    from edge.llm import LlamaModel
    from edge.manifest import load_bundle
    from sim.replay import ReplayOptions, replay_scene
    from train.inputs import IGNORE, encode_example

    scene = next(s for s in dataset.scenes if s.scenario == "turn_right")
    index = dataset.scenes.index(scene)
    replay_scene(tiny_bundle, scene.video, scene.nav, None, ReplayOptions(annotate=False, max_cycles=3),
                 out_dir=tmp_path)
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == 3
    by_newest = {ex.frames[-1]: ex for ex in dataset.examples if ex.scene == index}
    for record in audit:
        ex = by_newest[record["frame_ids"][-1]]
        assert tuple(record["frame_ids"]) == ex.frames
        assert f"<|vision_end|>{record['nav_line']}<|im_end|>\n<|im_start|>assistant\n" in ex.prompt
    assert any(r["nav_line"].startswith("Navigation: turn right") for r in audit)

    ex = by_newest[audit[-1]["frame_ids"][-1]]
    manifest, bundle_dir = load_bundle(tiny_bundle)
    model = LlamaModel(bundle_dir / manifest.decoder[0].path)
    try:  # the pieces exactly as edge.decoder.AdviceDecoder feeds them
        template = PromptTemplate()
        pieces = model.tokenize(template.prefix(), parse_special=True)
        for stamp in (0.25, 1.25):
            pieces += model.tokenize(template.pair_open(stamp), parse_special=True)
            pieces += model.tokenize(template.pair_close(), parse_special=True)
        pieces += model.tokenize(audit[-1]["nav_line"], parse_special=False)
        pieces += model.tokenize(template.suffix(""), parse_special=True)
        answer = model.tokenize(ex.target, parse_special=True)
    finally:
        model.close()
    encoded = encode_example(AutoTokenizer.from_pretrained(tiny_checkpoint), ex, action_weight=1.0)
    video_id = manifest.special_tokens.video_pad
    prompt_ids = [t for t, label in zip(encoded.ids, encoded.labels, strict=True) if label == IGNORE and t != video_id]
    assert prompt_ids == pieces
    assert [t for t in encoded.labels if t != IGNORE] == answer
    assert encoded.ids.count(video_id) == dataset.sampling.profile.tokens_per_clip


def _short_run(dataset, tmp_path, seed: int, log=None, **overrides):
    from export.tiny import make_tiny_checkpoint
    from train.config import TrainConfig
    from train.trainer import load_start_model, train_model

    init = tmp_path / f"init{seed}"
    if not (init / "config.json").is_file():
        make_tiny_checkpoint(init, seed=0)
    tokenizer, model = load_start_model(init, "eager")
    config = TrainConfig(seed=seed, steps=3, batch_size=1, lr=2e-3, warmup_steps=1, balance=0.0, vision_steps=2,
                         vision_batch_size=1, **overrides)
    result = train_model(model, tokenizer, dataset, config, progress=False, log=log)
    return model, result


def test_short_training_lowers_the_loss_and_is_reproducible(dataset, tmp_path):
    import dataclasses

    import torch

    # One fixed batch (a single clip) in every step, so the loss must fall on it.
    small = dataclasses.replace(dataset, examples=[dataset.examples[-3]], _frames={})
    lines: list[str] = []
    model_a, run_a = _short_run(small, tmp_path, seed=5, log=lines.append)
    assert run_a.steps_done == 3
    assert run_a.losses[-1] < run_a.losses[0]
    # The plain progress lines (`edge train --no-progress`): one per step here (a tenth of 2 or 3 steps).
    assert [line.split(":")[0] for line in lines] == ["vision step 1/2", "vision step 2/2", "decoder step 1/3",
                                                      "decoder step 2/3", "decoder step 3/3"]
    assert lines[-1].startswith(f"decoder step 3/3: loss {run_a.losses[-1]:.3f} (")
    # Without the log (and so without its hook) the run is the same: logging does not touch training.
    model_b, run_b = _short_run(small, tmp_path, seed=5)
    assert len(run_a.vision_losses) == 2
    assert run_b.losses == run_a.losses
    assert run_b.vision_losses == run_a.vision_losses
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_train_mergers_lets_phase_two_shape_the_visual_rows_but_not_the_tower(dataset, tmp_path):
    """With `train_mergers` phase 2 trains the merger and DeepStack mergers (per-row MLPs) and
    leaves the tower's blocks, patch and position embeddings as phase 1 left them."""
    import dataclasses

    import torch

    small = dataclasses.replace(dataset, examples=dataset.examples[-4:], _frames={})
    frozen, _ = _short_run(small, tmp_path, seed=5, train_mergers=False)
    shaped, _ = _short_run(small, tmp_path, seed=5, train_mergers=True)
    before, after = frozen.model.visual.state_dict(), shaped.model.visual.state_dict()
    mergers = [name for name in before if name.startswith(("merger.", "deepstack_merger_list."))]
    assert mergers and len(mergers) < len(before)
    # Phase 1 is the same in both runs (same seed), so any difference is phase 2's.
    assert all(torch.equal(before[name], after[name]) for name in before if name not in mergers)
    changed = [name for name in mergers if not torch.equal(before[name], after[name])]
    assert {name.split(".")[0] for name in changed} == {"merger", "deepstack_merger_list"}
    # The flag is restored: the returned model's tower can be trained again.
    assert all(p.requires_grad for p in shaped.model.visual.parameters())


def test_checkpoint_is_bf16_in_the_tiny_layout_with_provenance(tmp_path):
    from export.checkpoint import CheckpointReader
    from export.tiny import make_tiny_checkpoint
    from train.trainer import load_start_model, save_checkpoint

    _, model = load_start_model(make_tiny_checkpoint(tmp_path / "init", seed=0), "eager")
    out = save_checkpoint(model, tmp_path / "ckpt", 0, {"seed": 1, "command": ["edge", "train"]})
    reader = CheckpointReader(out)
    assert json.loads((out / "training.json").read_text()) == {"command": ["edge", "train"], "seed": 1}
    assert reader.config["dtype"] == "bfloat16"
    assert not (out / "tiny_checkpoint.json").exists()  # the weights are not the random init any more
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:
        names = list(f.keys())
        assert {str(f.get_tensor(n).dtype) for n in names[:5]} == {"torch.bfloat16"}
    assert sorted(names) == sorted(model.state_dict())


def test_train_command_line_maps_onto_train_config():
    """Every tuning option reaches TrainConfig under its own name; options left out keep its defaults."""
    from edge_cli.main import build_parser
    from train.cli import _CONFIG_OPTIONS, config_from_args
    from train.config import TrainConfig

    parser = build_parser()
    defaults = config_from_args(parser.parse_args(["train", "--scenes", "s", "--out", "o"]))
    assert defaults == TrainConfig()
    args = parser.parse_args(["train", "--scenes", "s", "--out", "o", "--seed", "3", "--decoder-seed", "4",
                              "--steps", "280",
                              "--vision-steps", "90", "--batch-size", "4", "--vision-batch-size", "12", "--lr", "0.01",
                              "--balance", "0.5", "--balance-by", "action", "--action-balance", "0.25",
                              "--aux-balance", "0", "--experts-implementation", "grouped_mm", "--threads", "1",
                              "--minutes", "9", "--no-train-mergers", "--unfreeze-vision-blocks", "2",
                              "--vision-lr-scale", "0.2"])
    config = config_from_args(args)
    assert config.decoder_seed == 4
    assert (config.seed, config.steps, config.vision_steps, config.batch_size, config.vision_batch_size, config.lr,
            config.balance, config.balance_by, config.action_balance, config.aux_balance, config.threads,
            config.max_minutes, config.experts_implementation) == (3, 280, 90, 4, 12, 0.01, 0.5, "action", 0.25, 0.0,
                                                                   1, 9.0, "grouped_mm")
    assert config.train_mergers is False
    assert (config.unfreeze_vision_blocks, config.vision_lr_scale) == (2, 0.2)
    assert config_from_args(parser.parse_args(["train", "--scenes", "s", "--out", "o", "--train-mergers"])).train_mergers
    assert set(_CONFIG_OPTIONS) <= set(TrainConfig.__dataclass_fields__)


def test_train_summary_line_copes_with_a_phase_of_no_steps():
    from train.cli import _loss_summary

    assert _loss_summary([], "decoder") == "no decoder steps"  # `edge train --steps 0`: phase 1 only
    assert _loss_summary([2.0, 1.0, 0.5], "vision") == "vision loss 2.000 -> 1.167 (mean of the last 3)"


def test_cost_options_give_the_same_loss_and_gradients(dataset, tmp_path):
    """`shared_prefix` (the common prompt prefix run once per batch, its KV cache shared) and
    `patch_embed_as_matmul` change what a step costs, not what it computes: same loss, same
    gradients as transformers' plain forward, to float rounding. So does running the MoE experts
    as one grouped matmul (`experts_implementation="grouped_mm"`)."""
    import torch

    from export.tiny import make_tiny_checkpoint
    from train.decoder_phase import weighted_answer_loss
    from train.inputs import IGNORE, collate, encode_example
    from train.speedups import MatmulPatchEmbed, prefix_shared_forward, shared_prompt_prefix
    from train.trainer import load_start_model

    init = make_tiny_checkpoint(tmp_path / "init", seed=0)
    tokenizer, model = load_start_model(init, "eager")
    model.train()
    video_id = model.config.video_token_id
    encoded = [encode_example(tokenizer, ex, 8.0) for ex in dataset.examples]
    prefix = shared_prompt_prefix(encoded, video_id)
    # The system prompt at least; never a video token, and the answers' labels all lie beyond it.
    assert 20 < prefix < encoded[0].ids.index(video_id) + 1
    assert all(label == IGNORE for enc in encoded for label in enc.labels[: prefix + 1])
    picks = [0, len(dataset.examples) // 2, len(dataset.examples) - 1]  # both scenes, different nav lines
    batch = [dataset.examples[i] for i in picks]
    inputs = collate(dataset, batch, [encoded[i] for i in picks], video_id, tokenizer.pad_token_id)
    labels, weights = inputs.pop("labels"), inputs.pop("weights")

    def loss_and_grads(shared: bool, matmul: bool):
        model.zero_grad(set_to_none=True)
        with MatmulPatchEmbed(model.model.visual) if matmul else torch.enable_grad():
            if shared:
                logits = prefix_shared_forward(model, inputs, prefix)
                loss = weighted_answer_loss(logits, labels[:, prefix:], weights[:, prefix:])
            else:
                loss = weighted_answer_loss(model(**inputs).logits, labels, weights)
            loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(loss.detach()), grads

    plain_loss, plain = loss_and_grads(False, False)
    assert "model.visual.patch_embed.proj.weight" in plain
    for shared, matmul in [(True, False), (False, True), (True, True)]:
        loss, grads = loss_and_grads(shared, matmul)
        assert loss == pytest.approx(plain_loss, rel=1e-5), (shared, matmul)
        assert grads.keys() == plain.keys()
        for name, grad in grads.items():
            scale = plain[name].abs().max().clamp_min(1e-12)
            assert (grad - plain[name]).abs().max() / scale < 1e-3, (shared, matmul, name)
    assert "forward" not in vars(model.model.visual.patch_embed)  # the class's own forward is back

    _, model = load_start_model(init, "grouped_mm")  # loss_and_grads reads `model` when called
    model.train()
    assert model.config.text_config._experts_implementation == "grouped_mm"
    for shared, matmul in [(False, False), (True, True)]:
        loss, grads = loss_and_grads(shared, matmul)
        assert loss == pytest.approx(plain_loss, rel=1e-5), ("grouped_mm", shared, matmul)
        assert grads.keys() == plain.keys()
        for name, grad in grads.items():
            scale = plain[name].abs().max().clamp_min(1e-12)
            assert (grad - plain[name]).abs().max() / scale < 1e-3, ("grouped_mm", shared, matmul, name)


def test_aux_positive_weights_favour_rare_labels(dataset):
    """The auxiliary head's positive weights grow as a label gets rarer under the sampling
    distribution, are 1 for a label half the clips carry, and are off at aux_balance 0."""
    import numpy as np

    from train.batches import sample_weights
    from train.vision_phase import aux_pos_weight, aux_targets

    p = sample_weights(dataset, 1.0)
    assert aux_pos_weight(dataset, p, 0.0) is None
    weights = aux_pos_weight(dataset, p, 0.5).numpy()
    freq = p @ aux_targets(dataset.examples).numpy()
    seen = (freq > 0) & (freq < 1)
    assert seen.sum() >= 3
    order = np.argsort(freq[seen])
    assert np.all(np.diff(weights[seen][order]) <= 1e-6)  # rarer -> heavier
    np.testing.assert_allclose(weights[seen], np.minimum(((1 - freq[seen]) / freq[seen]) ** 0.5, 50.0), rtol=1e-5)
    assert np.all(weights[~seen] > 0)


def test_probe_scores_the_decoder_and_a_linear_probe_on_the_tower(dataset):
    """`edge probe`'s two verdicts: the shipped model's greedy action reads these unseen scenes (red
    light seed 7 is not a training seed), and the linear probe on the tower's features, fitted on
    the very clips it scores, separates their answers."""
    import torch

    from train.probe import probe
    from train.trainer import load_start_model

    torch.set_num_threads(2)
    tokenizer, model = load_start_model(Path(__file__).resolve().parents[2] / "models" / "default", "eager")
    report = probe(model, tokenizer, dataset, dataset, per_scenario=10_000, train_stride=1)
    assert report["clips"] == report["fit_clips"] == len(dataset.examples)
    for verdict in ("decoder", "tower_linear_probe"):
        scores = report[verdict]
        assert set(scores["per_scenario"]) == {"red_light", "turn_right"}
        wrong = round((1 - scores["accuracy"]) * report["clips"])
        assert sum(scores["misses"].values()) == wrong
    assert report["tower_linear_probe"]["accuracy"] >= 0.95
    assert report["decoder"]["accuracy"] >= 0.7, report["decoder"]


def test_probe_refuses_a_folder_that_is_not_a_checkpoint(scenes, tmp_path, capsys):
    from edge_cli.main import main

    out = tmp_path / "probe.json"
    assert main(["probe", "--checkpoint", str(tmp_path), "--train-scenes", str(scenes), "--scenes", str(scenes),
                 "--out", str(out)]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    assert not out.exists()


def test_warm_start_trains_the_decoder_and_mergers_and_keeps_the_tower_blocks(dataset, tmp_path):
    """`--init-checkpoint` (a fine-tune): no phase 1, the tower's blocks stay as the start checkpoint
    has them, and training.json records what it started from."""
    import dataclasses

    import torch

    from export.tiny import make_tiny_checkpoint
    from train.config import TrainConfig
    from train.provenance import warm_start_record
    from train.trainer import load_start_model, train_model

    start = make_tiny_checkpoint(tmp_path / "start", seed=1)
    tokenizer, model = load_start_model(start, "eager")
    before = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
    small = dataclasses.replace(dataset, examples=dataset.examples[-4:], _frames={})
    config = TrainConfig(seed=0, steps=2, batch_size=1, lr=2e-3, warmup_steps=1, balance=0.0, vision_steps=0,
                         init_checkpoint=str(start))
    result = train_model(model, tokenizer, small, config, progress=False)
    assert result.steps_done == 2 and result.vision_losses == []
    after = model.model.visual.state_dict()
    mergers = {k for k in after if k.startswith(("merger.", "deepstack_merger_list."))}
    assert all(torch.equal(before[k], after[k]) for k in after if k not in mergers)
    assert any(not torch.equal(before[k], after[k]) for k in mergers)
    record = warm_start_record(start)
    assert record["checkpoint"] == str(start) and len(record["weights_sha256"]) == 64
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        warm_start_record(tmp_path)


def test_unfreezing_the_last_vision_blocks_trains_them_and_keeps_the_earlier_ones(dataset, tmp_path):
    """`--unfreeze-vision-blocks N` on a fine-tune: the tower's last N blocks move, the earlier blocks and
    the patch embedding stay as the start checkpoint has them."""
    import dataclasses

    import torch

    from export.tiny import make_tiny_checkpoint
    from train.config import TrainConfig
    from train.trainer import load_start_model, train_model

    start = make_tiny_checkpoint(tmp_path / "start", seed=1)
    tokenizer, model = load_start_model(start, "eager")
    before = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
    depth = len(model.model.visual.blocks)
    small = dataclasses.replace(dataset, examples=dataset.examples[-4:], _frames={})
    config = TrainConfig(seed=0, steps=2, batch_size=1, lr=2e-3, warmup_steps=1, balance=0.0, vision_steps=0,
                         init_checkpoint=str(start), unfreeze_vision_blocks=1, vision_lr_scale=0.5)
    train_model(model, tokenizer, small, config, progress=False)
    after = model.model.visual.state_dict()
    last = f"blocks.{depth - 1}."
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(last))
    kept = [k for k in after if k.startswith(("blocks.", "patch_embed.", "pos_embed")) and not k.startswith(last)]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert all(p.requires_grad for p in model.model.visual.parameters())
