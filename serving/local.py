"""One interface for the CLI: a running `tqa serve` when there is one, else the pipeline in this process."""

from __future__ import annotations

from typing import Any

from ml.settings import Settings
from ml.types import SearchResult
from serving.client import find_server, post


class Backend:
    """Answers through the server recorded in the data dir, or opens the index in-process (seconds of start-up)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = find_server(settings)
        self._qa: Any = None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._qa is not None:
            self._qa.close()

    @property
    def qa(self) -> Any:
        if self._qa is None:
            from ml.pipeline import QA

            self._qa = QA(self.settings)
        return self._qa

    def ask(self, question: str, k: int) -> dict[str, Any]:
        if self.url:
            return post(self.url, "/ask", {"question": question, "k": k})
        return dict(self.qa.ask(question, k=k).model_dump())

    def search(
        self, query: str, k: int, kinds: list[str] | None = None, path_prefix: str | None = None
    ) -> list[dict[str, Any]]:
        if self.url:
            payload = {"query": query, "k": k, "kind": kinds, "path_prefix": path_prefix}
            return list(post(self.url, "/search", payload)["results"])
        hits = self.qa.search(query, k=k, kinds=kinds, path_prefix=path_prefix)
        return [SearchResult.of(h).model_dump() for h in hits]
