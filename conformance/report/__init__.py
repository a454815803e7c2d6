"""Human-readable conformance reports rendered from a run's results.json."""
