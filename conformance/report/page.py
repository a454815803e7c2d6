"""The HTML page skeleton of the suite's pages: the run report (html.py) and the multi-run matrix (matrix.py).

Rules of this module (and so of every page built on it):

- A page is one self-contained file that works offline, from a CI artifact, a mail attachment or on paper: its CSS
  and its script are inline, its pictures inline SVG; nothing is fetched, embedded or linked from elsewhere.
- The Content-Security-Policy is computed here from the exact style and script text the page carries: those two
  hashes are all that may apply or run, and every fetch, image, form and base URL is refused. Markup that slipped
  through escaping stays inert, and no page can carry a stale hash. A page has one ``<style>`` and one ``<script>``
  and no other inline style or script (no ``style`` attribute, no event handler): the policy would block them.
- The page is UTF-8 and says so first in its head, so the hashes (over the UTF-8 bytes) are of what the browser
  reads.
- Everything that comes from results.json is untrusted and reaches the page only through `escape`.
- The look the pages share (colours, type, tables, the palette of the result categories) is `BASE_CSS`; a page
  adds only its own rules, which come after it and may override it.
- A page is written atomically (`write_page`): a reader never sees half a page.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# The shared look. The category palette (--pass ... --incomplete) colours the Autobahn-style result categories
# alike on both pages.
BASE_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --head: #f6f8fa; --accent: #0b4f8a;
  --pass: #1a7f37; --fail: #cf222e; --non-strict: #d4a72c; --info: #218bff; --incomplete: #8c959f; }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--line); }
a { color: var(--accent); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px; }
table { border-collapse: collapse; margin: .3rem 0 .8rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
[hidden] { display: none !important; }
"""

# Everything but the two hashes: no fetch of any kind, no image, no form target, no <base>.
_POLICY = "img-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'"


def escape(value: Any) -> str:
    """Escape any value for text or a quoted attribute; None renders as nothing."""
    return "" if value is None else html.escape(str(value), quote=True)


def _csp_hash(source: str) -> str:
    """The CSP source expression (``'sha256-...'``) that allows exactly this inline style or script text."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_page(title: str, body: str, *, css: str, script: str, meta: Mapping[str, str] | None = None) -> str:
    """A whole HTML document: ``body`` (already-rendered, escaped HTML) under a head with ``title``, the
    Content-Security-Policy, any further ``<meta name=... content=...>`` of ``meta``, and one stylesheet
    (`BASE_CSS` followed by the page's own ``css``); the page's ``script`` runs at the end of the body."""
    return "".join(page_chunks(title, [body], css=css, script=script, meta=meta))


def page_chunks(title: str, body: Iterable[str], *, css: str, script: str, meta: Mapping[str, str] | None = None
                ) -> Iterator[str]:  # fmt: skip
    """`render_page` piece by piece, the body as its chunks come: a large report is written as it is rendered
    (`write_page`), never held whole in memory (a report of 1,400 cases is 23 MB of text, and the joins of its
    parts held several copies of it at once)."""
    style = BASE_CSS + css
    for text, tag in ((style, "style"), (script, "script")):
        if f"</{tag}" in text.lower():
            raise ValueError(f"inline {tag} text must not contain '</{tag}'")
    policy = f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; {_POLICY}"
    metas = "".join(f'<meta name="{escape(name)}" content="{escape(value)}">' for name, value in (meta or {}).items())
    head = (
        '<head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{metas}<title>{escape(title)}</title><style>{style}</style></head>"
    )
    yield f'<!DOCTYPE html>\n<html lang="en">\n{head}\n<body>\n'
    yield from body
    yield f"\n<script>{script}</script>\n</body>\n</html>\n"


def write_page(path: Path, page: str | Iterable[str]) -> None:
    """Write ``page`` (the text, or its chunks in order) to ``path`` (creating its directory) through a temporary
    file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            if isinstance(page, str):
                out.write(page)
            else:
                for chunk in page:
                    out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
