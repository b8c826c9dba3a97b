"""Supply-chain checks: the dependency audit and its policy."""
