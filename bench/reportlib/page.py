"""A small document model, written once as Markdown and once as HTML.

The report and the comparison build a list of blocks (headings, paragraphs,
bullet lists, tables, figures, the colour key); write_md and write_html turn
it into report.md and a self-contained report.html: no scripts, no external
fonts or images, charts inline, readable on a phone (viewport tag, tables
that scroll sideways inside their own box, charts that scale with their text
kept legible).
"""

import html
import re

from .charts import slug


class Heading:
    def __init__(self, level, text, anchor=None):
        self.level, self.text, self.anchor = level, text, anchor


class Para:
    def __init__(self, text, cls=""):
        self.text, self.cls = text, cls


class Bullets:
    def __init__(self, items, cls=""):
        self.items, self.cls = list(items), cls


class TCell:
    def __init__(self, text, win=False, swatch=None, left=False, wrap=False):
        self.text, self.win, self.swatch, self.left = str(text), win, swatch, left
        self.wrap = wrap


class Row:
    def __init__(self, cells, cls=""):
        self.cells = [c if isinstance(c, TCell) else TCell(c) for c in cells]
        self.cls = cls


class Table:
    def __init__(self, head, rows, caption=None, left=1):
        """left: how many leading columns are text (left-aligned)."""
        self.head, self.rows, self.caption, self.left = head, rows, caption, left


class Figures:
    """Charts shown side by side where the page is wide enough."""

    def __init__(self, figs):
        self.figs = [f for f in figs if f is not None]


class Legend:
    def __init__(self, colours):
        self.colours = colours  # [(model, '#rrggbb')]


class Page:
    def __init__(self, title):
        self.title = title
        self.blocks = []

    def add(self, *blocks):
        self.blocks.extend(b for b in blocks if b is not None)


# --- Markdown --------------------------------------------------------------------


def md_cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(t):
    out = []
    if t.caption:
        out += [t.caption, ""]
    out.append("| " + " | ".join(md_cell(h) for h in t.head) + " |")
    out.append("|" + "".join("---|" if i < t.left else "---:|" for i in range(len(t.head))))
    for r in t.rows:
        out.append("| " + " | ".join(md_cell("**%s★**" % c.text if c.win else c.text)
                                     for c in r.cells) + " |")
    return out


def write_md(page, path, chart_dir="charts"):
    L = ["# " + page.title, ""]
    for b in page.blocks:
        if isinstance(b, Heading):
            L += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            L += [b.text, ""]
        elif isinstance(b, Bullets):
            L += ["- " + i for i in b.items] + [""]
        elif isinstance(b, Table):
            L += md_table(b) + [""]
        elif isinstance(b, Figures):
            for f in b.figs:
                L += ["![%s](%s/%s)" % (f.title, chart_dir, f.name), ""]
                if f.note:
                    L += [f.note, ""]
        elif isinstance(b, Legend):
            continue
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L).rstrip() + "\n")


# --- HTML -----------------------------------------------------------------------

CSS = """
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{font:16px/1.45 sans-serif;max-width:1240px;margin:0 auto;padding:0 12px 2em;color:#222}
h1{font-size:1.5em;overflow-wrap:anywhere}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}
p,li{overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.2em}
table{border-collapse:collapse;font-size:14px}
caption{text-align:left;font-size:14px;padding:2px 0;caption-side:bottom;color:#555}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f4f4f4;white-space:normal;vertical-align:bottom;min-width:3.5em;max-width:9em}
th:first-child{min-width:0}
th.l,td.l{text-align:left}
td.win{font-weight:bold;background:#e6f4e6}
td.w{white-space:normal;min-width:14em;max-width:28em}
.sp{font-size:12px;color:#666;font-weight:normal}
tr.flagged td{background:#fff6dd}
tr.failed td{background:#fbe3e3}
tr.ref td{color:#555;font-style:italic}
.sw{display:inline-block;width:.75em;height:.75em;margin-right:.35em;border-radius:2px;
vertical-align:-.05em}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.1em;font-size:14px;margin:.5em 0}
.charts{display:flex;flex-wrap:wrap;gap:1em 1.5em;align-items:flex-start}
figure{margin:.5em 0;flex:1 1 460px;min-width:0;max-width:600px}
figcaption{font-weight:bold;font-size:15px;margin-bottom:.2em}
figure svg{display:block;width:100%;height:auto}
figure p{font-size:13px;color:#555;margin:.2em 0}
ul.findings li{margin:.35em 0}
code{font-size:90%;overflow-wrap:anywhere}
"""


def inline(text):
    """The little Markdown the sentences use (**bold**, `code`), as HTML."""
    t = html.escape(text, quote=False)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


class Ids:
    def __init__(self):
        self.used = set()

    def new(self, base):
        base = slug(base) or "s"
        i, out = 1, base
        while out in self.used:
            i += 1
            out = "%s-%d" % (base, i)
        self.used.add(out)
        return out


SPREAD = re.compile(r"^(.*\S) \(([^()]+–[^()]+)\)$")


def cell_html(text):
    """A 'median (min–max)' cell shows the range on a second, smaller line,
    which keeps the columns narrow enough for the page."""
    m = SPREAD.match(text)
    if not m:
        return inline(text)
    return '%s<br><span class="sp">%s</span>' % (inline(m.group(1)), inline(m.group(2)))


def html_table(t):
    e = html.escape
    H = ['<div class="scroll"><table>']
    if t.caption:
        H.append("<caption>%s</caption>" % inline(t.caption))
    left = [i < t.left or bool(t.rows) and all(len(r.cells) > i and r.cells[i].left
                                                 for r in t.rows) for i in range(len(t.head))]
    H.append("<tr>%s</tr>" % "".join('<th%s>%s</th>' % (' class="l"' if left[i] else "", e(h))
                                     for i, h in enumerate(t.head)))
    for r in t.rows:
        cells = []
        for i, c in enumerate(r.cells):
            cls = [x for x in ("l" if i < t.left or c.left else "", "win" if c.win else "",
                               "w" if c.wrap else "") if x]
            sw = ('<span class="sw" style="background:%s"></span>' % c.swatch
                  if c.swatch else "")
            text = cell_html(c.text)
            if c.win:
                text = text.replace("<br>", " ★<br>", 1) if "<br>" in text else text + " ★"
            cells.append("<td%s>%s%s</td>" % (' class="%s"' % " ".join(cls) if cls else "",
                                              sw, text))
        H.append("<tr%s>%s</tr>" % (' class="%s"' % r.cls if r.cls else "", "".join(cells)))
    H.append("</table></div>")
    return "\n".join(H)


def html_figure(f, ids):
    fid = ids.new(f.id)
    cap = fid + "-cap"
    ids.used.add(cap)
    svg = re.sub(r"<svg\b", '<svg role="img" aria-labelledby="%s"' % cap, f.svg, count=1)
    note = "<p>%s</p>" % inline(f.note) if f.note else ""
    return ('<figure id="%s"><figcaption id="%s">%s</figcaption>\n%s\n%s</figure>'
            % (fid, cap, html.escape(f.title), svg, note))


def write_html(page, path):
    e = html.escape
    ids = Ids()
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         "<title>%s</title>" % e(page.title), "<style>%s</style></head><body>" % CSS.strip(),
         '<h1 id="%s">%s</h1>' % (ids.new("top"), e(page.title))]
    for b in page.blocks:
        if isinstance(b, Heading):
            H.append('<h%d id="%s">%s</h%d>' % (b.level, ids.new(b.anchor or b.text),
                                                inline(b.text), b.level))
        elif isinstance(b, Para):
            H.append("<p%s>%s</p>" % (' class="%s"' % b.cls if b.cls else "", inline(b.text)))
        elif isinstance(b, Bullets):
            H.append("<ul%s>%s</ul>" % (' class="%s"' % b.cls if b.cls else "",
                                        "".join("<li>%s</li>" % inline(i) for i in b.items)))
        elif isinstance(b, Table):
            H.append(html_table(b))
        elif isinstance(b, Figures):
            if b.figs:
                H.append('<div class="charts">%s</div>'
                         % "\n".join(html_figure(f, ids) for f in b.figs))
        elif isinstance(b, Legend):
            H.append('<div class="legend">%s</div>' % "".join(
                '<span><span class="sw" style="background:%s"></span>%s</span>' % (c, e(m))
                for m, c in b.colours))
    H.append("</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(H) + "\n")
