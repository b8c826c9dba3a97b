"""`python -m ops.cli`: the `tqa` command, for tests and benchmarks that run it with a given interpreter."""

from ops.cli import main

main()
