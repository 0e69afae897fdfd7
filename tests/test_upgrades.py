"""Runs made by earlier versions of charlstm, used by this one."""

from __future__ import annotations

import json

import charlstm
from charlstm.text import cache
from charlstm.training import checkpoint, events, session

from .helpers import new_tiny_run, train


def test_a_folder_run_that_named_its_text_as_before_2026_12_04_is_still_on_that_text(tmp_path, tiny_text):
    """Runs on several files made from 2026-12-01 to 2026-12-04 recorded
    their text's sha256 with the cache's format of then (1). A later format
    made this version call their unchanged text another: eval refused, and a
    resume recorded a forced change of text nobody asked for (an upgrade
    walkthrough, 2026-12-06)."""
    folder = tmp_path / "poems"
    folder.mkdir()
    half = len(tiny_text) // 2
    (folder / "a.txt").write_text(tiny_text[:half], encoding="utf-8")
    (folder / "b.txt").write_text(tiny_text[half:], encoding="utf-8")
    run = new_tiny_run(folder, steps=8)
    run_dir = tmp_path / "run"
    train(run, run_dir)
    legacy = cache.identity(run.corpus.train, run.corpus.val, 1)
    assert legacy != run.corpus.sha256
    for meta_file in run_dir.glob("checkpoints/*/*/meta/metadata"):  # as the earlier version wrote them
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        meta["corpus"]["sha256"] = legacy
        meta_file.write_text(json.dumps(meta), encoding="utf-8")

    model = charlstm.load(run_dir)
    assert len(model.validation_text()) > 0  # eval and inspect read it

    seen: list[events.Event] = []
    again = session.resumed_run(run_dir, {"steps": 12}, on_event=seen.append)
    assert "text" not in (again.resumed_with or {})
    assert not [e for e in seen if isinstance(e, events.Warned) and e.kind == "corpus changed"]
    train(again, run_dir)
    # The run goes on naming its text as it did, so its checkpoints agree with one another.
    assert {checkpoint.describe(d.parent).corpus_sha256 for d in run_dir.glob("checkpoints/*/*/meta")} == {legacy}
    assert len(charlstm.load(run_dir).validation_text()) > 0
