"""The Python API, starting with the example the README shows."""

import re
from pathlib import Path

import pytest

import charlstm
from charlstm.config import SampleConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it trains on the shipped corpus by name, from an empty directory
    exec(compile(_readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("MACBETH.")
    assert "bits per char" in printed
    assert (tmp_path / "runs" / "api-demo" / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_train_load_sample_evaluate(tiny_corpus, tmp_path):
    seen = []
    model = charlstm.train(
        tiny_corpus,
        tmp_path / "run",
        hidden_size=16,
        embed_dim=8,
        steps=6,
        batch_size=4,
        seq_len=16,
        eval_every=3,
        on_event=seen.append,
    )
    assert isinstance(model, charlstm.Model) and model.step in (3, 6)
    assert model.path.parent.name == "best"
    kinds = [type(e).__name__ for e in seen]
    opened = kinds.index("Opened")  # after the corpus's reading, before the loop's events
    assert kinds[opened - 1] == "CorpusReady" and set(kinds[: opened - 1]) == {"Reading"}
    assert kinds[opened + 1] == "Started" and kinds[-1] == "Finished"
    again = charlstm.load(tmp_path / "run")
    # One line that says what it is, not every parameter array.
    assert re.fullmatch(r"<charlstm\.Model .*, [\d,]+ parameters, \d+ characters, step \d+.*, from .*>", repr(again))
    assert again.sample(50, seed=3, temperature=0.7) == model.sample(50, seed=3, temperature=0.7)
    texts = model.generate(SampleConfig(length=40, num_samples=2, seed=1))
    assert len(texts) == 2 and all(len(t) == 40 for t in texts)
    assert "".join(p[0] for p in model.stream(SampleConfig(length=40, seed=1), chunk=7)) == texts[0]
    assert model.evaluate(tiny_corpus.read_text()).loss < 4.0

    resumed = charlstm.resume(tmp_path / "run", steps=8)
    assert charlstm.load(tmp_path / "run", prefer="latest").step == 8
    assert resumed.best_val_loss is not None


def test_unknown_options_and_divergence_are_errors(tiny_corpus, tmp_path):
    with pytest.raises(charlstm.CharlstmError, match="unknown training option"):
        charlstm.train(tiny_corpus, tmp_path / "a", stepz=3)
    with pytest.raises(charlstm.TrainingDiverged) as err:
        charlstm.train(tiny_corpus, tmp_path / "b", steps=10, batch_size=4, seq_len=16, learning_rate=1e38)
    assert err.value.step >= 1
