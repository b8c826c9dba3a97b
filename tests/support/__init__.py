"""Scaffolding shared by the tests and the benchmarks: stand-in servers, tiny models, small corpora, free ports.

The product (`ml`, `serving`, `ops`) never imports it, and no bento or wheel ships it.
"""
