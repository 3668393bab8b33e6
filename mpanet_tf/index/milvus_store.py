"""Milvus as a :class:`~mpanet_tf.index.store_interface.GalleryStore`: a gallery beyond one machine.

Locations (what ``--index`` / ``--output`` take):

- ``milvus:PATH.db``: Milvus Lite, the same engine embedded in one local folder ``PATH.db``
  (collection ``gallery``);
- ``milvus://HOST:PORT/COLLECTION``: a Milvus server or cluster; the token (``user:password`` or
  an API key) comes from the environment variable ``MPANET_MILVUS_TOKEN``, never from the command
  line.

One collection holds the gallery: ``id`` (INT64 primary key, the entry id 0, 1, 2, ...),
``embedding`` (FLOAT_VECTOR, the L2-normalised row; a float16 gallery keeps float16-rounded
values), ``camera`` and ``modality`` (VARCHAR, "" when unknown), ``time_us`` (INT64 capture time
in µs since the epoch, :data:`~mpanet_tf.data.capture_time.UNKNOWN_US` when unknown) and
``entry`` (the whole entry as JSON). The collection property ``mpanet_tf.gallery`` (JSON) keeps
what ``.mpidx``'s ``meta.json`` keeps: the model fingerprint, dim, dtype, image size, sources,
skipped images, the unfinished build, dates, and the vector index (type and parameters).

Search: Milvus' own L2 search (float32) proposes candidates under the filter expression
(:func:`filter_expression`); their exact distances are then recomputed in float64 from the stored
rows (:func:`mpanet_tf.index.exact.exact_search`), so the ranking and distances are those of
``.mpidx``. Exact mode (FLAT, or IVF_FLAT visiting every cell) asks for more candidates until
every row that can be in the top-k, ties included, is provably among them (:func:`_complete`);
``ann`` (IVF_FLAT, HNSW) re-ranks ``refine x top_k`` candidates, as ``.mpidx --ann`` does.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from mpanet_tf import __version__
from mpanet_tf.data.capture_time import UNKNOWN_US, epoch_us
from mpanet_tf.errors import ConfigError
from mpanet_tf.index.exact import exact_search, unit_rows
from mpanet_tf.index.format import DTYPES, GalleryIndexError, check_fingerprint
from mpanet_tf.index.store_interface import GalleryStore, SearchFilter, full_entry, hits_from

PREFIX = "milvus:"
TOKEN_VARIABLE = "MPANET_MILVUS_TOKEN"
LITE_COLLECTION = "gallery"
META_PROPERTY = "mpanet_tf.gallery"
FORMAT_NAME = "mpanet-tf gallery collection"
FORMAT_VERSION = 1
#: Vector index types of the collection; FLAT is exact, the others approximate (re-ranked exactly).
INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW")
#: Milvus' largest top-k (and query result window).
MAX_LIMIT = 16384
#: Bytes of vectors sent or fetched per request (below gRPC's message limit).
_REQUEST_BYTES = 32 * 2**20
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_TEXT = 65535


def is_milvus_location(location) -> bool:
    """True for ``milvus:...`` locations (anything else is an ``.mpidx`` path)."""
    return isinstance(location, str) and location.startswith(PREFIX)


@dataclass(frozen=True)
class MilvusLocation:
    """A parsed ``milvus:`` location: the client URI, the collection, the token (None: none)."""

    text: str
    uri: str
    collection: str
    token: str | None
    lite: bool


def parse_location(location: str) -> MilvusLocation:
    """``milvus:PATH.db`` or ``milvus://HOST:PORT/COLLECTION`` -> :class:`MilvusLocation`.

    Raises:
        ConfigError: any other form (one line with the two accepted ones).
    """
    forms = "use milvus:PATH.db (Milvus Lite) or milvus://HOST:PORT/COLLECTION (a server)"
    if location.startswith(PREFIX + "//"):
        address, _, collection = location[len(PREFIX) + 2:].partition("/")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not _NAME.match(collection):
            raise ConfigError(f"index location {location!r} is not milvus://HOST:PORT/COLLECTION (a collection "
                              f"name is letters, digits and _); {forms}")
        return MilvusLocation(location, f"http://{address}", collection, os.environ.get(TOKEN_VARIABLE) or None,
                              False)
    path = location[len(PREFIX):]
    if not path.endswith(".db") or path.endswith("/.db"):
        raise ConfigError(f"index location {location!r} names no Milvus Lite file ending in .db; {forms}")
    return MilvusLocation(location, os.path.abspath(os.path.expanduser(path)), LITE_COLLECTION, None, True)


def require_pymilvus(location: MilvusLocation):
    """The ``pymilvus`` module; :class:`GalleryIndexError` (one line) when the ``[milvus]`` extra is missing."""
    try:
        import pymilvus
        if location.lite:
            import milvus_lite  # noqa: F401
    except ImportError:
        raise GalleryIndexError(f"index {location.text} needs Milvus, whose client is not installed; "
                                "pip install 'mpanet-tf[milvus]' (pymilvus, milvus-lite), or pass an .mpidx "
                                "folder") from None
    return pymilvus


def _connect(location: MilvusLocation, create: bool):
    pymilvus = require_pymilvus(location)
    if location.lite and not create and not os.path.exists(location.uri):
        raise GalleryIndexError(f"Milvus Lite file {location.uri} does not exist; build it with `mpanet-tf index "
                                f"build --output {location.text}`")
    if location.lite:
        os.makedirs(os.path.dirname(location.uri), exist_ok=True)
    # Milvus Lite's gRPC server allows no keep-alive pings while idle (pymilvus pings every 10 s,
    # and the server then drops the connection: "too_many_pings" during a long embedding)
    options = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": 0} if location.lite else {}
    try:
        return pymilvus.MilvusClient(uri=location.uri, token=location.token or "", grpc_options=options)
    except pymilvus.MilvusException as error:
        raise GalleryIndexError(f"cannot connect to Milvus at {location.text} ({error.message}); check the "
                                f"address, that the server runs, and ${TOKEN_VARIABLE}") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _quoted(values) -> str:
    """A Milvus list literal of strings."""
    return "[" + ", ".join(json.dumps(str(v), ensure_ascii=False) for v in values) + "]"


def filter_expression(filters: SearchFilter | None) -> str:
    """The Milvus boolean expression selecting what :meth:`SearchFilter.mask` selects ("" = everything)."""
    if filters is None or filters.empty:
        return ""
    parts = []
    if filters.cameras is not None:
        parts.append(f"camera in {_quoted(filters.cameras)}")
    if filters.modalities is not None:
        parts.append(f"modality in {_quoted(filters.modalities)}")
    since, until = filters.time_bounds_us()
    if since is not None or until is not None:
        parts.append(f"time_us != {UNKNOWN_US}")
    if since is not None:
        parts.append(f"time_us >= {since}")
    if until is not None:
        parts.append(f"time_us <= {until}")
    return " and ".join(parts)


def index_parameters(index_type: str = "FLAT", nlist: int | None = None, hnsw_m: int | None = None,
                     ef_construction: int | None = None) -> dict:
    """The collection's vector index: ``{"type", "params"}`` (Milvus defaults where not given)."""
    index_type = str(index_type).upper()
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"unknown Milvus index {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    params = {}
    if index_type == "IVF_FLAT":
        params["nlist"] = int(nlist or 128)
    if index_type == "HNSW":
        params.update(M=int(hnsw_m or 16), efConstruction=int(ef_construction or 200))
    return {"type": index_type, "params": params}


def _chunk_rows(dim: int) -> int:
    return max(1, min(MAX_LIMIT, _REQUEST_BYTES // (4 * max(1, int(dim)))))


class MilvusStore(GalleryStore):
    """A gallery collection in Milvus (use :meth:`open` or :meth:`create`)."""

    def __init__(self, location: MilvusLocation, client, meta: dict, writable: bool):
        self.location, self._where, self.client, self.writable = location.text, location, client, writable
        self.collection = location.collection
        self._set_meta(meta)

    def _set_meta(self, meta: dict) -> None:
        self.meta = meta
        self.fingerprint = meta["model"]["fingerprint"]
        self.dim, self.dtype = int(meta["dim"]), meta["dtype"]
        size = meta["embedding"].get("image_size")
        self.image_size = tuple(size) if size else None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str, writable: bool = False, allow_pending: bool = False,
             missing_ok: bool = False) -> "MilvusStore | None":
        """Connect and check the collection (None when it does not exist and ``missing_ok``).

        Raises:
            GalleryIndexError: unreachable, no such collection, a collection not written by
                mpanet-tf, a newer format, or (unless ``allow_pending``) an unfinished build.
        """
        where = parse_location(location)
        client = _connect(where, create=missing_ok)
        if not client.has_collection(where.collection):
            client.close()
            if missing_ok:
                return None
            raise GalleryIndexError(f"{location} holds no gallery collection {where.collection!r}; build one with "
                                    f"`mpanet-tf index build --output {location}`")
        description = client.describe_collection(where.collection)
        try:
            meta = json.loads(description.get("properties", {}).get(META_PROPERTY, ""))
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            client.close()
            raise GalleryIndexError(f"collection {where.collection!r} of {location} is not a gallery of mpanet-tf "
                                    f"(no {META_PROPERTY} property); pass a collection written by "
                                    "`mpanet-tf index build`, or another collection name")
        if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
            client.close()
            raise GalleryIndexError(f"gallery {location} has format version {meta.get('format_version')!r}, this "
                                    f"mpanet-tf reads 1..{FORMAT_VERSION}; upgrade mpanet-tf")
        if meta.get("pending") and not allow_pending:
            client.close()
            raise GalleryIndexError(f"gallery {location} is an unfinished `index {meta['pending'].get('command')}`; "
                                    "re-run the same command to finish it")
        client.load_collection(where.collection)
        return cls(where, client, meta, writable)

    @classmethod
    def create(cls, location: str, fingerprint: str, dim: int, dtype: str = "float32", image_size=None,
               model: dict | None = None, index: dict | None = None, extra: dict | None = None) -> "MilvusStore":
        """Create an empty gallery collection at ``location`` (refused when one exists)."""
        from pymilvus import DataType, MilvusClient

        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        where = parse_location(location)
        client = _connect(where, create=True)
        if client.has_collection(where.collection):
            client.close()
            raise GalleryIndexError(f"{location} already holds a collection {where.collection!r}; choose another")
        index = index or index_parameters()
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "dim": int(dim), "dtype": dtype,
                "model": {"kind": None, "source": None, **(model or {}), "fingerprint": fingerprint},
                "embedding": {"image_size": list(image_size) if image_size else None, "dim": int(dim), "dtype": dtype,
                              "normalization": "l2", "distance": "euclidean", "mpanet_tf_version": __version__},
                "index": index, "sources": [], "skipped": [], "pending": None, "created": _now(), "updated": _now(),
                **(extra or {})}
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=int(dim))
        schema.add_field("camera", DataType.VARCHAR, max_length=1024)
        schema.add_field("modality", DataType.VARCHAR, max_length=16)
        schema.add_field("time_us", DataType.INT64)
        schema.add_field("entry", DataType.VARCHAR, max_length=_TEXT)
        params = client.prepare_index_params()
        # pymilvus 3 sends the build parameters flat; Milvus Lite 3.2 reads them from a nested "params"
        build = {**index["params"], "params": dict(index["params"])} if where.lite and index["params"] else index["params"]
        params.add_index("embedding", index_type=index["type"], metric_type="L2", params=build)
        # the property is set with the collection, so an interrupted creation leaves no foreign collection
        client.create_collection(where.collection, schema=schema, index_params=params,
                                 properties={META_PROPERTY: json.dumps(meta)})
        client.load_collection(where.collection)
        return cls(where, client, meta, writable=True)

    def write_meta(self, **changes) -> None:
        """Update the collection's ``mpanet_tf.gallery`` property."""
        meta = {**self.meta, **changes, "updated": _now()}
        self.client.alter_collection_properties(self.collection, properties={META_PROPERTY: json.dumps(meta)})
        self._set_meta(meta)

    # ------------------------------------------------------------------ the interface
    def count(self) -> int:
        result = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def check_model(self, fingerprint: str, model_name) -> None:
        check_fingerprint(f"gallery {self.location}", self.meta["model"], fingerprint, model_name)

    def add(self, rows: np.ndarray, entries: list[dict]) -> list[int]:
        if not self.writable:
            raise ValueError(f"{self.location} was opened read-only; open_store(..., writable=True) to add")
        rows = np.asarray(rows)
        if len(rows) != len(entries):
            raise ValueError(f"{len(rows)} rows need as many entries, got {len(entries)}")
        if len(rows) and rows.shape[1] != self.dim:
            raise GalleryIndexError(f"the model gives {rows.shape[1]}-d embeddings but gallery {self.location} "
                                    f"holds {self.dim}-d ones; pass the gallery's model")
        stored = rows.astype(self.dtype).astype(np.float32)  # float16 galleries keep float16 values
        first = self.count()
        records = []
        for offset, (row, entry) in enumerate(zip(stored, entries)):
            entry = full_entry(entry)
            records.append({"id": first + offset, "embedding": row, "camera": _label(entry["camera"]),
                            "modality": entry["modality"] or "", "time_us": epoch_us(entry["time"]),
                            "entry": json.dumps(entry, sort_keys=True, ensure_ascii=False)})
        step = _chunk_rows(self.dim)
        for start in range(0, len(records), step):
            self.client.insert(self.collection, records[start:start + step])
        if records:
            self.client.flush(self.collection)
        return list(range(first, first + len(records)))

    def _fetch(self, ids, fields) -> dict[int, dict]:
        """{id: record} of ``ids`` with ``fields``, a request per chunk."""
        ids = [int(i) for i in ids]
        step = _chunk_rows(self.dim) if "embedding" in fields else MAX_LIMIT
        found = {}
        for start in range(0, len(ids), step):
            for record in self.client.get(self.collection, ids=ids[start:start + step], output_fields=fields):
                found[int(record["id"])] = record
        return found

    def _range(self, start: int, stop: int, fields) -> list[dict]:
        """Records of ids start..stop-1 in id order."""
        step = _chunk_rows(self.dim) if "embedding" in fields else MAX_LIMIT
        records = []
        for low in range(start, stop, step):
            high = min(stop, low + step)
            part = self.client.query(self.collection, filter=f"id >= {low} and id < {high}", output_fields=fields,
                                     limit=high - low)
            records += sorted(part, key=lambda r: int(r["id"]))
        return records

    def entry(self, entry_id: int) -> dict | None:
        record = self._fetch([entry_id], ["entry"]).get(int(entry_id))
        return None if record is None else json.loads(record["entry"])

    def entries(self) -> list[dict]:
        return [json.loads(r["entry"]) for r in self._range(0, self.count(), ["entry"])]

    def sources(self) -> list[dict]:
        return list(self.meta.get("sources", []))

    def rows(self, start: int, stop: int) -> np.ndarray:
        records = self._range(int(start), int(stop), ["embedding"])
        return np.array([r["embedding"] for r in records], dtype=np.float32).reshape(len(records), self.dim)

    def _search_params(self, ann: bool, nprobe: int | None, limit: int) -> dict:
        index = self.meta["index"]
        if index["type"] == "IVF_FLAT":
            nlist = int(index["params"]["nlist"])
            return {"params": {"nprobe": int(min(nlist, nprobe or max(1, nlist // 8))) if ann else nlist}}
        if index["type"] == "HNSW":
            return {"params": {"ef": int(max(limit, nprobe or 64))}}
        return {"params": {}}

    def _candidates(self, queries32: np.ndarray, limit: int, expression: str, params: dict):
        """Milvus' (ids, squared float32 distances) lists per query, best first.

        Milvus Lite gets one query per request: it holds a copy of the searched vectors per query
        of a request until the request ends (a 20-query request over 2,000 x 14,336 rows peaked at
        +2.1 GB, one query at +0.15 GB; benchmarks/RESULTS.md). A server gets them all at once.
        """
        step = 1 if self._where.lite else max(1, len(queries32))
        results = []
        for start in range(0, len(queries32), step):
            results += self.client.search(self.collection, data=list(queries32[start:start + step]), limit=int(limit),
                                          filter=expression, anns_field="embedding", search_params=params,
                                          output_fields=[])
        return [(np.array([h["id"] for h in hits], np.int64), np.array([h["distance"] for h in hits], np.float64))
                for hits in results]

    def _slack(self) -> float:
        """Bound on |Milvus' float32 squared distance - the exact one| for unit vectors (|q.g| summed in
        float32 over ``dim`` terms, plus the query's rounding to float32), doubled."""
        return 2.0 * (2.0 * (self.dim + 2) * 2.0**-24)

    def _complete(self, ids: np.ndarray, squared: np.ndarray, k: int, limit: int) -> np.ndarray | None:
        """The candidates that can be in the exact top-``k`` (ties included), or None if more are needed.

        Every true top-k row (and any row tied with the k-th) has a Milvus distance within
        :meth:`_slack` of the k-th Milvus distance; when Milvus returned fewer than ``limit`` rows
        (all that match) or its last one lies beyond that window, nothing outside is missing.
        """
        if len(ids) <= k or len(ids) < limit:
            return ids
        window = squared[k - 1] + self._slack()
        if squared[-1] > window:
            return ids[squared <= window]
        return None

    def search(self, queries: np.ndarray, top_k: int = 10, filters: SearchFilter | None = None,
               ann: bool = False, nprobe: int | None = None, refine: int = 4) -> list:
        queries = np.asarray(queries).reshape(-1, np.shape(queries)[-1])
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries are {queries.shape[1]}-d but gallery {self.location} holds {self.dim}-d rows")
        if not ann and self.meta["index"]["type"] == "HNSW":
            raise GalleryIndexError(f"gallery {self.location} has an HNSW index, which cannot search exactly; "
                                    "search it with --ann, or build the gallery with --milvus-index FLAT or IVF_FLAT")
        k = max(1, int(top_k))
        queries32 = unit_rows(queries).astype(np.float32)
        expression = filter_expression(filters)
        wanted = [None] * len(queries)
        limit = min(MAX_LIMIT, refine * k if ann else max(2 * k, k + 32))
        todo = list(range(len(queries)))
        while todo:
            found = self._candidates(queries32[todo], limit, expression, self._search_params(ann, nprobe, limit))
            still = []
            for q, (ids, squared) in zip(todo, found):
                wanted[q] = ids if ann else self._complete(ids, squared, k, limit)
                if wanted[q] is None and limit < MAX_LIMIT:
                    still.append(q)
                elif wanted[q] is None:
                    warnings.warn(f"over {MAX_LIMIT} gallery rows lie within float32 rounding of the {k}-th match; "
                                  "the ranking is exact among Milvus' first ones only")
                    wanted[q] = ids
            todo, limit = still, min(MAX_LIMIT, limit * 4)
        vectors = self._fetch(sorted(set(np.concatenate(wanted).tolist())) if wanted else [], ["embedding"])
        order = np.full((len(queries), k), -1, np.int64)
        distances = np.full((len(queries), k), np.inf, np.float32)
        for q, ids in enumerate(wanted):
            ids = np.unique(ids)  # sorted: the smaller entry id breaks ties, as in .mpidx
            if not len(ids):
                continue
            rows = np.array([vectors[int(i)]["embedding"] for i in ids], dtype=np.float32)
            best, dist = exact_search(queries[q], rows, top_k=k)
            order[q, :best.shape[1]], distances[q, :best.shape[1]] = ids[best[0]], dist[0]
        records = self._fetch(sorted({int(i) for i in order.ravel() if i >= 0}), ["entry"])
        return hits_from(order, distances, lambda i: json.loads(records[i]["entry"]))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _label(camera) -> str:
    return "" if camera is None else str(camera)
