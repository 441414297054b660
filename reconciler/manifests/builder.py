"""One YAML document's parser events -> plain JSON-like data, and where every node of it is.

Called by :mod:`reconciler.manifests.yamlevents` for each document of a manifest file. Each
kind of parser event has its own small handler (see ``DocumentBuilder._handlers``); a handler
that completes a node hands it to :meth:`DocumentBuilder._attach`, which puts it into its
parent: the document root, a list, or a mapping (as a key, or as the value of the last key).

Scalars are resolved here, by the YAML 1.2 core schema that editors follow (see
:mod:`.scalars`: ``yes`` and ``1:30`` are text, ``1e3`` a float), not by PyYAML's YAML 1.1.
What PyYAML's safe loader quietly accepts is refused here: duplicate keys in a mapping, tags
other than the plain JSON types, recursive aliases; hostile input stops early at the
:class:`~reconciler.manifests.documents.Limits` (nesting depth, alias expansion, nodes per
document). A problem that spoils the document raises :class:`DocumentAbort`; any other
problem is recorded and the document goes on. Positions are recorded only when ``track`` is on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from yaml import events as ev

from reconciler.manifests import scalars
from reconciler.manifests.documents import Limits, Positions
from reconciler.manifests.problems import Anchor, Finding, Path
from reconciler.manifests.quoting import quote, quote_key

TAG = scalars.TAG
_STR = TAG + "str"
_MERGE = TAG + "merge"
_TIMESTAMP = TAG + "timestamp"
_SCALAR_TAGS = {TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_COLLECTION_TAGS = {None, "!", TAG + "map", TAG + "seq"}


class _Merge:
    """Marker for the ``<<`` merge key."""


_MERGE_KEY = _Merge()
_BAD_KEY = object()  # a key we reported and whose value is dropped
_END = object()  # what the handler of the document's end returns (the others: None)


class DocumentAbort(Exception):
    """Raised inside a document that cannot be loaded; the rest of the file goes on."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@dataclass(slots=True)
class _Frame:
    """A mapping or sequence under construction (or the document root)."""

    container: Any
    is_map: bool
    path: Path
    mark: Any  # where it starts; None for the document root
    anchor: Any
    key: Any = None  # None: the next node is a key (maps only)
    key_mark: Any = None
    size: int = 1
    merges: list[dict] | None = None


def short_tag(tag: str) -> str:
    """A tag as people write it: ``!!python/object`` rather than its full URI."""
    return "!!" + tag[len(TAG) :] if tag.startswith(TAG) else tag


class DocumentBuilder:
    """Builds the documents of one file from the parser's events, one document at a time.

    ``findings`` is where recorded (not aborting) problems go, in the order they are met.
    """

    def __init__(self, display: str, limits: Limits, track: bool, findings: list[Finding]) -> None:
        self.display = display
        self.limits = limits
        self.track = track
        self.findings = findings
        self._max_nodes = limits.max_nodes
        self._handlers: dict[type, Callable[[Any], Any]] = {
            ev.ScalarEvent: self._on_scalar,
            ev.MappingStartEvent: self._on_start,
            ev.SequenceStartEvent: self._on_start,
            ev.MappingEndEvent: self._on_end,
            ev.SequenceEndEvent: self._on_end,
            ev.AliasEvent: self._on_alias,
            ev.DocumentEndEvent: self._on_document_end,
        }
        self._begin(0, {})

    def build(self, get_event: Callable[[], Any], doc_index: int, positions: Positions) -> Any:
        """Consume one document's events, up to its end: (its data or None, its first line).

        ``positions`` receives the position of every node when tracking.
        """
        self._begin(doc_index, positions)
        handlers = self._handlers
        while True:
            event = get_event()
            handler = handlers.get(event.__class__)  # None: no other events inside a document
            if handler is not None and handler(event) is _END:
                root = self.root.container
                return (root[0] if root else None), self.first_line

    def _begin(self, doc_index: int, positions: Positions) -> None:
        self.doc_index = doc_index
        self.positions = positions
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.root = _Frame([], False, (), None, None)
        self.stack = [self.root]
        self.alias_nodes = 0
        self.first_line = 0

    # -- one handler per kind of event -------------------------------------------------------
    def _on_scalar(self, event: Any) -> None:
        tag = event.tag
        text = event.value
        if tag is None or tag == "!":
            if event.implicit[0]:  # plain and untagged: the YAML 1.2 core schema decides
                value = self._plain(text, event)
                key_text: Any = _MERGE_KEY if text == "<<" else text
            else:  # quoted, or the non-specific tag "!"
                value = key_text = text
        else:
            value = text if tag == _STR else self._construct(tag, text, event)
            key_text = _MERGE_KEY if tag == _MERGE and not event.style else text
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)
        self._attach(value, 1, key_text, event.start_mark)

    def _on_start(self, event: Any) -> None:
        parent = self.stack[-1]
        if event.tag not in _COLLECTION_TAGS:
            self._abort(
                parent,
                f"the tag {short_tag(event.tag)} is not allowed in manifests; "
                "only plain mappings, lists and scalars are",
                event.start_mark,
                "yaml-tag",
            )
        max_depth = self.limits.max_depth
        if len(self.stack) > max_depth:
            self._abort(
                parent,
                f"nesting deeper than {max_depth} levels; manifests do not need such depth",
                event.start_mark,
                "yaml-limit",
            )
        is_map = event.__class__ is ev.MappingStartEvent
        path = self._child_path(parent) if self.track else ()
        self.stack.append(
            _Frame({} if is_map else [], is_map, path, event.start_mark, event.anchor)
        )
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)

    def _on_end(self, event: Any) -> None:
        frame = self.stack.pop()
        container = frame.container
        if frame.merges:
            for merged in frame.merges:
                for k, v in merged.items():
                    container.setdefault(k, v)
        anchor = frame.anchor
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.anchors[anchor] = (container, frame.size)
        self._attach(container, frame.size, None, frame.mark)

    def _on_alias(self, event: Any) -> None:
        name = event.anchor
        parent = self.stack[-1]
        if name in self.open_anchors:
            self._abort(
                parent,
                f"the alias *{name} refers to a node that contains it; "
                "recursive structures are not allowed",
                event.start_mark,
                "yaml-syntax",
            )
        if name not in self.anchors:
            self._abort(
                parent,
                f"the alias *{name} has no anchor &{name} before it in this document "
                "(anchors do not carry over from one --- document to the next)",
                event.start_mark,
                "yaml-syntax",
            )
        value, size = self.anchors[name]
        self.alias_nodes += size
        if self.alias_nodes > self.limits.max_alias_nodes:
            self._abort(
                parent,
                f"aliases expand this document beyond {self.limits.max_alias_nodes} "
                'nodes (a "billion laughs" file?); write the values out instead',
                event.start_mark,
                "yaml-limit",
            )
        self._attach(value, size, value if isinstance(value, str) else None, event.start_mark)

    def _on_document_end(self, event: Any) -> object:
        return _END

    # -- putting a completed node into its parent -------------------------------------------
    def _attach(self, value: Any, size: int, key_text: Any, mark: Any) -> None:
        parent = self.stack[-1]
        parent.size += size
        if parent.size > self._max_nodes:
            self._abort(
                parent,
                f"the document holds more than {self.limits.max_nodes:,} values; split it "
                "into several documents or use an AssetSet",
                mark,
                "yaml-limit",
            )
        if parent is self.root:
            self._attach_root(value, mark)
        elif not parent.is_map:
            self._attach_item(parent, value, mark)
        elif parent.key is None:
            self._take_key(parent, key_text, mark)
        else:
            self._attach_value(parent, value, mark)

    def _attach_root(self, value: Any, mark: Any) -> None:
        line, col = mark.line + 1, mark.column + 1
        self.first_line = line
        self.root.container.append(value)
        if self.track:
            self.positions[()] = (line, col, line, col)

    def _attach_item(self, parent: _Frame, value: Any, mark: Any) -> None:
        if self.track:
            line, col = mark.line + 1, mark.column + 1
            self.positions[(*parent.path, len(parent.container))] = (line, col, line, col)
        parent.container.append(value)

    def _take_key(self, parent: _Frame, key_text: Any, mark: Any) -> None:
        if key_text is None:
            self._finding(
                parent.path,
                "a mapping key must be a plain value, not a mapping or a list",
                "yaml-syntax",
                mark,
            )
            parent.key = _BAD_KEY
        else:
            parent.key = key_text
        parent.key_mark = mark

    def _attach_value(self, parent: _Frame, value: Any, mark: Any) -> None:
        key = parent.key
        parent.key = None
        if key is _BAD_KEY:
            return
        if key is _MERGE_KEY:
            self._merge(parent, value, mark)
            return
        container = parent.container
        if key in container:
            self._duplicate(parent, key, mark)
            return
        if self.track:
            km = parent.key_mark
            where = (km.line + 1, km.column + 1, mark.line + 1, mark.column + 1)
            self.positions[(*parent.path, key)] = where
        container[key] = value

    def _duplicate(self, parent: _Frame, key: str, mark: Any) -> None:
        if not self.track:  # the fast pass only notices; the tracking pass says where
            self._finding(parent.path, "duplicate key", "yaml-duplicate-key", mark)
            return
        child = (*parent.path, key)
        first = self.positions.get(child)
        where = f" (first at line {first[0]})" if first else ""
        self._finding(
            child,
            f"duplicate key {quote_key(key)} in this mapping{where}; YAML "
            "would keep only one of them silently: remove or rename one",
            "yaml-duplicate-key",
            parent.key_mark,
            anchor="key",
        )

    def _merge(self, frame: _Frame, value: Any, mark: Any) -> None:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(s, dict) for s in sources):
            self._finding(
                frame.path,
                "the merge key << takes a mapping or a list of mappings",
                "yaml-syntax",
                mark,
            )
            return
        if frame.merges is None:
            frame.merges = []
        frame.merges.extend(sources)

    # -- helpers -----------------------------------------------------------------------------
    def _child_path(self, parent: _Frame) -> Path:
        if parent.mark is None:  # the document root
            return ()
        if parent.is_map:
            key = parent.key
            return (*parent.path, key) if isinstance(key, str) else parent.path
        return (*parent.path, len(parent.container))

    def _plain(self, text: str, event: Any) -> Any:
        """The value of an untagged plain scalar (see :func:`scalars.plain`)."""
        try:
            value = scalars.plain(text)
        except ValueError:  # a decimal too long for Python to convert
            self._abort(
                self.stack[-1],
                f"{quote(text)} is not a number a manifest can hold (too many digits)",
                event.start_mark,
                "yaml-tag",
            )
        if value.__class__ is float and not math.isfinite(value):
            self._not_finite(text, event)
        return value

    def _construct(self, tag: str, text: str, event: Any) -> Any:
        """The value of a scalar with an explicit tag other than ``!!str``."""
        if tag in (_MERGE, _TIMESTAMP):
            return text
        parent = self.stack[-1]
        if tag not in _SCALAR_TAGS:
            self._abort(
                parent,
                f"the tag {short_tag(tag)} is not allowed in manifests; only plain "
                "strings, numbers, booleans and null are",
                event.start_mark,
                "yaml-tag",
            )
        try:
            value = scalars.tagged(tag, text)
        except ValueError:
            self._abort(
                parent,
                f"{quote(text)} is not a valid {tag.rsplit(':', 1)[-1]}",
                event.start_mark,
                "yaml-tag",
            )
        if isinstance(value, float) and not math.isfinite(value):
            self._not_finite(text, event)
        return value

    def _not_finite(self, text: str, event: Any) -> NoReturn:
        self._abort(
            self.stack[-1],
            f"{quote(text)} is not a number a manifest can hold (no NaN or infinity)",
            event.start_mark,
            "yaml-tag",
        )

    def _finding(
        self, path: Path, message: str, error: str, mark: Any, anchor: Anchor = "value"
    ) -> None:
        self.findings.append(
            Finding(
                self.display,
                self.doc_index,
                path,
                message,
                error,
                anchor=anchor,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        )

    def _abort(self, frame: _Frame, message: str, mark: Any, error: str) -> NoReturn:
        raise DocumentAbort(
            Finding(
                self.display,
                self.doc_index,
                self._child_path(frame) if self.track else (),
                message,
                error,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        )
