"""Old-style card templates (`{{#if x}}…{{else}}…{{/if}}`, `{{{x}}}`, `{{#each}}`) compiled to Jinja2.

The older tool rendered these with regexes: no `else`, no nesting, and a value that contained
`{{…}}` was expanded again. Here the template is parsed into tags once, blocks are matched on a
stack (nesting to any depth, a clear error for a stray `{{/if}}`), and the result is a Jinja2
program rendered in the same sandbox as our own template. Literal text is never part of that
program: each literal chunk is emitted through a variable, so neither the template's text nor
any value can be interpreted as template code.

This is hand-written because the maintained Handlebars ports for Python do not support the
old tool's `{{var|default:'text'}}` form, and we need Jinja's sandbox anyway.
"""

from __future__ import annotations

import re

from smolforge.errors import SmolforgeError

TAG = re.compile(r"\{\{\{\s*(?P<raw>[^{}]*?)\s*\}\}\}|\{\{(?P<body>[^{}]*?)\}\}")
PATH = r"(?:this|@index|@first|@last|@key|[A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
DEFAULT = re.compile(rf"^(?P<var>{PATH})\s*\|\s*default\s*:\s*(?P<q>['\"])(?P<text>.*)(?P=q)$", re.S)
BLOCK_OPEN = re.compile(rf"^#(?P<kind>if|unless|each)\s+(?P<var>{PATH})$")
BLOCK_CLOSE = re.compile(r"^/(?P<kind>if|unless|each)$")
LEGACY_MARKERS = re.compile(r"\{\{\{|\{\{\s*[#/]|\{\{\s*else\s*\}\}|\|\s*default\s*:")
LITERALS = "sf_literals"


def looks_legacy(template: str) -> bool:
    """True when the template uses the old syntax (blocks, triple braces or `|default:`)."""
    return bool(LEGACY_MARKERS.search(template))


def _line(template: str, pos: int) -> int:
    return template.count("\n", 0, pos) + 1


def _expr(path: str, in_each: bool, template: str, pos: int) -> str:
    special = {"@index": "loop.index0", "@first": "loop.first", "@last": "loop.last", "@key": "loop.index0"}
    if path in special:
        if not in_each:
            raise SmolforgeError(f"Card template line {_line(template, pos)}: {{{{{path}}}}} is only valid "
                                 "inside {{#each ...}}.")
        return special[path]
    if path == "this" or path.startswith("this."):
        if not in_each:
            raise SmolforgeError(f"Card template line {_line(template, pos)}: {{{{{path}}}}} is only valid "
                                 "inside {{#each ...}}.")
        return "sf_this" + path[4:]
    return path


def to_jinja(template: str) -> tuple[str, list[str]]:
    """Compile an old-style template to (Jinja2 source, literal chunks)."""
    out: list[str] = []
    literals: list[str] = []
    stack: list[tuple[str, int, bool]] = []  # (kind, position, seen_else)
    pos = 0

    def literal(text: str) -> None:
        if text:
            literals.append(text)
            out.append(f"{{{{ {LITERALS}[{len(literals) - 1}] }}}}")

    def in_each() -> bool:
        return any(kind == "each" for kind, _, _ in stack)

    for m in TAG.finditer(template):
        literal(template[pos:m.start()])
        pos = m.end()
        where = f"Card template line {_line(template, m.start())}"
        if m.group("raw") is not None:
            body = m.group("raw").strip()
            if not re.fullmatch(PATH, body):
                raise SmolforgeError(f"{where}: {{{{{{{body}}}}}}} must name one variable, "
                                     "e.g. {{{author_name}}}.")
            out.append(f"{{{{ {_expr(body, in_each(), template, m.start())} }}}}")
            continue
        body = m.group("body").strip()
        if (op := BLOCK_OPEN.match(body)) is not None:
            kind, var = op.group("kind"), _expr(op.group("var"), in_each(), template, m.start())
            if kind == "if":
                out.append(f"{{% if {var} %}}")
            elif kind == "unless":
                out.append(f"{{% if not {var} %}}")
            else:
                out.append(f"{{% for sf_this in ({var} or []) %}}")
            stack.append((kind, m.start(), False))
        elif body == "else":
            if not stack or stack[-1][0] == "each" or stack[-1][2]:
                raise SmolforgeError(f"{where}: {{{{else}}}} must sit inside {{{{#if}}}} or {{{{#unless}}}} "
                                     "(once per block).")
            kind, start, _ = stack.pop()
            stack.append((kind, start, True))
            out.append("{% else %}")
        elif (cl := BLOCK_CLOSE.match(body)) is not None:
            if not stack:
                raise SmolforgeError(f"{where}: {{{{/{cl.group('kind')}}}}} closes a block that was never opened.")
            kind, start, _ = stack.pop()
            if kind != cl.group("kind"):
                raise SmolforgeError(f"{where}: {{{{/{cl.group('kind')}}}}} closes {{{{#{kind}}}}} opened on line "
                                     f"{_line(template, start)}. Close it with {{{{/{kind}}}}}.")
            out.append("{% endfor %}" if kind == "each" else "{% endif %}")
        elif (d := DEFAULT.match(body)) is not None:
            literals.append(d.group("text"))
            var = _expr(d.group("var"), in_each(), template, m.start())
            out.append(f"{{{{ {var} if {var} not in (none, '', []) else {LITERALS}[{len(literals) - 1}] }}}}")
        elif re.fullmatch(PATH, body):
            out.append(f"{{{{ {_expr(body, in_each(), template, m.start())} }}}}")
        else:
            raise SmolforgeError(
                f"{where}: unsupported tag {{{{{body}}}}}. Old-style templates support {{{{var}}}}, "
                "{{{var}}}, {{#if x}}…{{else}}…{{/if}}, {{#unless x}}…{{/unless}}, "
                "{{#each list}}…{{this}}…{{/each}} and {{var|default:'text'}}."
            )
    literal(template[pos:])
    if stack:
        kind, start, _ = stack[-1]
        raise SmolforgeError(f"Card template line {_line(template, start)}: {{{{#{kind} ...}}}} is never closed. "
                             f"Add {{{{/{kind}}}}}.")
    return "".join(out), literals
