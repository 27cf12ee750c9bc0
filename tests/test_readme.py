"""README.md must be true: its Python snippets run, every `edgepose ...` command and option it
names exists (checked on the click commands, nothing long is run), the benchmark scripts and
`make` targets/variables it names exist, and the Makefile's TORCH_INDEX_URL reaches pip."""
import re
import shutil
import subprocess
import sys

import click
import pytest

from edgepose.cli import main
from helpers.optional import torch_or_skip
from helpers.paths import REPO

DOCS = (REPO / "README.md", REPO / "benchmarks" / "README.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
# options README mentions that belong to other tools (python -m venv)
FOREIGN_OPTIONS = {"--system-site-packages"}
# checkpoints the Python snippet may load: file name -> (zoo model, official wrapper)
CHECKPOINTS = {"ctdet_coco_resdcn18.pth": ("centernet_resdcn18", "centernet"),
               "fast_res50_256x192.pth": ("fastpose_res50", "alphapose")}


def _blocks(text, lang):
    return [body for tag, body in FENCE.findall(text) if tag == lang]


def _inline_spans(text):
    prose = FENCE.sub("", text)
    return [span.replace("\\|", "|") for span in re.findall(r"`([^`\n]+)`", prose)]


def _command_lines(doc):
    """Every command the document shows: bash block lines (comments dropped) and code spans."""
    text = doc.read_text()
    lines = []
    for body in _blocks(text, "bash") + _blocks(text, ""):
        lines += [line.split("  #")[0].strip() for line in body.splitlines()]
    return [line for line in lines + _inline_spans(text) if line]


def _all_lines():
    return [line for doc in DOCS for line in _command_lines(doc)]


def _options_of(command):
    opts = {"--help"}
    for param in command.params:
        opts.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return opts


def _resolve(tokens):
    """The click commands a command line names (``train det|pose`` names two)."""
    commands, used = [main], 0
    for token in tokens:
        if not isinstance(commands[0], click.Group):
            break
        names = token.split("|")
        if not all(n in commands[0].commands for n in names):
            break
        commands = [commands[0].commands[n] for n in names]
        used += 1
    return commands, used


def _all_options():
    found, todo = set(), [main]
    while todo:
        cmd = todo.pop()
        found |= _options_of(cmd)
        if isinstance(cmd, click.Group):
            todo += list(cmd.commands.values())
    return found


def test_every_edgepose_command_and_option_in_readme_exists():
    checked = 0
    for line in _all_lines():
        for part in re.split(r"&&|;", line):
            tokens = part.split()
            if len(tokens) < 2 or tokens[0] != "edgepose":  # a bare `edgepose` is the name, not a command
                continue
            commands, used = _resolve(tokens[1:])
            assert used >= 1, f"README names an edgepose command that does not exist: {part!r}"
            for cmd in commands:
                missing = set(OPTION.findall(part)) - _options_of(cmd)
                assert not missing, f"{part!r}: `edgepose {' '.join(tokens[1:used + 1])}` has no {sorted(missing)}"
            checked += 1
    assert checked >= 10, "README lost its command examples?"


def test_every_bare_option_in_readme_belongs_to_a_command():
    known = _all_options() | FOREIGN_OPTIONS
    for span in _inline_spans(DOCS[0].read_text()):
        if span.startswith("--"):
            missing = set(OPTION.findall(span)) - known
            assert not missing, f"README mentions {sorted(missing)} (in `{span}`), which no edgepose command has"


def test_benchmark_scripts_and_options_in_readme_exist():
    helps, checked = {}, 0
    for line in _all_lines():
        for match in re.finditer(r"(benchmarks/\w+\.py)([^|;&]*)", line):
            script, rest = match.groups()
            path = REPO / script
            assert path.is_file(), f"README names {script}, which does not exist"
            if script.endswith(("bench.py", "soak.py")):
                if script not in helps:
                    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True,
                                          timeout=60, cwd=REPO)
                    assert proc.returncode == 0, proc.stderr
                    helps[script] = set(OPTION.findall(proc.stdout))
                missing = set(OPTION.findall(rest)) - helps[script]
                assert not missing, f"{script} has no {sorted(missing)} (README: {line!r})"
                checked += 1
    assert checked >= 3


def test_make_targets_and_variables_in_readme_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    variables = set(re.findall(r"^([A-Z_]+)\s*[?:]?=", makefile, re.M))
    checked = 0
    for line in _all_lines():
        tokens = line.split()
        if tokens[:1] != ["make"]:
            continue
        for token in tokens[1:]:
            if "=" in token:
                assert token.split("=")[0] in variables, f"README sets {token!r}; the Makefile has no such variable"
            else:
                assert token in targets, f"README runs `make {token}`; the Makefile has no such target"
        checked += 1
    assert checked >= 3


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
@pytest.mark.parametrize("index", ["", "https://download.pytorch.org/whl/cpu"])
def test_makefile_passes_the_torch_index_url_to_pip(index, tmp_path):
    """Dry run (-n) of the install rule: the index URL reaches pip only when it is set."""
    args = ["make", "-n", "-B", "install", f"VENV={tmp_path / 'venv'}"] + ([f"TORCH_INDEX_URL={index}"] if index else [])
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    torch_lines = [line for line in proc.stdout.splitlines() if "pip install" in line and "torch==" in line]
    assert len(torch_lines) == 1, proc.stdout
    if index:
        assert f"--index-url {index} " in torch_lines[0]
    else:
        assert "index-url" not in torch_lines[0]


def _prepare_snippet_files(code, folder):
    """Random-weight checkpoints and a synthetic photo under the names the snippet uses."""
    import cv2
    import numpy as np

    from edgepose.data.synthetic import render_scene
    from edgepose.models import create
    from edgepose.models.checkpoint import save_checkpoint

    for name in re.findall(r"[\"']([\w.-]+\.pth)[\"']", code):
        assert name in CHECKPOINTS, f"README loads {name}; add it to CHECKPOINTS in this test"
        model, fmt = CHECKPOINTS[name]
        save_checkpoint(create(model), folder / name, fmt=fmt)
    for name in re.findall(r"[\"']([\w.-]+\.(?:jpg|png))[\"']", code):
        image = render_scene(np.random.default_rng(0), (240, 320), num_people=2)[0]
        cv2.imwrite(str(folder / name), image)


@pytest.mark.slow
def test_readme_python_snippets_run(tmp_path):
    torch_or_skip()
    blocks = _blocks(DOCS[0].read_text(), "python")
    assert blocks, "README has no Python example"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for i, code in enumerate(blocks):
        folder = tmp_path / f"snippet{i}"
        folder.mkdir()
        _prepare_snippet_files(code, folder)
        (folder / "snippet.py").write_text(code)
        proc = subprocess.run([sys.executable, "snippet.py"], cwd=folder, capture_output=True, text=True,
                              timeout=600, env=env)
        assert proc.returncode == 0, f"README Python block {i} fails:\n{code}\n{proc.stderr[-3000:]}"
        if "torch2onnx" in code:  # every export it prints verified on ONNX Runtime
            assert proc.stdout.count("ONNX Runtime vs PyTorch") == code.count("torch2onnx(")
            assert "  FAIL" not in proc.stdout, proc.stdout
