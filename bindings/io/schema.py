"""Expected input columns, in one place.

Each entry: column -> (kind, required, nullable).  Kinds: ``str`` (string, large_string,
string_view or dictionary of those), ``float`` (any float or integer type, cast to float64),
``int`` (integer), ``time`` (timestamp of any unit; ISO-8601 strings are parsed; tz-naive means
UTC), ``any`` (echoed back, not interpreted).  ``KEYS`` names the columns that identify a row
in error messages.
"""

import pyarrow as pa

# Snapshots: the optional column, its type in results, the account-state tables
TIME = "time"
TIME_TYPE = pa.timestamp("ns", tz="UTC")
ACCOUNT_STATE = ("positions", "balances", "open_orders", "reserves")


def snapshot_tables(timed):
    """The snapshot-time rule: of the tables that carry a ``time`` column (``timed``, their
    names), those whose distinct times are the snapshot times.  These are the timed
    account-state tables (positions, balances, open orders, reserves: an account that is flat
    at some time but holds balances is still a snapshot), or, when none of those is timed,
    every timed table (a market history over a static book).  ``instruments`` never counts
    (static reference data).  With no timed table there is one snapshot, at the valuation
    time.

    >>> from pmrisk.io.schema import snapshot_tables
    >>> snapshot_tables(["market", "positions", "index"])
    ['positions']
    >>> snapshot_tables(["market", "index"])
    ['market', 'index']
    """
    state = [k for k in timed if k in ACCOUNT_STATE]
    return state or [k for k in timed if k != "instruments"]

INSTRUMENTS = {
    "symbol": ("str", True, False),
    "underlying": ("str", True, False),
    "kind": ("str", True, False),
    "settlement": ("str", True, False),
    "contract_size": ("float", True, False),
    "expiry": ("time", False, True),
    "strike": ("float", False, True),
    "option_type": ("str", False, True),
}
POSITIONS = {
    "account": ("str", True, False),
    "symbol": ("str", True, False),
    "quantity": ("float", True, False),
    "entry_price": ("float", False, True),
    "leverage": ("float", False, True),     # binance_um: the position's own leverage (IM)
}
MARKET = {
    "symbol": ("str", True, False),
    "mark_price": ("float", True, False),
    "mark_iv": ("float", False, True),
    "underlying_price": ("float", False, True),
}
INDEX = {
    "underlying": ("str", True, False),
    "index_price": ("float", True, False),
}
BALANCES = {
    "account": ("str", True, False),
    "asset": ("str", True, False),
    "amount": ("float", True, False),
}
OPEN_ORDERS = {
    "account": ("str", True, False),
    "order_id": ("any", True, False),
    "symbol": ("str", True, False),
    "quantity": ("float", True, False),
    "price": ("float", True, False),
}
RESERVES = {
    "account": ("str", True, False),
    "unit": ("str", True, False),
    "mmp_margin": ("float", False, False),
    "open_orders_margin": ("float", False, False),
}
RISK_ARRAYS = {
    "symbol": ("str", True, False),
    "scenario": ("int", True, False),
    "pnl": ("float", True, False),
    "unit": ("str", False, False),
}
RISK_ARRAY_POSITIONS = {
    "account": ("str", True, False),
    "symbol": ("str", True, False),
    "quantity": ("float", True, False),
}
SCENARIOS = {
    "price_shock": ("float", True, False),
    "vol_state": ("str", False, False),
    "vol_factor": ("float", False, True),
    "loss_weight": ("float", False, False),
    "gain_weight": ("float", False, False),
    "table": ("str", False, False),
}
# Notional brackets (pmrisk.venues.brackets): one row per bracket of one symbol's ladder
BRACKETS = {
    "bracket": ("int", False, False),
    "floor": ("float", True, False),
    "cap": ("float", True, False),
    "mmr": ("float", True, False),
    "max_leverage": ("float", True, False),
    "cum": ("float", False, True),
}
BRACKET_POSITIONS = {
    "account": ("str", False, False),
    "symbol": ("str", True, False),
    "quantity": ("float", True, False),
    "contract_size": ("float", True, False),
    "mark_price": ("float", True, False),
    "index_price": ("float", False, False),
}

KEYS = {      # "time" is part of a row's key in the tables that carry one
    "instruments": ("symbol",),
    "positions": ("account", "symbol", "time"),
    "market": ("symbol", "time"),
    "index": ("underlying", "time"),
    "balances": ("account", "asset", "time"),
    "open_orders": ("account", "order_id", "time"),
    "reserves": ("account", "unit", "time"),
    "risk_arrays": ("symbol", "scenario"),
    "scenarios": (),
    "brackets": ("symbol", "bracket"),
    "prices": ("underlying", "time"),
    "iv": ("underlying", "time"),
}
