"""Gleaner plugin SDK for Python, on componentize-py.

A Pythonic view of the batches the host sends (events with `body`,
`timestamp` and `fields`), a builder for the batch you return, host
logging and counters, and one call that turns your class into the
component's exports:

    import gleaner_sdk as gl

    class Upper(gl.Processor):
        def __init__(self, config):          # the pipeline's `config:` as a dict
            self.field = config.get("field", "upper")

        def process(self, batch):            # a gl.Batch
            out = batch.builder()            # tags pass through
            key = out.key(self.field)
            for e in batch:
                out.push(e.timestamp, e.body, e.fields)
                out.field(key, e.body.decode("utf-8", "replace").upper())
            return out

    WitWorld = gl.export_processor(Upper)

Build with `gleaner plugin build` (or `componentize-py -d wit -w processor
componentize app -p . -o plugin.wasm`). Raising an exception in
`__init__` refuses the config; in `process` it fails the batch (the
host applies the pipeline's `on_error` policy). A flusher subclasses
`gl.Flusher`, implements `flush(batch)` and raises `gl.Retry` or
`gl.Reject`; export it with `gl.export_flusher`.
"""

import json

from componentize_py_types import Err
from wit_world.imports import host, types

__all__ = [
    "Batch",
    "Builder",
    "Event",
    "Flusher",
    "Processor",
    "Reject",
    "Retry",
    "counter",
    "export_flusher",
    "export_processor",
    "log",
]


class Event:
    """One event: `timestamp` (ns since the epoch), `body` (bytes) and
    `fields` (a list of (name, value) pairs, values as str)."""

    __slots__ = ("timestamp", "body", "fields")

    def __init__(self, timestamp, body, fields):
        self.timestamp = timestamp
        self.body = body
        self.fields = fields

    def text(self):
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def field(self, name, default=None):
        """The value of field `name`, or `default`."""
        for k, v in self.fields:
            if k == name:
                return v
        return default


class Batch:
    """A batch from the host: iterate it for events; `tags` is a dict."""

    def __init__(self, raw):
        self._raw = raw
        self.tags = dict(raw.tags)

    def __len__(self):
        return len(self._raw.timestamps)

    def __iter__(self):
        raw = self._raw
        bodies, ends, ts = raw.bodies, raw.body_ends, raw.timestamps
        keys, values = raw.keys, raw.values
        fields = raw.fields
        nf = len(fields)
        f = 0
        start = 0
        for i, end in enumerate(ends):
            own = []
            # Fields come in event order.
            while f < nf and fields[f].event == i:
                fd = fields[f]
                own.append((keys[fd.key], values[fd.start : fd.start + fd.len].decode("utf-8", "replace")))
                f += 1
            yield Event(ts[i], bodies[start:end], own)
            start = end

    def builder(self):
        """An empty output batch with this batch's tags."""
        return Builder(self._raw.tags)


class Builder:
    """The batch a processor returns: `push` events, add `field`s."""

    def __init__(self, tags=()):
        self._tags = list(tags)
        self._timestamps = []
        self._bodies = bytearray()
        self._ends = []
        self._keys = []
        self._key_index = {}
        self._values = bytearray()
        self._fields = []

    def __len__(self):
        return len(self._timestamps)

    def key(self, name):
        """The index of field name `name` (intern it once, reuse it)."""
        k = self._key_index.get(name)
        if k is None:
            k = len(self._keys)
            self._keys.append(name)
            self._key_index[name] = k
        return k

    def push(self, timestamp, body, fields=()):
        """Adds an event (`body` as bytes or str) with (name, value) fields."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._timestamps.append(timestamp)
        self._bodies += body
        self._ends.append(len(self._bodies))
        for name, value in fields:
            self.field(name, value)

    def field(self, key, value):
        """Adds a field to the last event; `key` is a name or a `key()` index."""
        if not self._timestamps:
            return
        if isinstance(key, str):
            key = self.key(key)
        if isinstance(value, str):
            value = value.encode("utf-8")
        start = len(self._values)
        self._values += value
        self._fields.append(types.Field(len(self._timestamps) - 1, key, start, len(value)))

    def set_tag(self, name, value):
        """Adds or replaces a batch tag."""
        self._tags = [(k, v) for k, v in self._tags if k != name] + [(name, value)]

    def build(self):
        """The WIT batch (called for you when `process` returns a Builder)."""
        return types.Batch(
            self._tags,
            self._timestamps,
            bytes(self._bodies),
            self._ends,
            self._keys,
            bytes(self._values),
            self._fields,
        )


class Processor:
    """Subclass it: `__init__(self, config)` and `process(self, batch)`,
    which returns a Builder (or a list of Events)."""

    def __init__(self, config):
        self.config = config

    def process(self, batch):
        raise NotImplementedError


class Flusher:
    """Subclass it: `__init__(self, config)` and `flush(self, batch)`."""

    def __init__(self, config):
        self.config = config

    def flush(self, batch):
        raise NotImplementedError


class Retry(Exception):
    """Raised by a flusher: a transient failure, retried with backoff."""


class Reject(Exception):
    """Raised by a flusher: the destination refused the batch for good."""


_LEVELS = {
    "trace": types.Level.TRACE,
    "debug": types.Level.DEBUG,
    "info": types.Level.INFO,
    "warn": types.Level.WARN,
    "error": types.Level.ERROR,
}


def log(level, message):
    """Writes to the host's log (`level`: trace, debug, info, warn, error)."""
    host.log(_LEVELS[level], message)


def counter(name, delta=1):
    """Adds to the plugin counter `name` (exported by the host)."""
    host.counter_add(name, delta)


def _config(text):
    value = json.loads(text) if text else {}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError("the config must be a mapping")
    return value


def _message(e):
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _Exports:
    """`init`, shared by both worlds: builds the plugin from its config
    (kept per class, since componentize-py may make a new exports object
    per call)."""

    _state = {}
    _cls = None

    def init(self, config):
        try:
            self._state["plugin"] = self._cls(_config(config))
        except Exception as e:
            raise Err(_message(e))


def export_processor(cls):
    """The `WitWorld` class componentize-py exports, running `cls`."""
    state = {}

    class WitWorld(_Exports):
        _state = state
        _cls = cls

        def process(self, input):
            try:
                out = state["plugin"].process(Batch(input))
            except Err:
                raise
            except Exception as e:
                raise Err(_message(e))
            if isinstance(out, Builder):
                return out.build()
            if isinstance(out, types.Batch):
                return out
            b = Builder(input.tags)
            for e in out:
                b.push(e.timestamp, e.body, e.fields)
            return b.build()

    return WitWorld


def export_flusher(cls):
    """The `WitWorld` class componentize-py exports, running `cls`."""
    state = {}

    class WitWorld(_Exports):
        _state = state
        _cls = cls

        def flush(self, input):
            try:
                state["plugin"].flush(Batch(input))
            except Retry as e:
                raise Err(types.FlushError_Retryable(_message(e)))
            except Reject as e:
                raise Err(types.FlushError_Rejected(_message(e)))
            except Err:
                raise
            except Exception as e:
                raise Err(types.FlushError_Retryable(_message(e)))

    return WitWorld
