"""CI gates behind `inv ci.lint` and `inv ci.scan`: one table of scanners, run concurrently."""
