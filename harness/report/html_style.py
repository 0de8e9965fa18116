"""The look of the HTML matrix report: its one inline stylesheet and the escaping every piece of text goes through.

Shared by ``html`` (the page) and ``html_svg`` (the plots); nothing here reads report data.
"""

from __future__ import annotations

import html
import re
from typing import Any

from harness.verdict import CellStatus

__all__ = ["CSS", "escape", "status_class", "badge"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9; --incompatible:#7d5b00;
  --incompatible-bg:#fff5c2; --error:#8250df; --error-bg:#fbefff; --ink:#1f2328; --muted:#59636e;
  --line:#d1d9e0; --panel:#f6f8fa; --bar:#3b6fd8; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 6px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line);
  display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h3 { font-size: 16px; margin: 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h4 { font-size: 13px; margin: 16px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
h2 code, h3 code { font-size: 0.92em; }
.nowrap { white-space: nowrap; }
pre.wrap { white-space: pre-wrap; word-break: break-word; }
.meta { color: var(--muted); margin: 2px 0; }
.meta code { color: var(--ink); }
.chips { display: flex; gap: 8px; margin: 12px 0 0; flex-wrap: wrap; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600;
  letter-spacing: .03em; text-transform: uppercase; border: 1px solid currentColor; white-space: nowrap; }
.s-pass { color: var(--pass); background: var(--pass-bg); }
.s-fail { color: var(--fail); background: var(--fail-bg); }
.s-incompatible { color: var(--incompatible); background: var(--incompatible-bg); }
.s-run-failed, .s-install-failed, .s-error { color: var(--error); background: var(--error-bg); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; font-family: ui-monospace, SFMono-Regular,
  Menlo, Consolas, monospace; font-size: 12.5px; }
td.val { overflow-wrap: anywhere; word-break: break-word; max-width: 560px; font-family: ui-monospace,
  SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
table.overview td.verdict { text-align: center; min-width: 150px; }
table.overview td.verdict .big { display: block; font-weight: 700; text-transform: uppercase; font-size: 12px; }
table.overview td.verdict .small { display: block; font-size: 12px; font-variant-numeric: tabular-nums; }
table.overview td.reason { font-size: 12.5px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
section.cell { margin-top: 28px; }
.callout { border-left: 4px solid currentColor; padding: 8px 14px; margin: 10px 0; border-radius: 4px; }
.callout pre { margin: 0; white-space: pre-wrap; word-break: break-word; color: var(--ink);
  font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px 12px; margin: 14px 0; }
.card.s-pass, .card.s-fail, .card.s-incompatible, .card.s-error { background: #fff; color: var(--ink);
  border-left-width: 5px; }
.card.s-pass { border-left-color: var(--pass); }
.card.s-fail { border-left-color: var(--fail); }
.card.s-incompatible { border-left-color: var(--incompatible); }
.card.s-error { border-left-color: var(--error); }
.card h3 small { color: var(--muted); font-weight: 400; font-size: 13px; }
.grid { display: grid; grid-template-columns: 540px minmax(0, 1fr); gap: 24px; margin-top: 10px; }
@media (max-width: 1000px) { .grid { grid-template-columns: minmax(0, 1fr); } }
figure { margin: 0; }
svg.sparkline { display: block; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 2px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
dl.metrics { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.metrics dt { color: var(--muted); }
dl.metrics dd { margin: 0; font-variant-numeric: tabular-nums; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, monospace; font-size: 12.5px; }
.bars { margin-top: 4px; }
.bar-row { display: grid; grid-template-columns: 150px minmax(0, 1fr) 74px; gap: 10px; align-items: center;
  margin: 5px 0; }
.bar-label { color: var(--muted); font-size: 12.5px; }
.bar-track { position: relative; height: 12px; background: #eaeef2; border-radius: 6px; }
.bar-fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 6px; background: var(--bar); }
.bar-fill.ok { background: var(--pass); }
.bar-fill.bad { background: var(--fail); }
.bar-limit { position: absolute; top: -3px; bottom: -3px; width: 2px; background: var(--ink); }
.bar-value { font-variant-numeric: tabular-nums; text-align: right; font-size: 12.5px; }
.checks td.res-pass { color: var(--pass); font-weight: 600; }
.checks td.res-fail { color: var(--fail); font-weight: 600; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0; }
.order-note { max-width: 60ch; }
.would-pass { font-size: 13px; margin: 6px 0; }
details { margin: 10px 0; }
details summary { cursor: pointer; color: var(--muted); font-weight: 600; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
"""



def escape(value: Any) -> str:
    """Escaped text; control characters (terminal colour codes in a pip log) shown as ``\\xNN``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))
    return html.escape(text, quote=True)


def status_class(status: Any) -> str:
    """The CSS class of a cell's or model's status (``s-pass``, ``s-run-failed``, ...)."""
    return "s-" + CellStatus.parse(status).value


def badge(status: Any) -> str:
    """A status as a coloured pill."""
    word = CellStatus.parse(status).value
    return f'<span class="badge {status_class(word)}">{escape(word)}</span>'
