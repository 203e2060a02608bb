"""The experiment config: files, CLI overrides, validation, resolution from a preset."""

from pathlib import Path

import pytest
import yaml

from models.translator import config as C
from models.translator.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_documented_recipe():
    cfg = C.load()
    assert cfg.model.preset == "small" and cfg.data.direction == "de-en"
    assert cfg.data.vocab_size == 8000 and cfg.data.max_tokens == 4000
    assert cfg.train.betas == (0.9, 0.98) and cfg.train.eps == 1e-9 and cfg.train.label_smoothing == 0.1
    assert (cfg.train.lr_factor, cfg.train.warmup) == (0.4, 250)
    assert (cfg.decode.beam_size, cfg.decode.alpha) == (4, 0.6)


def test_peak_lr_of_the_small_recipe():
    cfg = C.load(overrides=["model.d_model=256"])
    # 0.4 * 256^-0.5 * 250^-0.5, the 1.6e-3 of the PyTorch twin
    assert C.peak_lr(cfg) == pytest.approx(1.5811e-3, rel=1e-4)
    lrs = [C.noam_lr(cfg, s) for s in range(1, 2000)]
    assert max(lrs) == pytest.approx(C.peak_lr(cfg)) and lrs.index(max(lrs)) + 1 == 250
    assert C.noam_lr(cfg, 125) == pytest.approx(C.peak_lr(cfg) / 2)  # linear warmup
    assert C.noam_lr(cfg, 1000) == pytest.approx(C.peak_lr(cfg) / 2)  # 1/sqrt decay: 4x the steps, half the lr


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_load_yaml_and_toml(tmp_path, suffix):
    path = tmp_path / f"exp{suffix}"
    if suffix == ".yaml":
        path.write_text("model:\n  preset: tiny\n  d_model: 64\ntrain:\n  betas: [0.8, 0.9]\n  clip_norm: 1\n")
    else:
        path.write_text('[model]\npreset = "tiny"\nd_model = 64\n[train]\nbetas = [0.8, 0.9]\nclip_norm = 1\n')
    cfg = C.load(path)
    assert cfg.model.preset == "tiny" and cfg.model.d_model == 64
    assert cfg.train.betas == (0.8, 0.9)
    assert cfg.train.clip_norm == 1.0 and isinstance(cfg.train.clip_norm, float)
    assert cfg.model.n_heads is None  # still "from the preset"


def test_overrides_win_over_the_file_and_parse_yaml_values(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  warmup: 100\n  max_minutes: 3\n")
    cfg = C.load(path, ["train.warmup=400", "train.max_minutes=null", "train.max_steps=7", "model.norm_first=true",
                        "data.data_dir=/some/where", "train.betas=[0.5, 0.6]", "device=cuda:1"])
    assert cfg.train.warmup == 400 and cfg.train.max_minutes is None and cfg.train.max_steps == 7
    assert cfg.model.norm_first is True and cfg.data.data_dir == "/some/where"
    assert cfg.train.betas == (0.5, 0.6) and cfg.device == "cuda:1"


def test_scientific_notation_without_a_dot_is_a_float(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as the string '1e-3'; a float setting takes it as the number."""
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  eps: 1e-9\n")
    assert C.load(path).train.eps == 1e-9
    assert C.load(overrides=["train.eps=2E-8", "model.dropout=.1"]).train.eps == 2e-8
    with pytest.raises(ConfigError, match=r"train\.eps must be float.*'1e-3x'"):
        C.load(overrides=["train.eps=1e-3x"])
    with pytest.raises(ConfigError, match=r"train\.warmup must be int.*'1e3'"):
        C.load(overrides=["train.warmup=1e3"])


def test_unknown_key_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'model.d_modle'.*model\.d_model"):
        C.load(overrides=["model.d_modle=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'optim'.*valid keys here: model, data, train, decode"):
        C.load(overrides=["optim.lr=3"])
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  warmpu: 10\n")
    with pytest.raises(ConfigError, match=rf"{path}.*unknown key 'train.warmpu'.*train\.warmup"):
        C.load(path)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("train.warmup=abc", r"train\.warmup must be int.*'abc'"),
        ("train.warmup=2.5", r"train\.warmup must be int.*2\.5"),
        ("train.warmup=0", r"train\.warmup = 0 is not allowed"),
        ("model.dropout=1.5", r"model\.dropout = 1\.5 is not allowed.*\[0, 1\)"),
        ("train.schedule=linear", r"train\.schedule = 'linear' is not allowed: use one of noam, cosine"),
        ("train.schedule=cosine", r"train\.schedule = 'cosine' is not allowed: needs a budget to end with"),
        ("model.attention_dropout=-0.1", r"model\.attention_dropout = -0\.1 is not allowed.*\[0, 1\)"),
        ("train.label_smoothing=-0.1", r"train\.label_smoothing"),
        ("model.norm_first=maybe", r"model\.norm_first must be bool"),
        ("train.betas=[0.9]", r"train\.betas must be a list of 2"),
        ("train.betas=[0.9, 1.0]", r"train\.betas"),
        ("data.direction=de-xx", r"data\.direction.*de-en"),
        ("device=tpu", r"device = 'tpu' is not allowed: use cpu, cuda or cuda:N"),
        ("device=cuda:x", r"device = 'cuda:x'"),
        ("decode.beam_size=0", r"decode\.beam_size"),
        ("train.accum_steps=0", r"train\.accum_steps"),
        ("train.clip_norm=-1", r"train\.clip_norm"),
        ("train.keep_last=0", r"train\.keep_last"),
        ("model.d_model=100", None),  # fine alone ...
        ("train.max_epochs=null", r"at least one of train\.max_steps, train\.max_epochs, train\.max_minutes"),
        ("train.warmup", r"not of the form section\.key=value"),
        ("data.max_len=300", None),
        ("data=3", r"data must be a mapping"),
        ("train.precision=bf16", r"train\.precision = 'bf16' is not allowed: use one of fp32, fp16"),
        ("train.precision=fp16", None),
        ("train.tf32=1", r"train\.tf32 must be bool"),
        ("train.tf32=true", None),
    ],
)
def test_bad_values_name_the_key(override, pattern):
    if pattern is None:
        C.load(overrides=[override])
    else:
        with pytest.raises(ConfigError, match=pattern):
            C.load(overrides=[override])


def test_cross_field_rules():
    with pytest.raises(ConfigError, match=r"model\.n_heads = 3 .*must divide model\.d_model = 64"):
        C.load(overrides=["model.d_model=64", "model.n_heads=3"])
    with pytest.raises(ConfigError, match=r"data\.max_len = 300 .*model\.max_positions = 256"):
        C.load(overrides=["model.max_positions=256", "data.max_len=300"])
    with pytest.raises(ConfigError, match=r"train\.max_steps = 10 is not allowed: must be at least train\.warmup"):
        C.load(overrides=["train.schedule=cosine", "train.max_minutes=5", "train.max_steps=10"])
    C.load(overrides=["train.schedule=cosine", "train.max_minutes=5", "train.max_epochs=null"])  # minutes alone
    # train.workers is for CPU processes in fp32; on a GPU or in fp16 the run uses one process (train.py), so the
    # shipped configs (workers: 2) load with --device cuda and with precision fp16
    assert C.load(overrides=["train.precision=fp16", "train.workers=2"]).train.workers == 2
    assert C.load(overrides=["device=cuda", "train.workers=2"]).train.workers == 2


def test_a_bad_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        C.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{bad}: invalid YAML"):
        C.load(bad)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[model\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        C.load(bad_toml)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match="unknown config format"):
        C.load(tmp_path / "x.json")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        C.load(listy)


def test_save_writes_yaml_that_loads_back_the_same(tmp_path):
    cfg = C.load(overrides=["model.d_model=64", "train.betas=[0.8, 0.9]", "train.max_minutes=2.5"])
    path = C.save(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["model"]["d_model"] == 64 and raw["train"]["betas"] == [0.8, 0.9]
    assert C.load(path) == cfg
    assert not list((tmp_path / "run").glob(".*"))  # no temporary file left


def test_resolve_fills_from_preset_then_model_defaults(monkeypatch):
    presets = {"mini": {"d_model": 32, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "d_ff": 64}}
    monkeypatch.setattr(C, "PRESETS", presets)
    monkeypatch.setattr(C, "_transformer_defaults",
                        lambda: {"d_model": 512, "dropout": 0.1, "norm_first": False, "max_positions": 1024,
                                 "tie_embeddings": True, "pad_id": 0})
    cfg = C.resolve(C.load(overrides=["model.preset=mini", "model.n_heads=4"]))
    assert cfg.model_hparams() == {"d_model": 32, "n_heads": 4, "n_encoder_layers": 1, "n_decoder_layers": 1,
                                   "d_ff": 64, "dropout": 0.1, "norm_first": False, "max_positions": 1024,
                                   "tie_embeddings": True}
    with pytest.raises(ConfigError, match=r"model\.preset must be one of mini, got 'huge'"):
        C.resolve(C.load(overrides=["model.preset=huge"]))


@pytest.mark.parametrize("name", ["tiny.yaml", "small.yaml", "base.yaml"])
def test_shipped_configs_load(name):
    cfg = C.load(CONFIGS / name)
    assert cfg.model.preset == name.split(".")[0]
    assert cfg.train.max_minutes is not None


def test_real_presets_resolve():
    pytest.importorskip("models.transformer")
    cfg = C.resolve(C.load(CONFIGS / "small.yaml"))
    hp = cfg.model_hparams()
    assert (hp["d_model"], hp["n_heads"], hp["n_encoder_layers"], hp["n_decoder_layers"], hp["d_ff"]) == (
        256, 4, 3, 3, 1024)
    assert C.peak_lr(cfg) == pytest.approx(1.58e-3, rel=1e-2)


def test_training_schedule_is_the_documented_one():
    """The optimiser that training builds follows noam_lr, step by step (lr of step n = noam_lr(n))."""
    import tinygrad_attn as ta
    from models.translator.step import make_optimizer

    class Tiny(ta.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = ta.nn.Parameter(ta.zeros(3))

    cfg = C.load(overrides=["model.d_model=256", "train.warmup=20"])
    optimizer, scheduler = make_optimizer(cfg, Tiny())
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98) and optimizer.param_groups[0]["eps"] == 1e-9
    for step in range(1, 60):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(C.noam_lr(cfg, step), rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_cosine_schedule_keeps_the_warmup_and_peak_and_ends_at_zero():
    """schedule=cosine: the same linear warmup to the same peak as Noam, then a half cosine to 0 at max_steps."""
    import tinygrad_attn as ta
    from models.translator.step import make_optimizer

    cfg = C.load(overrides=["model.d_model=256", "train.warmup=20", "train.schedule=cosine", "train.max_steps=100"])
    optimizer, scheduler = make_optimizer(cfg, ta.nn.Linear(2, 2))
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:20] == pytest.approx([C.noam_lr(cfg, n) for n in range(1, 21)], rel=1e-12)  # warmup, peak at 20
    assert lrs[59] == pytest.approx(C.peak_lr(cfg) / 2, rel=1e-12)  # halfway down the cosine (step 60)
    assert all(a > b for a, b in zip(lrs[19:], lrs[20:])) and lrs[-1] < 1e-3 * C.peak_lr(cfg)
