"""Codes shared by the kernels and the bindings (plain ints: kernels take no strings)."""

SPOT, PERPETUAL, FUTURE, OPTION = 0, 1, 2, 3
KINDS = ("spot", "perpetual", "future", "option")
LINEAR, INVERSE = 0, 1
SETTLEMENTS = ("linear", "inverse")
PUT, CALL = 0, 1
OPTION_TYPES = ("put", "call")
