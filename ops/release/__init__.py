"""Releases: a registered version moves staging -> canary -> production behind HAProxy, analysed in Prometheus."""
