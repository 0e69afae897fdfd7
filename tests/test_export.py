"""`charlstm export`: portable weights read back with NumPy alone, and the
page that runs the model, in a real headless Chromium with the network off."""

import json
import runpy
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app
from charlstm.core.model import CharLSTM, forward, zero_carry
from charlstm.errors import named

from . import browser
from .conftest import _tiny_text
from .helpers import perturbed_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CELLS = {"lstm": {}, "ln-lstm": {"norm": "layer"}, "gru": {"cell": "gru"}}
# The vocabulary holds markup: a page that let it through would run it.
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">&amp;\n"
# Characters beyond the Basic Multilingual Plane: one each to Python, two
# UTF-16 units each to JavaScript's strings.
ASTRAL = "\U0001f600 \U0001d11e\n"
PRIME = "HAMLET.\nTo <be> \U0001f600"
numpy_forward = runpy.run_path(str(ROOT / "examples" / "numpy_forward.py"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One checkpoint per cell (see helpers.perturbed_checkpoint), on a corpus
    with markup and characters beyond the BMP in it; and "documents", a model of a folder of two files,
    whose vocabulary has the symbol that starts a document."""
    root = tmp_path_factory.mktemp("export")
    corpus = root / "tiny.txt"
    corpus.write_text(_tiny_text() + HOSTILE + ASTRAL, encoding="utf-8")
    found = {
        name: perturbed_checkpoint(corpus, root / name, model, seed=i) for i, (name, model) in enumerate(CELLS.items())
    }
    folder = root / "folder"
    folder.mkdir()
    half = len(_tiny_text()) // 2
    (folder / "a.txt").write_text(_tiny_text()[:half], encoding="utf-8")
    (folder / "b.txt").write_text(_tiny_text()[half:] + HOSTILE + ASTRAL, encoding="utf-8")
    # Seed 5: a model that ends its document 47 characters into its greedy continuation of PRIME.
    found["documents"] = perturbed_checkpoint(folder, root / "documents", {}, seed=5)
    return found


def _jax_probs(model, text: str) -> np.ndarray:
    """(len(text), V): the model's next-character distribution after each prefix of `text`."""
    logits, _ = forward(
        CharLSTM(model.model_config),
        model.params,
        jnp.asarray(model.vocab.encode(text))[None],
        zero_carry(model.model_config, 1),
    )
    return np.asarray(jax.nn.softmax(logits[0], axis=-1))


@pytest.mark.parametrize("cell", CELLS)
def test_weights_read_back_and_the_numpy_reference_matches_jax(runs, tmp_path, cell):
    result = CliRunner().invoke(app, ["export", str(runs[cell]), "--weights", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "model.safetensors" in result.stderr
    model = charlstm.load(runs[cell])
    # Which model it took: these are saved before training (random weights are enough here), and it says so.
    assert f"model: {model.path} (step 0: saved before its run trained, so it writes noise)\nwrote " in result.stderr
    # The safetensors package reads the file, and every tensor is the parameter.
    tensors = load_file(tmp_path / "w" / "model.safetensors")
    flat = {".".join(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(model.params)}
    assert set(tensors) == set(flat)
    for name, value in flat.items():
        np.testing.assert_array_equal(tensors[name], np.asarray(value))
    meta = json.loads((tmp_path / "w" / "model.json").read_text(encoding="utf-8"))
    assert meta["vocab"] == model.vocab.chars and meta["model"]["cell"] == model.model_config.cell
    assert {n: t["shape"] for n, t in meta["tensors"].items()} == {n: list(np.shape(v)) for n, v in flat.items()}
    # Where it came from, without the folders above the run (a user's name among them), as the server says it.
    assert meta["source"]["checkpoint"] == f"{runs[cell].name}/checkpoints/best/{model.step}"
    assert meta["source"]["corpus"] == Path(model.corpus_path).name and "/" not in meta["source"]["corpus"]

    # The reference forward pass in examples/numpy_forward.py, character by character.
    ref_meta, ref = numpy_forward["load"](tmp_path / "w")
    state, probs = numpy_forward["zero_state"](ref_meta), []
    for ch in PRIME * 3:
        logits, state = numpy_forward["step"](ref_meta, ref, ref_meta["vocab"].index(ch), state)
        probs.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
    np.testing.assert_allclose(np.array(probs), _jax_probs(model, PRIME * 3), atol=1e-5, rtol=0)


def test_the_numpy_example_names_characters_the_model_never_saw(runs, tmp_path):
    charlstm.load(runs["lstm"]).export_weights(tmp_path)
    script = ROOT / "examples" / "numpy_forward.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--prime", "\u65e5x", "--length", "5"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "the prime contains characters the model never saw: '\u65e5'" in done.stderr


def test_the_weights_header_is_data_not_code(runs, tmp_path):
    charlstm.load(runs["lstm"]).export_weights(tmp_path)
    raw = (tmp_path / "model.safetensors").read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    assert header["__metadata__"]["format"] == "charlstm-weights"
    assert (
        size % 8 == 0
        and max(t["data_offsets"][1] for n, t in header.items() if n != "__metadata__") == len(raw) - 8 - size
    )


@browser.needs_chromium
@pytest.mark.parametrize("cell", [*CELLS, "documents"])
def test_the_page_computes_what_the_model_computes(runs, tmp_path, cell):
    page = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["export", str(runs[cell]), "--html", str(page)])
    assert result.exit_code == 0, result.output
    model = charlstm.load(runs[cell])
    greedy = CliRunner().invoke(app, ["sample", "-c", str(runs[cell]), "--greedy", "-n", "300", "--prime", PRIME])
    assert greedy.exit_code == 0, greedy.output
    # A model of several documents reads a prime as a document's start, and
    # the page must too (its probabilities after the boundary and the prime).
    read = PRIME if model.vocab.boundary_id is None else model.vocab.chars[model.vocab.boundary_id] + PRIME
    test = {"prime": PRIME, "greedy": 300}
    if cell == "ln-lstm":  # and drive the controls once, as a user would
        test["ui"] = {"temperature": 0.9, "top-k": 5, "top-p": 0.9, "length": 500, "seed": 3}
    if cell == "documents":  # a run the model ends early
        test["ui"] = {"temperature": 0, "length": 300, "seed": 0}
    dom = browser.run(browser.page_url(page, test))
    seen = browser.hook_result(dom)
    np.testing.assert_allclose(seen["probs"], _jax_probs(model, read)[-1], atol=1e-4, rtol=0)
    assert PRIME + seen["greedy"] + "\n" == greedy.stdout
    assert seen["prime_box"] == ""  # the default prime (a new line, or a document's start) is never shown
    # Self-contained and inert: nothing loaded, nothing blocked, no markup run.
    assert seen["resources"] == [] and seen["violations"] == []
    assert seen["title"] == f"charlstm: {cell}" and "pwned" not in dom
    if cell == "documents":  # the perturbed model ends its document early: the page stops there too
        assert len(seen["greedy"]) < 300
    # Its characters counted as info counts them: the document boundary apart (it counted it, 2026-12-05).
    chars = model.vocab.size - (model.vocab.boundary_id is not None)
    assert f" parameters, {chars} characters; weights in float32" in browser.element_text(dom, "summary")
    if cell == "documents":
        # The boundary ends the text and is not one of its characters (the page counted it, 2026-12-06).
        status, generated = browser.element_text(dom, "status"), browser.element_text(dom, "generated")
        assert generated == seen["greedy"] and status.endswith("seed 0 (the model ended its document)")
        assert status.startswith(f"{len(generated)} characters, "), status
    if cell == "ln-lstm":
        generated = browser.element_text(dom, "generated")
        assert len(generated) == 500 and set(generated) <= set(model.vocab.chars)
        assert browser.element_text(dom, "status").startswith("500 characters")
        assert browser.element_text(dom, "status").endswith(", seed 3")  # the seed the text was drawn with
        assert browser.element_text(dom, "shown-prime") == PRIME


@browser.needs_chromium
def test_half_page_is_half_the_weights_and_names_unknown_prime_characters(runs, tmp_path):
    model = charlstm.load(runs["ln-lstm"])
    full, half = model.export_html(tmp_path / "full.html"), model.export_html(tmp_path / "half.html", half=True)
    assert half.weight_bytes * 2 == full.weight_bytes and half.dtype == "f16"
    assert full.bytes - half.bytes > 1.3 * half.weight_bytes  # base64 of the bytes saved
    text = (tmp_path / "half.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script>document" not in text
    # Right-to-left scripts (Arabic, Hebrew) read from the right in the box and the output (a walkthrough).
    assert '<textarea id="prime" rows="3" spellcheck="false" dir="auto">' in text
    assert '<div id="output" aria-live="polite" dir="auto">' in text
    dom = browser.run(browser.page_url(tmp_path / "half.html", {"prime": PRIME, "greedy": 5, "ui": {"length": 5}}))
    seen = browser.hook_result(dom)
    # float16 weights: about 3 significant digits each.
    np.testing.assert_allclose(seen["probs"], _jax_probs(model, PRIME)[-1], atol=2e-2, rtol=0)
    # A no-break space, as pasted from the web, looks like a space; a combining accent sits on what is before it.
    prime = "To be \u03a9 or ~\u00a0e\u0301"
    dom = browser.run(browser.page_url(tmp_path / "half.html", {"prime": prime, "ui": {"length": 5}}))
    assert browser.hook_result(dom)["unknown"] == sorted(["\u03a9", "~", "\u00a0", "\u0301"])
    message = "The model never saw '~', '\\xa0', '\\u0301', '\u03a9': remove them to generate."
    assert message.removeprefix("The model never saw ").removesuffix(": remove them to generate.") == named(
        sorted(["\u03a9", "~", "\u00a0", "\u0301"])
    )  # as the command names them
    assert browser.element_text(dom, "unknown") == message
    assert browser.element_text(dom, "generated") == ""
    # A character the model knows in another Unicode form (the Kelvin sign is K in NFC), as the command says it.
    dom = browser.run(browser.page_url(tmp_path / "half.html", {"prime": "\u212aING.", "ui": {"length": 5}}))
    assert browser.element_text(dom, "unknown") == (
        "The model never saw '\u212a': the model knows it written in Unicode's NFC form (composed, one character "
        "each): write it so, or remove it to generate."
    )


@browser.needs_chromium
def test_the_page_reads_a_long_prime_in_slices_and_refuses_an_empty_box(runs, tmp_path):
    """A prime of a whole play must not freeze the page: it is read a slice
    at a time, as text is written, and gives the same text as the command."""
    page = charlstm.load(runs["lstm"]).export_html(tmp_path / "page.html").path
    prime = _tiny_text()[:3000]
    sampled = CliRunner().invoke(app, ["sample", "-c", str(runs["lstm"]), "--greedy", "-n", "40", "--prime", prime])
    assert sampled.exit_code == 0, sampled.output
    dom = browser.run(browser.page_url(page, {"prime": prime, "ui": {"temperature": 0, "length": 40}}))
    assert prime + browser.element_text(dom, "generated") + "\n" == sampled.stdout
    assert browser.element_text(dom, "status").startswith("40 characters")
    # An empty temperature box is a mistake, not 0 (greedy).
    dom = browser.run(browser.page_url(page, {"prime": "To be", "ui": {"temperature": "", "length": 5}}))
    assert browser.element_text(dom, "problem") == "temperature must be from 0 to 100"  # said as an error, marked
    assert 'id="temperature" type="number" min="0" step="0.05" value="0.8" aria-invalid="true"' in dom
    assert browser.element_text(dom, "generated") == ""
    # The ranges the command and the server take: a top-k past the vocabulary is no filter, top-p any above 0.
    dom = browser.run(browser.page_url(page, {"prime": "To be", "ui": {"top-k": 500, "top-p": 0.005, "length": 5}}))
    assert len(browser.element_text(dom, "generated")) == 5 and browser.element_text(dom, "problem") == ""
    dom = browser.run(browser.page_url(page, {"prime": "To be", "ui": {"top-p": 0, "length": 5}}))
    assert browser.element_text(dom, "problem") == "top-p must be above 0 and at most 1"
    # A number too small for the browser to tell from 0 is not read as 0 (greedy, a helper's walkthrough).
    dom = browser.run(browser.page_url(page, {"prime": "To be", "ui": {"temperature": "1e-400", "length": 5}}))
    said = "temperature 1e-400 is too small to tell from 0 here: give 0 if that is meant"
    assert browser.element_text(dom, "problem") == said and browser.element_text(dom, "generated") == ""


@browser.needs_chromium
def test_the_page_takes_the_keyboard_and_a_dark_theme(runs, tmp_path):
    """Ctrl+Enter generates from the prime box, as a user presses it (the
    same text as the button), Escape stops a long run, and a reader whose
    system asks for a dark theme gets one."""
    page = charlstm.load(runs["lstm"]).export_html(tmp_path / "page.html").path
    chromium = browser.Session(*browser.OFFLINE)
    value = "document.getElementById(%r).textContent"
    try:
        chromium.open(page.resolve().as_uri())
        browser.until(lambda: chromium.evaluate("document.readyState") == "complete", "the page to load")
        chromium.evaluate(
            "const p = document.getElementById('prime'); p.value = 'To be'; p.dispatchEvent(new Event('input'));"
            "document.getElementById('temperature').value = '0'; document.getElementById('length').value = '30';"
            "p.focus()"
        )
        chromium.press("Enter", "Enter", modifiers=2)  # Ctrl
        browser.until(lambda: (chromium.evaluate(value % "status") or "").startswith("30 characters"), "the run")
        greedy = CliRunner().invoke(
            app, ["sample", "-c", str(runs["lstm"]), "--greedy", "-n", "30", "--prime", "To be"]
        )
        assert "To be" + chromium.evaluate(value % "generated") + "\n" == greedy.stdout
        assert chromium.evaluate(browser.OUTSIDE_LANDMARKS) == []  # all of it in <main>, text written included
        # A run far longer than the test: Escape ends it where it is.
        chromium.evaluate("document.getElementById('length').value = '1000000'")
        chromium.press("Enter", "Enter", modifiers=4)  # Meta, as on a Mac
        browser.until(lambda: not chromium.evaluate("document.getElementById('stop').disabled"), "the long run")
        chromium.press("Escape", "Escape")
        status = browser.until(
            lambda: "(stopped)" in (chromium.evaluate(value % "status") or "") and chromium.evaluate(value % "status"),
            "the stop",
        )
        assert int(status.split()[0].replace(",", "")) < 1_000_000
        background = "getComputedStyle(document.body).backgroundColor"
        assert chromium.evaluate(background) in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
        chromium.prefer_dark()
        assert chromium.evaluate(background) == "rgb(22, 22, 22)"
        assert chromium.evaluate("getComputedStyle(document.body).color") == "rgb(221, 221, 221)"
    finally:
        chromium.close()


def test_export_errors_are_one_line(runs, tmp_path):
    runner = CliRunner()
    cases = [
        (["export", str(runs["lstm"])], "nothing to export: give --html PAGE.html, --weights DIR, or both"),
        (["export", str(runs["lstm"]), "--weights", str(tmp_path), "--half"], "--half applies to the page"),
        (["export", str(runs["lstm"]), "--html", str(tmp_path)], "is a directory: give the HTML file"),
        (["export", str(runs["lstm"]), "--html", "page.txt"], "give a file name ending in .html, not page.txt"),
        (["export", str(runs["lstm"]), "--weights", str(ROOT / "README.md")], "is a file, not a directory"),
        (["export", str(tmp_path / "nope"), "--html", "x.html"], "checkpoint not found"),
        # An unset "$OUT" wrote the weights into the folder here (a walkthrough, 2026-12-05).
        (["export", str(runs["lstm"]), "--weights", ""], "--weights is empty: give a path"),
        (["export", str(runs["lstm"]), "--html", ""], "--html is empty: give a path"),
        # Both places are checked before either is written: the page was written, then the weights refused.
        (["export", str(runs["lstm"]), "--html", str(tmp_path / "x.html"), "--weights", str(tmp_path / "x.html")],
         f"--html and --weights name the same place, {tmp_path / 'x.html'}: give each its own"),
        (["export", str(runs["lstm"]), "--html", str(tmp_path / "y.html"), "--weights", str(ROOT / "README.md")],
         "is a file, not a directory"),
    ]  # fmt: skip
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and result.stderr.count("\n") == 1
    assert not list(tmp_path.glob("*.html"))


def test_export_without_a_run_takes_the_most_recent_one(runs, tmp_path, monkeypatch):
    """As sample, info, plot and serve do."""
    shutil.copytree(runs["gru"], tmp_path / "runs" / "newest")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "--weights", "w"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "w" / "model.json").read_text(encoding="utf-8"))
    assert meta["model"]["cell"] == "gru"
