"""Operations: the root `tqa` command, rollout, monitoring, load tests and infrastructure drivers."""
