"""What the sandbox's views share: reading a JSON body or a flag, and the sandbox's HTML pages."""

from __future__ import annotations

import html
import json
from typing import Any

from flask import Response, request

from ..errors import bad_request

HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - companion Zoom sandbox</title></head>
<body><p><strong>companion Zoom sandbox - this is not Zoom.</strong></p>
<h1>{title}</h1><p>{text}</p></body></html>
"""


def html_page(title: str, text: str, status: int = 200) -> Response:
    body = HTML_PAGE.format(title=html.escape(title), text=html.escape(text))
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def json_body(*, required: bool = True) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise bad_request("Request Body should be a valid JSON object.")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Request Body should be a valid JSON object.") from None


def bool_arg(name: str) -> bool:
    return str(request.args.get(name, "")).lower() in ("1", "true", "yes")
