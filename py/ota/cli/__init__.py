"""Command-line entry points. Each module has a `main(argv)` for absl and a `run()` console script."""
