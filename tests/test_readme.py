"""The README's example runs as written."""

import pathlib
import re


def test_readme_python_example_runs():
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    acc = ns["result"].accounts
    assert acc.num_rows == 6
    assert set(acc["status"].to_pylist()) >= {"normal", "margin_call"}
    assert ns["worst"].num_rows == 5
