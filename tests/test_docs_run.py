"""Every code block of README.md and docs/*.md runs as a new user would run it.

Per file, in a fresh temporary directory laid out like a checkout (a copy of ``docs/``, so
paths such as ``docs/model.example.toml`` resolve) and a fresh interpreter: the blocks run in
the order they appear, python blocks in one namespace (a later block may use an earlier
block's names, as a reader's session would), shell blocks (``sh``, ``bash``, ``console``)
through bash with this environment's ``pmrisk`` first on ``PATH``, so files one block writes
are there for the next.  Blocks marked ``text`` or with no language are output examples and
are not run, except that a ``text`` block that directly follows a run block (nothing but
blank lines between) is that block's expected output: stdout (and, for shell, stderr) must
equal it, so docs/errors.md's messages cannot drift from what the code prints.

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


def _blocks(path):
    """Every fenced block as a dict: line, kind (``python``/``shell``/None: not run), lang,
    code, reason (the no-run marker's text, if any), start and end offsets."""
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
        out.append(dict(line=line, kind=RUN.get(lang), lang=lang,
                        code=textwrap.dedent(m.group(3)),
                        reason=marker.group(1) if marker else None,
                        start=m.start(), end=m.end(), gap=""))
    for a, b in zip(out, out[1:]):
        b["gap"] = text[a["end"]:b["start"]]
    return out


def blocks(path):
    """``(line, kind, code, reason)`` of every fenced block."""
    return [(b["line"], b["kind"], b["code"], b["reason"]) for b in _blocks(path)]


def outputs(path):
    """``{line of a run block: its expected output}``: a ``text`` block right after it."""
    found = _blocks(path)
    return {a["line"]: b["code"] for a, b in zip(found, found[1:])
            if a["kind"] and b["lang"] == "text" and not b["gap"].strip()}


# Runs in a fresh interpreter in the temporary directory: the blocks in order.  A block
# without an expected output stops the run at its first failure; a block with one has its
# output (or the exception it raised) compared, and every mismatch is reported with what the
# block printed, ready to paste into the doc.
RUNNER = r"""
import contextlib, io, json, resource, subprocess, sys, traceback
# a doc block that needs more than a few GB is a bug (the machine is shared): it fails with a
# MemoryError here, its children included, instead of exhausting the machine
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
name, blocks = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
bad = 0
for line, kind, code, expect in blocks:
    print(f"--- {name}:{line} ({kind})", flush=True)
    if kind == "python":
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf if expect is not None else sys.stdout):
                exec(compile(code, f"{name}:{line}", "exec"), ns)
        except BaseException as e:
            if expect is None:
                traceback.print_exc()
                print(f"FAILED: the python block at {name}:{line}", flush=True)
                sys.exit(1)
            buf.write(f"raised {type(e).__module__}.{type(e).__name__}: {e}")
        got = buf.getvalue()
    else:
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], text=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        got = r.stdout
        print(got, end="")
        if r.returncode:
            print(f"FAILED: the shell block at {name}:{line} (exit {r.returncode})", flush=True)
            sys.exit(1)
    if expect is not None and got.strip() != expect.strip():
        bad += 1
        print(f"MISMATCH: the output of the block at {name}:{line}; expected\n"
              f"{expect.strip()}\ngot\n{got.strip()}\n", flush=True)
sys.exit(1 if bad else 0)
"""


def test_blocks_are_found():
    # the files with code run (the others, e.g. docs/methodology.md, are prose only)
    assert {p.name for p in DOCS if runnable(p)} >= {"README.md", "monitor.md"}
    # the parser sees the blocks a reader sees, indented ones (inside list items) included
    found = blocks(ROOT / "README.md")
    assert sum(kind == "python" for _, kind, _, _ in found) >= 4
    assert sum(kind == "shell" for _, kind, _, _ in found) >= 2
    assert any(code.startswith("import dask") for _, _, code, _ in found)
    # docs/errors.md: every block but the first (set-up) has its expected output
    errors = [b for b in blocks(ROOT / "docs" / "errors.md") if b[1]]
    assert len(outputs(ROOT / "docs" / "errors.md")) == len(errors) - 1 >= 20


def runnable(path):
    return any(kind and reason is None for _, kind, _, reason in blocks(path))


@pytest.mark.parametrize("path", [p for p in DOCS if runnable(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_runs(path, tmp_path):
    todo = []
    expected = outputs(path)
    for line, kind, code, reason in blocks(path):
        if kind is None or reason is not None:
            continue
        if kind == "shell":
            code = "\n".join("" if SKIP_LINE.match(s) else s for s in code.splitlines())
        todo.append((line, kind, code, expected.get(line)))
    assert todo, f"{path.name} has no runnable block"
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    before = {p: p.read_bytes() for p in (ROOT / "docs").iterdir() if p.is_file()}
    r = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([path.name, todo]),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    shown = "\n".join(s for s in r.stdout.splitlines() if not s.startswith("--- "))
    assert r.returncode == 0, f"{shown[-12000:]}\n{r.stderr[-4000:]}"
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
