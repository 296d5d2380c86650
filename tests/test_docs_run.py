"""Every code block of README.md and docs/*.md runs as a new user would run it.

Per file, in a fresh temporary directory laid out like a checkout (a copy of ``docs/``, so
paths such as ``docs/model.example.toml`` resolve) and a fresh interpreter: the blocks run in
the order they appear, python blocks in one namespace (a later block may use an earlier
block's names, as a reader's session would), shell blocks (``sh``, ``bash``, ``console``)
through bash with this environment's ``pmrisk`` first on ``PATH``, so files one block writes
are there for the next.  Blocks marked ``text`` or with no language are output examples and
are not run.

A block that cannot run offline says so with ``<!-- no-run: reason -->`` on the line before
it (the reason is required); ``make demo`` / ``make test`` lines are skipped by rule (they set
up the checkout's own environment, which this one already is).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python": "python", "py": "python", "sh": "shell", "bash": "shell", "console": "shell"}
NOT_RUN = {"", "text", "toml"}
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```[ \t]*$", re.S | re.M)
NO_RUN = re.compile(r"<!--\s*no-run:\s*(\S.*?)\s*-->\s*$")
SKIP_LINE = re.compile(r"^\s*make (demo|test)\b")


def blocks(path):
    """``(line, kind, code, reason)`` of every fenced block: kind ``python``/``shell``/None
    (not run); reason is the no-run marker's text, if any."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        lang = m.group(2).lower()
        if lang not in RUN and lang not in NOT_RUN:
            raise AssertionError(f"{path.name}: unknown code block language {lang!r}")
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NO_RUN.search(before)
        if "no-run" in before and marker is None:
            raise AssertionError(f"{path.name}:{line}: a no-run marker needs a reason")
        code = textwrap.dedent(m.group(3))
        out.append((line, RUN.get(lang), code, marker.group(1) if marker else None))
    return out


# Runs in a fresh interpreter in the temporary directory: the blocks in order, stopping at
# the first failure with the block's line in the message.
RUNNER = r"""
import json, os, subprocess, sys, traceback
name, blocks = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
for line, kind, code in blocks:
    print(f"--- {name}:{line} ({kind})", flush=True)
    if kind == "python":
        try:
            exec(compile(code, f"{name}:{line}", "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the python block at {name}:{line}", flush=True)
            sys.exit(1)
    else:
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], stdin=subprocess.DEVNULL)
        if r.returncode:
            print(f"FAILED: the shell block at {name}:{line} (exit {r.returncode})", flush=True)
            sys.exit(1)
"""


def test_blocks_are_found():
    # the files with code run (the others, e.g. docs/methodology.md, are prose only)
    assert {p.name for p in DOCS if runnable(p)} >= {"README.md", "monitor.md"}
    # the parser sees the blocks a reader sees, indented ones (inside list items) included
    found = blocks(ROOT / "README.md")
    assert sum(kind == "python" for _, kind, _, _ in found) >= 4
    assert sum(kind == "shell" for _, kind, _, _ in found) >= 2
    assert any(code.startswith("import dask") for _, _, code, _ in found)


def runnable(path):
    return any(kind and reason is None for _, kind, _, reason in blocks(path))


@pytest.mark.parametrize("path", [p for p in DOCS if runnable(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_runs(path, tmp_path):
    todo = []
    for line, kind, code, reason in blocks(path):
        if kind is None or reason is not None:
            continue
        if kind == "shell":
            code = "\n".join("" if SKIP_LINE.match(s) else s for s in code.splitlines())
        todo.append((line, kind, code))
    assert todo, f"{path.name} has no runnable block"
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    before = {p: p.read_bytes() for p in (ROOT / "docs").iterdir() if p.is_file()}
    r = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([path.name, todo]),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    # running the docs changes nothing in the checkout
    assert {p: p.read_bytes() for p in (ROOT / "docs").iterdir() if p.is_file()} == before


def test_no_run_markers_are_rare():
    # every marker names why the block cannot run offline; keep them few
    marked = [(p.name, line, reason) for p in DOCS for line, _, _, reason in blocks(p)
              if reason is not None]
    assert len(marked) <= 3, marked


def test_readme_first_example_figures():
    # the README's first example gives what its text says (formerly tests/test_readme.py)
    code = next(code for _, kind, code, _ in blocks(ROOT / "README.md") if kind == "python")
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    acc = ns["result"].accounts
    assert acc.num_rows == 6
    assert set(acc["status"].to_pylist()) >= {"normal", "margin_call"}
    assert ns["worst"].num_rows == 5
