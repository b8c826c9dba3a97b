"""Our Weaviate collection, written and queried through LlamaIndex's WeaviateVectorStore."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.errors import UserError
from ml.index.tokens import expand_identifiers, search_text
from ml.settings import Settings
from ml.types import FILE_KINDS, Chunk, Hit

if TYPE_CHECKING:
    import weaviate
    from llama_index.vector_stores.weaviate import WeaviateVectorStore

# Chunk fields stored as Weaviate properties; `text` is LlamaIndex's text key.
CHUNK_FIELDS = [
    "kind",
    "path",
    "start_line",
    "end_line",
    "symbol",
    "corpus_version",
    "url",
    "commit",
    "issue",
    "pr",
    "parent_symbol",
    "signature",
    "date",
    "history",
]
RETURN_PROPERTIES = ["text", *CHUNK_FIELDS, "_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id"]
# BM25 runs over the raw text, our identifier-split field and the symbol (boosted).
QUERY_PROPERTIES = ["text", "search_text", "symbol^2"]
# Weaviate's default QUERY_MAXIMUM_RESULTS: a server this project did not start (a cluster) refuses larger limits.
QUERY_PAGE = 10_000
# A class this long or shorter is quoted from its methods' code; a longer one (`Trainer`) only from its outline.
CLASS_BODY_LINES = 400


def embedded_env(settings: Settings) -> dict[str, str]:
    """Server environment: no telemetry, no vectorizer or cloud modules, quiet logs."""
    return {
        "DISABLE_TELEMETRY": "true",
        "ENABLE_MODULES": "",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "LOG_LEVEL": "error",
        "PERSISTENCE_DATA_PATH": str(settings.weaviate_data_dir.resolve()),
        "QUERY_MAXIMUM_RESULTS": "100000",
    }


def connect(settings: Settings) -> weaviate.WeaviateClient:
    """A new client for the configured Weaviate; the caller owns it and closes it.

    Closing a client that started an embedded server also stops that server; closing one that connected to an
    existing server only closes the connection.

    External (`TQA_WEAVIATE_URL`) first; else this data dir's embedded server if it runs (for example one `tqa serve`
    started), found through its record; else an embedded server is started on the data dir, on the configured ports
    or, when another data dir's server (or anything else) holds them, on free ones.
    """
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    timeout = AdditionalConfig(timeout=Timeout(init=30, query=60, insert=300))
    if settings.weaviate_url:
        from urllib.parse import urlparse

        http = urlparse(settings.weaviate_url)
        grpc = urlparse(settings.weaviate_grpc_url or f"{http.scheme}://{http.hostname}:50051")
        key = settings.weaviate_api_key.get_secret_value() if settings.weaviate_api_key else None
        client = weaviate.connect_to_custom(
            http_host=http.hostname or "localhost",
            http_port=http.port or (443 if http.scheme == "https" else 80),
            http_secure=http.scheme == "https",
            grpc_host=grpc.hostname or http.hostname or "localhost",
            grpc_port=grpc.port or 50051,
            grpc_secure=grpc.scheme == "https",
            auth_credentials=Auth.api_key(key) if key else None,
            additional_config=timeout,
            skip_init_checks=False,
        )
        return client
    from ml.index.local_server import choose_ports, cluster_env, node_name, write_record

    # A server answering on the configured ports is used only if this data dir started it (see local_server).
    http_port, grpc_port, own = choose_ports(settings)
    if own is not None:
        return weaviate.connect_to_local(
            host="127.0.0.1", port=http_port, grpc_port=grpc_port, additional_config=timeout
        )
    binary = settings.weaviate_binary
    if not binary.exists():
        raise UserError(f"The Weaviate server binary is missing ({binary}); run `make setup` (or `tqa setup`) first.")
    settings.weaviate_data_dir.mkdir(parents=True, exist_ok=True)
    node = node_name(settings)
    from weaviate.embedded import EmbeddedOptions

    client = weaviate.WeaviateClient(
        embedded_options=EmbeddedOptions(
            version=settings.weaviate_version,
            binary_path=str(settings.binary_dir),
            persistence_data_path=str(settings.weaviate_data_dir.resolve()),
            port=http_port,
            grpc_port=grpc_port,
            additional_env_vars=embedded_env(settings) | cluster_env(node),
        ),
        additional_config=timeout,
    )
    # The client waits a fixed 10 s for an embedded server to become ready; a server loading a full index on a
    # busy 2-core machine needs longer, so the wait is the configured one.
    wait = client._connection.wait_for_weaviate
    client._connection.wait_for_weaviate = lambda _period: wait(settings.weaviate_startup_s)  # type: ignore[method-assign]
    try:
        client.connect()
    except Exception:
        client.close()
        raise
    process = getattr(getattr(client, "_connection", None), "embedded_db", None)
    pid = getattr(getattr(process, "process", None), "pid", None)
    if pid:
        # Record the server so this data dir finds it again and others recognise it as not theirs.
        write_record(settings, pid, http_port, grpc_port, node)
    return client


class WeaviateIndex:
    """The chunk collection: schema we define, writes and hybrid queries through LlamaIndex."""

    def __init__(
        self, client: weaviate.WeaviateClient, collection: str, owns_client: bool = False, replication_factor: int = 1
    ):
        self.client = client
        self.collection_name = collection
        self.replication_factor = replication_factor
        self._owns_client = owns_client
        self._store: WeaviateVectorStore | None = None

    @classmethod
    def open(cls, settings: Settings) -> WeaviateIndex:
        return cls(
            connect(settings), settings.collection, owns_client=True, replication_factor=settings.replication_factor
        )

    def close(self) -> None:
        """Close the client only if this index created it (stopping an embedded server only if it started one)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> WeaviateIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Schema -------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.client.collections.exists(self.collection_name))

    def ensure_collection(self, replication_factor: int | None = None) -> None:
        """Create the collection with our schema if it does not exist (replicated per TQA_REPLICATION_FACTOR)."""
        if self.exists():
            return
        replication_factor = replication_factor or self.replication_factor
        from weaviate.classes.config import Configure, DataType, Property, Tokenization

        def text(name: str, searchable: bool = False, filterable: bool = False, tok: Any = None) -> Property:
            return Property(
                name=name,
                data_type=DataType.TEXT,
                index_searchable=searchable,
                index_filterable=filterable,
                tokenization=tok if (searchable or filterable) else None,
            )

        def number(name: str, filterable: bool = True) -> Property:
            return Property(name=name, data_type=DataType.INT, index_filterable=filterable, index_range_filters=False)

        self.client.collections.create(
            self.collection_name,
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(ef_construction=64, max_connections=16, ef=96)
            ),
            inverted_index_config=Configure.inverted_index(bm25_b=0.75, bm25_k1=1.2),
            replication_config=Configure.replication(factor=replication_factor),
            properties=[
                text("text", searchable=True, tok=Tokenization.WORD),
                text("search_text", searchable=True, tok=Tokenization.WORD),
                text("symbol", searchable=True, filterable=True, tok=Tokenization.WORD),
                text("kind", filterable=True, tok=Tokenization.FIELD),
                text("path", filterable=True, tok=Tokenization.FIELD),
                number("start_line", filterable=False),
                number("end_line", filterable=False),
                text("corpus_version"),
                text("url"),
                text("commit", filterable=True, tok=Tokenization.FIELD),
                number("issue"),
                number("pr"),
                text("parent_symbol"),
                text("signature"),
                text("date"),
                Property(
                    name="history",
                    data_type=DataType.TEXT_ARRAY,
                    index_filterable=True,
                    index_searchable=False,
                    tokenization=Tokenization.FIELD,
                ),
                # LlamaIndex's own bookkeeping properties, stored but never indexed.
                text("_node_content"),
                text("_node_type"),
                text("document_id"),
                text("doc_id"),
                text("ref_doc_id"),
            ],
        )

    def drop(self) -> None:
        if self.exists():
            self.client.collections.delete(self.collection_name)
        self._store = None

    @property
    def store(self) -> WeaviateVectorStore:
        if self._store is None:
            from llama_index.vector_stores.weaviate import WeaviateVectorStore

            self.ensure_collection()
            self._store = WeaviateVectorStore(weaviate_client=self.client, index_name=self.collection_name)
        return self._store

    @property
    def collection(self) -> Any:
        return self.client.collections.use(self.collection_name)

    # Writes -------------------------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace chunks by id. Raises if Weaviate rejected any object."""
        if not chunks:
            return
        from llama_index.core.schema import TextNode

        nodes = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            metadata = {f: getattr(chunk, f) for f in CHUNK_FIELDS}
            metadata["issue"] = chunk.issue or 0
            metadata["pr"] = chunk.pr or 0
            metadata["search_text"] = search_text(chunk.symbol, chunk.path, chunk.text)
            nodes.append(TextNode(id_=chunk.id, text=chunk.text, metadata=metadata, embedding=vector.tolist()))
        self.store.add(nodes)
        failed = self.client.batch.failed_objects
        if failed:
            first = failed[0]
            raise RuntimeError(f"Weaviate rejected {len(failed)} of {len(nodes)} objects; first error: {first.message}")

    def ids_for_paths(self, paths: Iterable[str]) -> dict[str, set[str]]:
        """Ids currently stored for each path (the truth after an interrupted run, unlike the ingest state)."""
        from weaviate.classes.query import Filter

        paths = list(paths)
        found: dict[str, set[str]] = {p: set() for p in paths}
        pending = [paths[start : start + 200] for start in range(0, len(paths), 200)]
        while pending:
            group = pending.pop()
            response = self.collection.query.fetch_objects(
                filters=Filter.by_property("path").contains_any(group)
                & Filter.by_property("kind").contains_any(list(FILE_KINDS)),
                limit=QUERY_PAGE,
                return_properties=["path"],
            )
            if len(response.objects) >= QUERY_PAGE:
                # A full page may be cut short: ask again for each half of the paths.
                if len(group) == 1:
                    raise RuntimeError(f"{group[0]} has over {QUERY_PAGE} chunks in the index.")
                pending += [group[: len(group) // 2], group[len(group) // 2 :]]
                continue
            for obj in response.objects:
                found.setdefault(str(obj.properties["path"]), set()).add(str(obj.uuid))
        return found

    def symbol_bodies(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Chunk]:
        """The code of each `(path, symbol)`: a function or method whole, its split parts joined; a class of up to
        `CLASS_BODY_LINES` lines as its outline with its methods' code (`class_body`), a longer one as its outline
        chunk. Keys with no code chunk (a doc section, a commit) are left out."""
        from weaviate.classes.query import Filter

        from ml.sources.python_code import class_body, join_parts

        wanted = {k for k in keys if k[0] and k[1]}
        if not wanted:
            return {}
        paths = sorted({path for path, _ in wanted})
        # `symbol` is word-tokenized: the filter narrows to chunks sharing its words, the exact match is made here.
        # A class's methods (`Class.name`) share its name's word, so the same query brings them.
        symbol_filter = Filter.any_of([Filter.by_property("symbol").equal(symbol) for _, symbol in sorted(wanted)])
        response = self.collection.query.fetch_objects(
            filters=Filter.all_of(
                [
                    Filter.by_property("path").contains_any(paths),
                    Filter.by_property("kind").contains_any(["function", "method", "class"]),
                    symbol_filter if len(wanted) > 1 else Filter.by_property("symbol").equal(next(iter(wanted))[1]),
                ]
            ),
            limit=500,
            return_properties=["text", *CHUNK_FIELDS],
        )
        parts: dict[tuple[str, str], list[Chunk]] = {}
        for obj in response.objects:
            props = dict(obj.properties)
            chunk = chunk_from_properties(str(obj.uuid), props.get("text") or "", props)
            parts.setdefault((chunk.path, chunk.symbol), []).append(chunk)
        whole: dict[tuple[str, str], Chunk] = {}
        for key, chunks in parts.items():
            chunks.sort(key=lambda c: c.start_line)
            joined = join_parts([(c.start_line, c.end_line, c.text) for c in chunks]) if len(chunks) > 1 else None
            if len(chunks) == 1:
                whole[key] = chunks[0]
            elif joined is not None:
                start, end, text = joined
                first = chunks[0]
                url = re.sub(r"#L\d+-L\d+$", f"#L{start}-L{end}", first.url) if first.url else ""
                whole[key] = first.model_copy(update={"start_line": start, "end_line": end, "text": text, "url": url})
        out = {key: whole[key] for key in wanted if key in whole}
        for key, c in out.items():
            if c.kind == "class" and c.end_line - c.start_line < CLASS_BODY_LINES:
                methods = sorted(
                    (m.start_line, m.end_line, m.text)
                    for (path, symbol), m in whole.items()
                    if path == key[0] and m.kind == "method" and symbol.rpartition(".")[0] == key[1]
                )
                if methods:
                    out[key] = c.model_copy(update={"text": class_body(c.text, methods)})
        return out

    def delete_ids(self, ids: Iterable[str]) -> int:
        from weaviate.classes.query import Filter

        ids = list(ids)
        deleted = 0
        for start in range(0, len(ids), 1000):
            group = ids[start : start + 1000]
            result = self.collection.data.delete_many(where=Filter.by_id().contains_any(group))
            if result.failed:
                raise RuntimeError(f"Weaviate failed to delete {result.failed} objects.")
            deleted += result.successful
        return deleted

    def iter_chunks(self) -> Iterator[Chunk]:
        """Every stored chunk (without vectors), in the collection's id order; for datasets and audits."""
        if not self.exists():
            return
        for obj in self.collection.iterator(include_vector=False, return_properties=["text", *CHUNK_FIELDS]):
            props = dict(obj.properties)
            yield chunk_from_properties(str(obj.uuid), props.get("text") or "", props)

    def count(self) -> int:
        if not self.exists():
            return 0
        return int(self.collection.aggregate.over_all(total_count=True).total_count or 0)

    def counts_by_kind(self) -> dict[str, int]:
        from weaviate.classes.aggregate import GroupByAggregate

        if not self.exists():
            return {}
        result = self.collection.aggregate.over_all(group_by=GroupByAggregate(prop="kind"), total_count=True)
        return {str(g.grouped_by.value): int(g.total_count or 0) for g in result.groups}

    # Queries ------------------------------------------------------------------------------------------------
    def hybrid(
        self,
        query: str,
        vector: np.ndarray | None,
        limit: int,
        alpha: float,
        kinds: Sequence[str] | None = None,
        path_prefix: str | None = None,
        properties: Sequence[str] = QUERY_PROPERTIES,
        expand: bool = True,
    ) -> list[Hit]:
        """Hybrid BM25 + dense search through LlamaIndex, with optional kind and path-prefix filters.

        `properties` and `expand` (identifier splitting of the query) exist so evaluation can run a plain BM25
        baseline (raw text only, no splitting) through the same index.
        """
        from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
        from weaviate.classes.query import Filter, HybridFusion

        # LlamaIndex's MetadataFilters have no prefix match, so the Weaviate filter is passed through.
        conditions = []
        if kinds:
            conditions.append(Filter.by_property("kind").contains_any(list(kinds)))
        if path_prefix:
            conditions.append(Filter.by_property("path").like(path_prefix.rstrip("*") + "*"))
        where = Filter.all_of(conditions) if len(conditions) > 1 else (conditions[0] if conditions else None)
        bm25_query = f"{query} {expand_identifiers(query)}".strip()
        result = self.store.query(
            VectorStoreQuery(
                query_embedding=vector.tolist() if vector is not None else None,
                query_str=bm25_query,
                similarity_top_k=limit,
                mode=VectorStoreQueryMode.HYBRID,
            ),
            filters=where,
            # alpha as a keyword: LlamaIndex turns alpha=0.0 on the query object into 0.5.
            alpha=alpha,
            query_properties=list(properties),
            # The split-identifier field is for BM25 only; not sending it back saves a third of each response.
            return_properties=RETURN_PROPERTIES,
            fusion_type=HybridFusion.RELATIVE_SCORE,
        )
        hits = []
        for node, score in zip(result.nodes, result.similarities or [], strict=False):
            chunk = node_to_chunk(node)
            dense = float(np.dot(vector, node.embedding)) if vector is not None and node.embedding else 0.0
            hits.append(Hit(chunk=chunk, score=float(score), dense=dense))
        return hits


def chunk_from_properties(chunk_id: str, text: str, props: dict[str, Any]) -> Chunk:
    """A Chunk from stored properties (LlamaIndex node metadata or a Weaviate object's properties)."""
    return Chunk(
        id=chunk_id,
        text=text,
        kind=props["kind"],
        path=props.get("path") or "",
        start_line=int(props.get("start_line") or 0),
        end_line=int(props.get("end_line") or 0),
        symbol=props.get("symbol") or "",
        corpus_version=props.get("corpus_version") or "",
        url=props.get("url") or "",
        commit=props.get("commit") or "",
        issue=int(props["issue"]) if props.get("issue") else None,
        pr=int(props["pr"]) if props.get("pr") else None,
        parent_symbol=props.get("parent_symbol") or "",
        signature=props.get("signature") or "",
        date=props.get("date") or "",
        history=list(props.get("history") or []),
    )


def node_to_chunk(node: Any) -> Chunk:
    return chunk_from_properties(node.node_id, node.get_content(), dict(node.metadata))


def pid_alive(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that process still runs."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None
