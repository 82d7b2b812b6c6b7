"""Reading response bodies safely, shared by the e-gen and aT parsers.

Bodies come from the outside world and are untrusted: XML is parsed without entity resolution,
DTDs or network access, and the format is sniffed from the bytes rather than trusted from the
request or the Content-Type (data.go.kr answers errors in XML even when JSON was asked for).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Literal

from lxml import etree

_XML_PARSER_LOCAL = threading.local()


def safe_xml_parser() -> etree.XMLParser:
    """A per-thread lxml parser (lxml parser objects must not be shared between threads).

    Never resolve entities or touch the network (the body is untrusted); allow big trees because a
    5,000-row page is several MB.
    """
    parser = getattr(_XML_PARSER_LOCAL, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            huge_tree=True,
            remove_comments=True,
            remove_pis=True,
            load_dtd=False,
            collect_ids=False,  # no xml:id lookups needed; measurably faster on 5 MB pages
        )
        _XML_PARSER_LOCAL.parser = parser
    return parser


def refuse_doctype(root: etree._Element) -> str | None:
    """Why a parsed body must be refused for declaring a DTD, or None.

    Neither API ever sends a DOCTYPE. With entity resolution off, a declared entity (billion
    laughs, an external ``SYSTEM`` entity) is not expanded but left as an entity node inside the
    item, which would silently drop the field's text: such a body is refused as a whole.
    """
    doctype = root.getroottree().docinfo.doctype
    return f"XML body declares a DTD ({doctype[:80]}); entity declarations are refused" if doctype else None


# Lone UTF-16 surrogates can only come from JSON escapes (``"\\ud800"``; XML forbids them): neither
# UTF-8 nor PostgreSQL can hold them. A cheap test on the raw body finds the pages worth scanning.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def may_hold_lone_surrogates(raw: bytes) -> bool:
    """Whether a JSON body has a surrogate escape, so its decoded text may hold a lone surrogate."""
    return _SURROGATE_ESCAPE.search(raw) is not None


def without_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, as a UTF-8 decoder treats bad input."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL can store it, for quarantine copies of bad records: NUL and lone
    surrogates are written as their escapes (``\\x00``, ``\\ud800``) instead."""
    return _UNSTORABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def first_significant_char(raw: bytes) -> str:
    """First character of the body after a BOM and whitespace ('' for an empty body)."""
    head = raw[:256]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    head = head.lstrip()
    return chr(head[0]) if head else ""


def accept_header(body_format: Literal["xml", "json"]) -> str:
    """The Accept header asking for ``body_format`` while tolerating the other one."""
    if body_format == "json":
        return "application/json, */*;q=0.5"
    return "application/xml, text/xml;q=0.9, */*;q=0.5"


def json_value_text(value: Any) -> str | None:
    """The text of a value from ``json.loads(..., parse_int=str, parse_float=str)``.

    Numbers already arrive as their JSON text (so ``37.5709958592`` keeps every digit); booleans
    and nested structures, never expected in these APIs, are kept as JSON text rather than
    dropped.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)
