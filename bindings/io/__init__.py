"""Arrow in: input tables read, checked against their schema and arranged as plain
arrays (the book), with forward fill of market data over snapshot times."""
