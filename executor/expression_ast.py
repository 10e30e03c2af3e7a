"""A syntax tree of CEL expressions, with the source span of every node, for the rewrites
that pauses need (`pause_index`): the `cel` package compiles and evaluates but exposes no
tree (`Program` gives only the variables and functions an expression uses).

The grammar is CEL's (github.com/google/cel-spec, langdef.md): precedence from loosest,
`?:`, `||`, `&&`, relations (`== != < <= > >= in`), `+ -`, `* / %`, unary `! -`, then
member access, index and calls. Only source the library has already accepted is parsed
here, and every use of the tree falls back to the plain expression when it meets syntax
it does not know (`Unparsed`), so a gap in this parser costs speed, never a match.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cel

from .expressions import string_end


class Unparsed(ValueError):
    """Source this parser does not handle (the caller keeps the expression as it is)."""


@dataclasses.dataclass(frozen=True)
class Node:
    kind: str  # ident field lit select index call list map struct unary binary ternary
    start: int
    end: int
    value: str = ""  # the name, field, function or operator
    children: tuple[Node, ...] = ()
    has_target: bool = False  # a call written `target.fn(args)`: children[0] is the target


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # ident lit op eof
    text: str
    start: int
    end: int


_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "!", "<", ">", "+", "-", "*", "/", "%",
              "?", ":", ".", ",", "(", ")", "[", "]", "{", "}")
_STRING_PREFIXES = frozenset({"r", "b", "rb", "br"})
_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})


def tokens(source: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
            continue
        if source.startswith("//", i):
            newline = source.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        start = i
        if char.isalpha() or char == "_":
            while i < n and (source[i].isalnum() or source[i] == "_"):
                i += 1
            word = source[start:i]
            if i < n and source[i] in "'\"" and word.lower() in _STRING_PREFIXES:
                i = string_end(source, i, "r" in word.lower())
                out.append(Token("lit", source[start:i], start, i))
            elif word in ("true", "false", "null"):
                out.append(Token("lit", word, start, i))
            elif word == "in":
                out.append(Token("op", word, start, i))
            else:
                out.append(Token("ident", word, start, i))
            continue
        if char in "'\"":
            i = string_end(source, i, False)
            out.append(Token("lit", source[start:i], start, i))
            continue
        # `.5` is a number where an operand starts (after an operator or an opening bracket)
        operand_starts = not out or (out[-1].kind == "op" and out[-1].text not in (")", "]"))
        if char.isdigit() or (char == "." and operand_starts and i + 1 < n
                              and source[i + 1].isdigit()):
            i = _number_end(source, i)
            out.append(Token("lit", source[start:i], start, i))
            continue
        for op in _OPERATORS:
            if source.startswith(op, i):
                out.append(Token("op", op, i, i + len(op)))
                i += len(op)
                break
        else:
            raise Unparsed(f"unexpected character {char!r} at {i}")
    out.append(Token("eof", "", n, n))
    return out


def _number_end(source: str, i: int) -> int:
    n = len(source)
    if source.startswith(("0x", "0X"), i):
        i += 2
        while i < n and source[i] in "0123456789abcdefABCDEF":
            i += 1
    else:
        while i < n and source[i].isdigit():
            i += 1
        if i + 1 < n and source[i] == "." and source[i + 1].isdigit():
            i += 1
            while i < n and source[i].isdigit():
                i += 1
        if i < n and source[i] in "eE":
            j = i + 1
            if j < n and source[j] in "+-":
                j += 1
            if j < n and source[j].isdigit():
                i = j
                while i < n and source[i].isdigit():
                    i += 1
    if i < n and source[i] in "uU":
        i += 1
    return i


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = tokens(source)
        self.pos = 0

    def peek(self) -> Token:
        return self.toks[self.pos]

    def take(self, text: str | None = None) -> Token:
        tok = self.toks[self.pos]
        if text is not None and (tok.kind != "op" or tok.text != text):
            raise Unparsed(f"expected {text!r} at {tok.start}")
        self.pos += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text in texts

    def expr(self) -> Node:
        cond = self.binary(0)
        if not self.at("?"):
            return cond
        self.take("?")
        yes = self.binary(0)
        self.take(":")
        no = self.expr()
        return Node("ternary", cond.start, no.end, "?:", (cond, yes, no))

    _LEVELS: tuple[frozenset[str], ...] = (frozenset({"||"}), frozenset({"&&"}), _RELATIONS,
                                            frozenset({"+", "-"}), frozenset({"*", "/", "%"}))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek().kind == "op" and self.peek().text in self._LEVELS[level]:
            op = self.take().text
            right = self.binary(level + 1)
            left = Node("binary", left.start, right.end, op, (left, right))
        return left

    def unary(self) -> Node:
        if self.at("!", "-"):
            tok = self.take()
            operand = self.unary()
            return Node("unary", tok.start, operand.end, tok.text, (operand,))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.at("."):
                self.take(".")
                name = self.peek()
                if name.kind != "ident":
                    raise Unparsed(f"expected a field name at {name.start}")  # `.?f` too
                self.take()
                if self.at("("):
                    args, end = self.arguments(")")
                    node = Node("call", node.start, end, name.text, (node, *args), True)
                else:
                    node = Node("select", node.start, name.end, name.text, (node,))
            elif self.at("["):
                self.take("[")
                index = self.expr()
                end = self.take("]").end
                node = Node("index", node.start, end, "[]", (node, index))
            elif self.at("{") and node.kind in ("ident", "select"):
                fields, end = self.arguments("}", fields=True)
                node = Node("struct", node.start, end, "", (node, *fields))
            else:
                return node

    def arguments(self, close: str, fields: bool = False) -> tuple[list[Node], int]:
        """`(a, b)`, `[a, b]`, `{k: v}` (or `{field: v}`): the items, and the end."""
        self.take()  # the opening bracket
        items: list[Node] = []
        while not self.at(close):
            if fields:
                key = self.take() if self.peek().kind == "ident" else None
                # a message field's name, not a variable: kind "field"
                key_node = (Node("field", key.start, key.end, key.text) if key
                            else self.expr())
                self.take(":")
                items += [key_node, self.expr()]
            elif close == "}":
                items.append(self.expr())
                self.take(":")
                items.append(self.expr())
            else:
                items.append(self.expr())
            if not self.at(","):
                break
            self.take(",")
        return items, self.take(close).end

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "lit":
            self.take()
            return Node("lit", tok.start, tok.end, tok.text)
        if tok.kind == "ident":
            self.take()
            if self.at("("):
                args, end = self.arguments(")")
                return Node("call", tok.start, end, tok.text, tuple(args))
            return Node("ident", tok.start, tok.end, tok.text)
        if self.at("("):
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner  # parentheses only group: the node keeps its own span
        if self.at("["):
            items, end = self.arguments("]")
            return Node("list", tok.start, end, "[]", tuple(items))
        if self.at("{"):
            items, end = self.arguments("}")
            return Node("map", tok.start, end, "{}", tuple(items))
        raise Unparsed(f"unexpected {tok.text or 'end'!r} at {tok.start}")


def parse(source: str) -> Node:
    """The tree of `source`; Unparsed for syntax this parser does not handle."""
    parser = _Parser(source)
    node = parser.expr()
    if parser.peek().kind != "eof":
        raise Unparsed(f"unexpected {parser.peek().text!r} at {parser.peek().start}")
    return node


def literal_value(source: str, node: Node) -> Any:
    """The value of a node made of literals only (`"a"`, `-5`, `2.5`), as the library reads
    it (its own escapes and number rules); Unparsed for anything else."""
    if node.kind == "unary" and node.value == "-" and node.children[0].kind == "lit":
        pass
    elif node.kind != "lit":
        raise Unparsed("not a literal")
    try:
        return cel.compile(source[node.start:node.end]).execute({})
    except BaseException as exc:  # a Rust panic is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise Unparsed(f"literal not evaluated: {exc}") from None
