"""The command line end to end: train a micro model, then translate, evaluate, average; and its errors."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.translator import checkpoints as ckpt
from models.translator.__main__ import main
from models.translator.evaluate import score
from models.translator.search import greedy_decode, translate_ids
from models.translator.vocab import Vocab

ROOT = Path(__file__).resolve().parents[2]
MICRO = ["model.d_model=32", "model.n_heads=2", "model.n_encoder_layers=1", "model.n_decoder_layers=1",
         "model.d_ff=64", "data.vocab_size=300", "data.train_subset=200", "data.max_tokens=400",
         "train.log_every=2", "train.eval_every=3", "train.checkpoint_every=3", "train.eval_subset=8",
         "train.final_subset=6", "decode.max_len_a=0", "decode.max_len_b=6", "decode.beam_size=2"]
SENTENCES = ["Ein Hund läuft im Schnee.", "Zwei Männer spielen Fußball."]


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def run_dir(multi30k_dir, tmp_path_factory):
    """One micro training run shared by the tests of this module: 7 steps, checkpoints at 3 and 6 and 7."""
    run = tmp_path_factory.mktemp("cli") / "run"
    status = main(["train", "--preset", "tiny", "--run-dir", str(run), "--data-dir", str(multi30k_dir),
                   "--max-steps", "7", "--no-progress", *sets(*MICRO)])
    assert status == 0
    return run


def test_train_writes_a_complete_run_dir(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "spm.model", "metrics.jsonl", "train.log", "curves.png", "results.json",
            "best.safetensors", "ckpt_step3.safetensors", "ckpt_step6.safetensors", "ckpt_step7.safetensors"} <= names
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6, 7]
    assert all(r["tgt_tokens_per_s"] > 0 and r["lr"] > 0 for r in records if r["kind"] == "train")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["step"] == 7 and set(results["splits"]) == {"val", "test_2016_flickr"}
    assert results["tgt_tokens_per_s"] > 0 and results["peak_rss_mb"] > 10
    for split in results["splits"].values():
        assert set(split) == {"greedy", "beam2"}
        for s in split.values():
            assert s["n_sentences"] == 6 and 0 <= s["bleu"] <= 100 and s["bleu_signature"].startswith("nrefs:1|")
    saved = (run_dir / "config.yaml").read_text()
    assert "d_model: 32" in saved and "n_heads: 2" in saved and "dropout: 0.1" in saved  # resolved from preset
    log = (run_dir / "train.log").read_text()
    assert "BLEU =" in log and "nrefs:1|case:mixed" in log and "test_2016_flickr" in log
    assert len(Vocab.load(run_dir)) == 300


def test_translate_from_arguments_file_and_stdin(run_dir, tmp_path, capsys, monkeypatch):
    assert main(["translate", "-c", str(run_dir), "--beam-size", "1", *SENTENCES]) == 0
    from_args = capsys.readouterr().out.splitlines()
    assert len(from_args) == 2

    src = tmp_path / "in.de"
    src.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    assert main(["translate", "-c", str(run_dir / "ckpt_step6.safetensors"), "--beam-size", "1", "--input",
                 str(src), "--output", str(tmp_path / "out.en")]) == 0
    assert len((tmp_path / "out.en").read_text().splitlines()) == 2

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(SENTENCES) + "\n"))
    assert main(["translate", "-c", str(run_dir), "--beam-size", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == from_args  # same model (best), same greedy output


def test_empty_lines_in_give_empty_lines_out(run_dir, tmp_path, capsys, monkeypatch):
    """From a file, from stdin and from arguments: an empty (or blank) line is not translated into a made-up
    sentence, and the other lines keep their places."""
    assert main(["translate", "-c", str(run_dir), "--beam-size", "1", "", *SENTENCES]) == 0
    from_args = capsys.readouterr().out.split("\n")
    assert from_args[0] == "" and all(from_args[1:3]) and from_args[3:] == [""]
    first, second = from_args[1:3]

    src = tmp_path / "in.de"
    src.write_text(f"\n{SENTENCES[0]}\n   \n\n{SENTENCES[1]}\n\n", encoding="utf-8")
    assert main(["translate", "-c", str(run_dir), "--beam-size", "2", "-i", str(src)]) == 0
    beam = capsys.readouterr().out.split("\n")
    assert len(beam) == 7 and beam[0] == beam[2] == beam[3] == beam[5] == beam[6] == "" and beam[1] and beam[4]

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes()), encoding="utf-8"))
    assert main(["translate", "-c", str(run_dir), "--beam-size", "1"]) == 0
    assert capsys.readouterr().out.split("\n") == ["", first, "", "", second, "", ""]

    # Without this rule the model would make something up: the empty source has a translation of its own.
    model, vocab, config, _ = ckpt.load_model(run_dir)
    assert translate_ids(model, [[]], vocab.bos_id, vocab.eos_id) == [[]]
    assert greedy_decode(model, np.array([[vocab.eos_id]]), vocab.bos_id, vocab.eos_id) != [[]]


def test_evaluate_scores_an_empty_source_as_an_empty_translation(run_dir):
    model, vocab, config, _ = ckpt.load_model(run_dir)
    scores = score(model, vocab, [("", ""), (SENTENCES[0], "A dog runs in the snow."), (" ", "")], config)
    assert [e["hypothesis"] for e in scores["examples"]][::2] == ["", ""] and scores["examples"][1]["hypothesis"]


LATIN1 = "Ein Bär läuft.".encode("latin-1")  # b"\xe4" is not UTF-8: a lone byte where UTF-8 needs two


def test_input_that_is_not_utf8_is_named_by_line_and_byte(run_dir, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.de"
    src.write_bytes(SENTENCES[0].encode() + b"\n\n" + LATIN1 + b"\n")
    err = error_of(["translate", "-c", str(run_dir), "-i", str(src)], capsys)
    column = LATIN1.index(b"\xe4")  # 0-based: "Ein B" comes first
    offset = len(SENTENCES[0].encode()) + 2 + column
    assert f"{src}: line 3, byte {column + 1} (byte offset {offset}): 0xe4 is not UTF-8" in err
    assert "--errors replace" in err and "Traceback" not in err and err.count("\n") == 1

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(LATIN1), encoding="utf-8"))
    err = error_of(["translate", "-c", str(run_dir)], capsys)
    assert "<stdin>: line 1, byte 6 (byte offset 5): 0xe4 is not UTF-8" in err

    err = error_of(["translate", "-c", str(run_dir), "Hallo", LATIN1.decode("utf-8", "surrogateescape")], capsys)
    assert "argument 2: line 1, byte 6 (byte offset 5): 0xe4 is not UTF-8" in err  # as a shell passes such bytes


@pytest.mark.parametrize("errors, fixed", [("replace", "Ein B\ufffdr l\ufffduft."), ("ignore", "Ein Br luft.")])
def test_errors_replace_or_ignore_bytes_that_are_not_utf8(run_dir, tmp_path, capsys, errors, fixed):
    src = tmp_path / "in.de"
    src.write_bytes(LATIN1 + b"\r\n" + SENTENCES[1].encode() + b"\r\n")
    assert main(["translate", "-c", str(run_dir), "--beam-size", "1", "--errors", errors, "-i", str(src)]) == 0
    out = capsys.readouterr().out
    assert main(["translate", "-c", str(run_dir), "--beam-size", "1", fixed, SENTENCES[1]]) == 0
    assert out == capsys.readouterr().out


def test_translate_draws_attention(run_dir, tmp_path, capsys):
    out = tmp_path / "att.png"
    assert main(["translate", "-c", str(run_dir), "--attention", str(out), SENTENCES[0]]) == 0
    err = capsys.readouterr().err
    encoder = tmp_path / "att-encoder.png"
    for path in (out, encoder):
        assert path.read_bytes()[:4] == b"\x89PNG" and str(path) in err


def test_attention_is_drawn_for_the_first_sentence_that_is_not_empty(run_dir, tmp_path, capsys, monkeypatch):
    import models.translator.__main__ as cli

    drawn = []
    monkeypatch.setattr(cli, "draw_attention", lambda model, vocab, sentence, *rest: drawn.append(sentence) or [])
    assert main(["translate", "-c", str(run_dir), "--attention", str(tmp_path / "a.png"), " ", *SENTENCES]) == 0
    assert drawn == [SENTENCES[0]]
    assert "needs a sentence" in error_of(["translate", "-c", str(run_dir), "--attention", "a.png", ""], capsys)


def test_evaluate_prints_bleu_with_signature(run_dir, tmp_path, capsys, multi30k_dir):
    assert main(["evaluate", "-c", str(run_dir), "--split", "val", "--limit", "5", "--beam-size", "1",
                 "--data-dir", str(multi30k_dir), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "val de-en, 5 sentences, greedy" in out
    assert "BLEU = " in out and "nrefs:1|case:mixed|eff:no|tok:13a" in out and "chrF = " in out
    assert json.loads((tmp_path / "s.json").read_text())["n_sentences"] == 5
    # The same scores from two decoding processes (batches of 2 sentences: three batches to share).
    assert main(["evaluate", "-c", str(run_dir), "--split", "val", "--limit", "5", "--beam-size", "1",
                 "--data-dir", str(multi30k_dir), "--json", str(tmp_path / "w.json"), "--workers", "2",
                 "--set", "decode.batch_size=2"]) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "sw")
    assert two["bleu"] == one["bleu"] and two["chrf"] == one["chrf"]


def test_average_then_translate(run_dir, capsys):
    assert main(["average", str(run_dir), "--last", "2"]) == 0
    assert "averaged 2 checkpoints (ckpt_step6.safetensors, ckpt_step7.safetensors)" in capsys.readouterr().out
    averaged = run_dir / ckpt.AVERAGED_NAME
    assert ckpt.load_checkpoint(averaged).progress["averaged_from"] == ["ckpt_step6.safetensors",
                                                                         "ckpt_step7.safetensors"]
    assert main(["translate", "-c", str(averaged), "--beam-size", "1", SENTENCES[0]]) == 0


def error_of(args, capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_helpful_errors(run_dir, tmp_path, capsys, multi30k_dir):
    missing = tmp_path / "nowhere" / "ckpt.safetensors"
    assert f"checkpoint not found: {missing}" in error_of(["translate", "-c", str(missing), "Hallo"], capsys)

    other = Vocab.train(["ein hund", "zwei katzen", "a dog", "two cats"] * 5, tmp_path, vocab_size=30,
                        hard_vocab_limit=False)
    err = error_of(["translate", "-c", str(run_dir), "--vocab", str(tmp_path / "spm.model"), "Hallo"], capsys)
    assert "vocabulary mismatch" in err and f"has {len(other)} pieces" in err and "300 embedding rows" in err

    err = error_of(["train", "--run-dir", str(tmp_path / "r"), "--set", "train.warmup=-3"], capsys)
    assert "train.warmup = -3 is not allowed" in err
    assert "unknown key 'model.d_modl'" in error_of(["train", "--set", "model.d_modl=3"], capsys)
    assert "device = 'tpu' is not allowed" in error_of(["translate", "-c", str(run_dir), "--device", "tpu", "x"],
                                                       capsys)
    import tinygrad_attn as ta

    if not ta.cuda.is_available():
        err = error_of(["translate", "-c", str(run_dir), "--device", "cuda", "x"], capsys)
        assert "device 'cuda' is not usable" in err and "--device cpu" in err

    err = error_of(["evaluate", "-c", str(run_dir), "--data-dir", str(tmp_path / "no-data")], capsys)
    assert str(tmp_path / "no-data") in err and "lacks" in err

    err = error_of(["train", "--run-dir", str(run_dir), "--data-dir", str(multi30k_dir), *sets(*MICRO)], capsys)
    assert "already holds a run" in err and "--resume" in err

    err = error_of(["train", "--run-dir", str(tmp_path / "few"), "--data-dir", str(multi30k_dir), "--max-steps",
                    "1", "--set", "data.train_subset=5"], capsys)
    assert "data.vocab_size = 8000" in err and "cannot make a vocabulary" in err


def test_main_keeps_freed_memory_for_reuse(monkeypatch, capsys):
    import tinygrad_attn as ta

    calls = []
    monkeypatch.setattr(ta, "keep_freed_memory", lambda: calls.append("on") or True)
    assert main(["average", "no-such-run"]) == 2  # whatever the command does next
    assert calls == ["on"]


def test_console_script_entry_point_and_module():
    cfg = (ROOT / "setup.cfg").read_text()
    assert "ta-translate = models.translator.__main__:main" in cfg
    done = subprocess.run([sys.executable, "-m", "models.translator", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and all(c in done.stdout for c in ("train", "translate", "evaluate", "average"))


def test_resume_from_the_command_line(run_dir, multi30k_dir, capsys):
    """Last in this module: it extends the shared run. --resume reads the run's own config.yaml."""
    assert main(["train", "--resume", "--run-dir", str(run_dir), "--max-steps", "8", "--no-progress",
                 "--set", "train.final_eval=false"]) == 0
    assert ckpt.latest_checkpoint(run_dir).name == "ckpt_step8.safetensors"
    c = ckpt.load_checkpoint(run_dir / "ckpt_step8.safetensors")
    assert c.config["model"]["d_model"] == 32 and c.config["train"]["max_steps"] == 8
    assert "resumed from ckpt_step7.safetensors at step 7" in (run_dir / "train.log").read_text()
