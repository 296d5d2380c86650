"""One venue's own rules and data: Binance futures brackets (shipped as dated TOML), Deribit
portfolio-margin eligibility."""
