"""Turn a pytest-benchmark JSON file into the figures table of benchmarks/README.md.

Usage: python benchmarks/report.py benchmarks/results.json [--write]
Prints a Markdown table (median per case, and ratios inside each group); with --write,
replaces the block between the FIGURES markers in benchmarks/README.md.
"""

import json
import pathlib
import platform
import sys

START, END = "<!-- FIGURES:START -->", "<!-- FIGURES:END -->"

# per-case work, for throughput columns: (what, count)
WORK = {
    "test_instrument_pnl_kernel": ("cells", 2000 * 35),
    "test_instrument_pnl_options_only": ("option revaluations", 1600 * 35),
    "test_minimal_option_kernel": ("option revaluations", 1600 * 35),
    "test_numpy_vectorised": ("option revaluations", 1600 * 35),
    "test_quantlib_blackformula_loop": ("option revaluations", 100 * 35),
    "test_numpy_oracle_200": ("cells", 200 * 35),
    "test_instrument_pnl_kernel_200": ("cells", 200 * 35),
    "test_accounts_10k_one_time": ("accounts", 10_000),
    "test_snapshots_100_time_column": ("(time, account) rows", 1_000),
    "test_margin_call": ("positions", 2000),
}


# the pmrisk case each group's other cases are compared with, per unit of work
REFERENCE = {
    "grid-1acct-2k": "test_instrument_pnl_kernel",
    "grid-1acct-2k-options": "test_instrument_pnl_options_only",
    "grid-1acct-2k-oracle200": "test_instrument_pnl_kernel_200",
}


def table(data):
    rows = ["| group | case | median | throughput | pmrisk kernel's speed-up over it |",
            "|---|---|---|---|---|"]
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"], []).append(b)
    for g in sorted(groups):
        bs = sorted(groups[g], key=lambda b: b["stats"]["median"])
        by_name = {b["name"]: b for b in bs}
        ref = by_name.get(REFERENCE.get(g, ""))
        ref_rate = None
        if ref is not None and WORK.get(ref["name"]):
            ref_rate = WORK[ref["name"]][1] / ref["stats"]["median"]
        for b in bs:
            med = b["stats"]["median"]
            what, n = WORK.get(b["name"], ("", 0))
            rate = n / med if n else None
            thr = (f"{rate / 1e6:.2f} M {what}/s" if rate and rate >= 1e6 else
                   f"{rate:,.0f} {what}/s" if rate else "")
            t = f"{med * 1e3:.3f} ms" if med >= 1e-3 else f"{med * 1e6:.1f} µs"
            vs = ""
            if ref_rate and rate and b is not ref and what == WORK[ref["name"]][0]:
                vs = f"{ref_rate / rate:.2f}×"
            elif b is ref:
                vs = "(reference)"
            rows.append(f"| {g} | {b['name'].removeprefix('test_')} | {t} | {thr} | {vs} |")
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw", platform.processor() or "?")
    rows.append("")
    rows.append(f"Machine: {cpu}, {mi.get('cpu', {}).get('count', '?')} cores, Python "
                f"{mi.get('python_version', platform.python_version())}; "
                f"run {data.get('datetime', '?')[:19]} UTC.")
    return "\n".join(rows)


def main(argv):
    path = pathlib.Path(argv[1] if len(argv) > 1 else "benchmarks/results.json")
    text = table(json.loads(path.read_text()))
    print(text)
    if "--write" in argv:
        readme = pathlib.Path(__file__).with_name("README.md")
        s = readme.read_text()
        a, b = s.index(START) + len(START), s.index(END)
        readme.write_text(s[:a] + "\n" + text + "\n" + s[b:])


if __name__ == "__main__":
    main(sys.argv)
