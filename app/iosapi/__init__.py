"""Reference IOS API: stands in for the real service so the ops tooling is exercised end to end."""
