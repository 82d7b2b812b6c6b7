"""Byte-exact copies of real recorded data.go.kr gateway failures.

Source: the recordings in aed_pipeline_tests/fixtures/recorded/data_go_kr_gateway/ (recorded
2026-05-16 on apis.data.go.kr by the KOSMOS project). Embedded as constants so the simulator needs no package data files.
"""

from __future__ import annotations

#: HTTP 400 ``text/html`` body answered to default curl-style user agents.
REQUEST_BLOCKED_400_BODY: bytes = (
    b'<!DOCTYPE HTML PUBLIC "-//IETF/DTD HTML 2.0//EN">\n<HTML><HEAD>\n<TITLE>400 Bad Request</TITLE>\n'
    b"</HEAD><BODY>\n<H1>Request Blocked</H1>\n</BODY></HTML>"
)
REQUEST_BLOCKED_400_HEADERS: dict[str, str] = {
    "Content-Type": "text/html",
    "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
}

#: HTTP 502 ``text/plain`` body answered when the key parameter is spelled ``ServiceKey``.
FORWARDING_502_BODY: bytes = b"Error forwarding request to backend server\n"
FORWARDING_502_HEADERS: dict[str, str] = {
    "Content-Type": "text/plain; charset=utf-8",
    "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    "X-Content-Type-Options": "nosniff",
}

#: Headers of the recorded e-gen success response (Date/Content-Length are added by the server).
EGEN_SERVER_HEADER = "Apache/2.2.22 (Red Hat Enterprise Web Server) DAV/2 mod_jk/1.2.37"
EGEN_SUCCESS_HEADERS: dict[str, str] = {
    "Content-Type": "application/xml",
    "Server": EGEN_SERVER_HEADER,
    "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
}
