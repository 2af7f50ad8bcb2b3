"""One view per dashboard page: pure functions from a Context to a View (see alliance.panel)."""
