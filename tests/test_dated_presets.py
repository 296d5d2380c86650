"""Presets as dated data: every set of parameters with the date it took effect,
``Model.preset(name, as_of=...)``, and each snapshot of a history on the set in force then."""

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk import samples
from pmrisk.engine.margin import margin_per_snapshot
from pmrisk.model import presets
from pmrisk.model.toml import dumps

TEST_PRESET = '''
preset = "test_dated"
description = "deribit_pme with BTC's range changed twice"
extends = "deribit_pme"

[[set]]
effective = "2024-06-01"
source = "test"
[set.model.BTC]
price_range = 0.10

[[set]]
effective = "2024-06-02"
source = "test"
[set.model]
mm_factor = 0.9
[set.model.BTC]
price_range = 0.20
'''


@pytest.fixture
def dated(monkeypatch):
    shipped = presets.presets()
    data = presets.parse_preset(TEST_PRESET, "test_dated.toml")
    monkeypatch.setattr(presets, "presets", lambda: {**shipped, "test_dated": data})
    return "test_dated"


def history():
    return samples.history(days=2, accounts=3, step_minutes=360)


def at_time(h, t):
    """The tables of history ``h`` at time ``t`` (int ns), without their time column."""
    return {k: (v.filter(pa.array(v["time"].cast(pa.int64()).to_numpy() == t))
                .drop_columns(["time"]) if "time" in v.column_names else v)
            for k, v in h.items()}


def test_shipped_presets_are_data_files_with_a_history():
    assert {"standard", "binance_pm_pro", "deribit_pme", "span"} <= set(presets.names())
    for name in presets.names():
        h = pmrisk.Model.history(name)
        assert h.num_rows >= 1 and h.column_names == ["preset", "effective", "changes",
                                                      "source"]
        assert all(s for s in h["source"].to_pylist()), name       # every set has a source
        m = pmrisk.Model.preset(name)
        assert m.effective[-1] == h["effective"][-1].as_py()


def test_binance_pm_pro_extends_standard():
    a, b = pmrisk.Model.preset("standard"), pmrisk.Model.preset("binance_pm_pro")
    assert b["thresholds"]["liquidation"] == 1.0 and b["im_factor"] == 1.0
    assert b.underlying("BTC") == a.underlying("BTC") and b["correlations"] == a["correlations"]


def test_as_of_picks_the_set_in_force(dated):
    m = pmrisk.Model.preset(dated, as_of="2024-06-01T23:59:59Z")
    assert m.underlying("BTC")["price_range"] == 0.10 and m["mm_factor"] == 0.8
    assert m.effective == ("undated", "2024-06-01")
    m = pmrisk.Model.preset(dated, as_of=np.datetime64("2024-06-02"))
    assert m.underlying("BTC")["price_range"] == 0.20 and m["mm_factor"] == 0.9
    latest = pmrisk.Model.preset(dated)
    assert latest.underlying("BTC")["price_range"] == 0.20 and latest.as_of is None
    # the rest comes from the extended preset
    assert m.underlying("ETH") == pmrisk.Model.preset("deribit_pme").underlying("ETH")


def test_as_of_before_the_first_set_is_refused(dated):
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.Model.preset(dated, as_of="2024-05-31")
    assert (e.value.table, e.value.column) == ("arguments", "as_of")
    assert "2024-06-01" in str(e.value)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.Model.preset(dated, as_of=1717200000)          # a bare number: unit unknown
    assert e.value.column == "as_of"


def test_from_dict_and_toml_keep_as_of(dated, tmp_path):
    m = pmrisk.Model.from_dict({"preset": dated, "as_of": "2024-06-01", "ETH": {
        "price_range": 0.3}})
    assert m.underlying("BTC")["price_range"] == 0.10
    text = dumps(m)
    assert 'as_of = "2024-06-01T00:00:00.000000000"' in text
    path = tmp_path / "m.toml"
    path.write_text(text)
    again = pmrisk.Model.from_toml(path)
    assert again.to_dict() == m.to_dict()


def test_each_snapshot_uses_the_set_in_force_at_its_time(dated):
    h = history()
    model = pmrisk.Model.preset(dated, as_of="valuation_time").with_overrides(
        {"ETH": {"price_range": 0.2}})
    assert model.dated
    r = pmrisk.margin(**h, model=model)
    ref = margin_per_snapshot(**h, model=model)
    for name in ("accounts", "units", "positions"):
        assert getattr(r, name).equals(getattr(ref, name)), name
    # each snapshot equals a one-snapshot call with the set in force at its time
    times = r.accounts["time"].cast(pa.int64()).to_numpy()
    changed = 0
    for t in np.unique(times)[::3]:
        at_t = at_time(h, t)
        then = pmrisk.Model.preset(dated, as_of=np.datetime64(int(t), "ns")).with_overrides(
            {"ETH": {"price_range": 0.2}})
        one = pmrisk.margin(**at_t, model=then, valuation_time=np.datetime64(int(t), "ns"))
        got = r.accounts.filter(pa.array(times == t)).drop_columns(["time"])
        assert got.equals(one.accounts)
        latest = pmrisk.margin(**at_t, model=pmrisk.Model.preset(dated).with_overrides(
            {"ETH": {"price_range": 0.2}}), valuation_time=np.datetime64(int(t), "ns"))
        changed += not got.equals(latest.accounts)
    assert changed                       # the history does reach back into the older set


def test_backtest_and_monitor_use_the_dated_sets(dated):
    h = history()
    model = pmrisk.Model.preset(dated, as_of="valuation_time")
    whole = pmrisk.margin(**h, model=model)
    bt = pmrisk.backtest(**h, model=model, batch_rows=40, progress=False)
    assert bt.accounts.equals(whole.accounts)
    t0 = "2024-06-01T06:00:00Z"
    at_t = at_time(h, int(np.datetime64(t0.rstrip("Z"), "ns").astype(np.int64)))
    mon = pmrisk.Monitor(**at_t, model=model, valuation_time=t0)
    assert mon.model.underlying("BTC")["price_range"] == 0.10
    ref = pmrisk.margin(**at_t, model=pmrisk.Model.preset(dated, as_of=t0),
                        valuation_time=t0)
    assert mon.accounts.select(ref.accounts.column_names).equals(ref.accounts)


@pytest.mark.parametrize("text, match", [
    ('preset = "x"\n[[set]]\neffective = "2024-13-01"\n', "YYYY-MM-DD"),
    ('preset = "x"\n[[set]]\neffective = "2024-06-02"\n[[set]]\neffective = "2024-06-01"\n',
     "date order"),
    ('preset = "x"\n[[set]]\neffective = "2024-06-01"\n[[set]]\neffective = "undated"\n',
     "only the first"),
    ('preset = "x"\nsets = 1\n', "keys"),
])
def test_malformed_preset_files_are_refused(text, match):
    with pytest.raises(presets.PresetFileError, match=match):
        presets.parse_preset(text, "x.toml")
