"""Tools that build guest images for tests, benchmarks and users."""
