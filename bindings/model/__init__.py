"""The risk model: its parameters (presets, TOML, overrides, custom scenario tables) and
where they come from (calibration from market prices, correlation matrices)."""
