"""What the analyst token may ask: one SELECT over the chargeback database, checked on ClickHouse's own parse tree.

The query text is parsed by the engine itself (``parseQueryToJSON``, see
store/read_session.py) and this module walks the resulting tree; no regular
expression ever looks at SQL. A query is allowed when:

* it is one statement, a SELECT (with WITH, UNION, INTERSECT, EXCEPT);
* every table it names is in the chargeback database (or is a CTE of the query);
* every table function is one that only generates rows (numbers, values, view, ...);
* every function is in the reviewed inventory and computes on the query's own values
  (server/sql_functions.py);
* it carries no SETTINGS, FORMAT or INTO OUTFILE, at any depth;
* every construct in its tree is one this module knows (anything new is refused).

What runs is ClickHouse's canonical formatting of the checked tree, after the
engine confirmed it parses back to the same tree, with only the parameters the
tree references: the text that was checked is the text that runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..store.read_session import ParsedQuery, QueryParseError
from .sql_functions import classify

# ClickHouse's default max_query_size: a longer text would fail to parse anyway.
MAX_QUERY_BYTES = 256 * 1024

SELECT_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})

# Every node type a SELECT over tables may contain. A type not listed is refused:
# a construct this module has not reviewed might name a table or a source.
NODE_TYPES = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "Subquery", "WithElement",
    "ExpressionList", "Literal", "Identifier", "Function", "QueryParameter", "Asterisk", "QualifiedAsterisk",
    "ColumnsRegexpMatcher", "ColumnsListMatcher", "QualifiedColumnsRegexpMatcher", "QualifiedColumnsListMatcher",
    "ColumnsTransformerList", "ColumnsApplyTransformer", "ColumnsExceptTransformer", "ColumnsReplaceTransformer",
    "ColumnsReplaceTransformerReplacement",
    "TablesInSelectQuery", "TablesInSelectQueryElement", "TableExpression", "TableIdentifier", "TableJoin", "ArrayJoin",
    "SampleRatio", "OrderByElement", "WindowDefinition", "WindowListElement", "InterpolateElement",
})  # fmt: skip

# Table functions that generate rows from their arguments and read nothing else.
# view(SELECT ...) is walked like any subquery.
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries", "values",
                             "generateRandom", "view", "null"})  # fmt: skip

# `x IN db.table` reads a table named by an identifier.
IN_FUNCTIONS = frozenset({"in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn"})

_SOURCE_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("file", "filesystem"), "reads files on the aggregator's host"),
    (("executable",), "runs programs on the host"),
    (("python", "arrowstream"), "reads objects of the aggregator process"),
    (("input",), "reads the body of an INSERT"),
    (("dictionary",), "reads a dictionary, whose source may be any table, file or URL"),
    (("merge", "loop", "mergetree", "viewifpermitted", "viewexplain", "eval"), "reads tables or runs statements named in its arguments"),
    (("remote", "cluster"), "queries other servers, or any database of this one"),
    (("url", "s3", "gcs", "oss", "cosn", "azure", "hdfs", "mysql", "postgresql", "mongodb", "redis", "sqlite", "odbc", "jdbc",
      "iceberg", "deltalake", "hudi", "paimon", "ytsaurus", "bigquery", "prometheus", "timeseries"),
     "reaches other systems over the network or the host's files"),
)  # fmt: skip


class SqlRefused(Exception):
    """The query asks for something the analyst token may not do (HTTP 403)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} is not allowed: {why}")
        self.what = what
        self.why = why


class SqlRejected(Exception):
    """The query cannot be run as sent: bad syntax, a missing parameter, too long (HTTP 400 or 413)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    sql: str  # ClickHouse's canonical text of the checked tree
    parameters: dict[str, Any]  # exactly those the tree references


Parser = Callable[[str], ParsedQuery]


class SqlGuard:
    def __init__(self, database: str, parse: Parser) -> None:
        self.database = database
        self._parse = parse

    def check(self, sql: str, parameters: Mapping[str, Any]) -> CheckedQuery:
        """The query to run for `sql`, or SqlRefused / SqlRejected saying why not."""
        try:
            size = len(sql.encode("utf-8"))
        except UnicodeEncodeError:
            raise SqlRejected("the query is not valid UTF-8 text") from None
        if size > MAX_QUERY_BYTES:
            raise SqlRejected(f"the query is {size} bytes; at most {MAX_QUERY_BYTES} are accepted", status=413)
        try:
            parsed = self._parse(sql)
        except QueryParseError as exc:
            raise _parse_failure(exc) from exc
        root = parsed.tree.get("type")
        if root == "SetQuery":
            raise SqlRefused(f"SET {_setting_names(parsed.tree)}", "the session's limits (rows, time, memory) and options are fixed")
        if root not in SELECT_ROOTS:
            raise _not_select(parsed.canonical.split(maxsplit=1)[0].upper() if parsed.canonical.strip() else str(root))
        if not parsed.round_trips:
            raise SqlRefused("this query", "ClickHouse does not format it back to the same query; write it more plainly")
        used = _Walk(self.database, parameters).run(parsed.tree)
        return CheckedQuery(parsed.canonical, {name: parameters[name] for name in sorted(used)})


def _parse_failure(exc: QueryParseError) -> Exception:
    if exc.multiple_statements:
        return SqlRefused("several statements in one request", "send one SELECT per request")
    if exc.unsupported_statement in ("SELECT", "WITH"):
        return SqlRefused("this query", f"ClickHouse cannot show its parse tree, so it cannot be checked ({exc})")
    if exc.unsupported_statement:
        return _not_select(exc.unsupported_statement)
    return SqlRejected(f"syntax error: {exc}")


def _not_select(statement: str) -> SqlRefused:
    return SqlRefused(f"statement {statement}", "only SELECT queries (with WITH, UNION, INTERSECT, EXCEPT) are allowed")


class _Walk:
    """One pass over a parse tree, refusing on the first node that is not allowed."""

    def __init__(self, database: str, parameters: Mapping[str, Any]) -> None:
        self.database = database
        self.parameters = parameters
        self.used: set[str] = set()

    def run(self, tree: Mapping[str, Any]) -> set[str]:
        # Iterative: a deeply nested query must not exhaust Python's stack.
        stack: list[tuple[Any, str]] = [(tree, "")]
        while stack:
            node, key = stack.pop()
            if isinstance(node, list):
                stack.extend((item, key) for item in node)
                continue
            if not isinstance(node, dict):
                continue
            if "type" in node:
                self._check(node, key)
                if node["type"] == "Literal":
                    continue  # data, not structure
            stack.extend((value, child_key) for child_key, value in node.items() if isinstance(value, (dict, list)))
        return self.used

    def _check(self, node: Mapping[str, Any], key: str) -> None:
        kind = node["type"]
        if kind == "SetQuery":
            raise SqlRefused(f"SETTINGS {_setting_names(node)}", "the session's limits (rows, time, memory) and options are fixed")
        if kind not in NODE_TYPES:
            raise SqlRefused(f"the construct {kind}", "it is not one the analyst endpoint has reviewed")
        if node.get("out_file") is not None or node.get("is_into_outfile_with_stdout"):
            raise SqlRefused("INTO OUTFILE", "answers come back over HTTP; nothing is written on the host")
        if node.get("format_ast") is not None:
            raise SqlRefused("FORMAT", "the endpoint chooses the format of its answers (JSON)")
        if kind == "Function":
            self._function(node, table_function=key == "table_function")
        elif kind == "TableIdentifier":
            self._table(node)
        elif kind == "QueryParameter":
            self._parameter(node)

    def _function(self, node: Mapping[str, Any], *, table_function: bool) -> None:
        name = str(node.get("name", ""))
        if table_function:
            if name not in TABLE_FUNCTIONS:
                raise SqlRefused(f"table function {name}()", _source_reason(name))
            return
        verdict = classify(name)
        if not verdict.allowed:
            raise SqlRefused(f"function {name}()", verdict.reason)
        if name in IN_FUNCTIONS:
            arguments = (node.get("arguments") or {}).get("children") or []
            if len(arguments) == 2 and isinstance(arguments[1], dict) and arguments[1].get("type") == "Identifier":
                self._table(arguments[1])  # x IN db.table

    def _table(self, node: Mapping[str, Any]) -> None:
        parts = self._name_parts(node)
        if len(parts) == 1:
            return  # a CTE of the query, or a table of the session's database (the chargeback one)
        if len(parts) == 2 and parts[0] == self.database:
            return
        raise SqlRefused(f"table {'.'.join(parts)}", f"only the tables and views of the {self.database} database can be read")

    def _name_parts(self, node: Mapping[str, Any]) -> list[str]:
        """The identifier's parts, with {name:Identifier} parameters replaced by their values."""
        parts = [str(part) for part in (node.get("name_parts") or [node.get("name", "")])]
        bound = iter(child for child in node.get("children") or [] if child.get("type") == "QueryParameter")
        for index, part in enumerate(parts):
            if part:
                continue
            parameter = next(bound, None)
            if parameter is None:
                continue
            if parameter.get("param_type") != "Identifier":
                raise SqlRefused(f"a {parameter.get('param_type')} parameter in a table name", "table names take {name:Identifier}")
            parts[index] = str(self._parameter(parameter))
        return parts

    def _parameter(self, node: Mapping[str, Any]) -> Any:
        name = str(node.get("name", ""))
        if name not in self.parameters:
            raise SqlRejected(f"the query parameter {{{name}:{node.get('param_type')}}} has no value (send it in \"params\")")
        self.used.add(name)
        return self.parameters[name]


def _setting_names(node: Mapping[str, Any]) -> str:
    return ", ".join(str(change.get("name")) for change in node.get("changes") or []) or "?"


def _source_reason(name: str) -> str:
    lowered = name.lower()
    for prefixes, reason in _SOURCE_REASONS:
        if lowered.startswith(prefixes):
            return reason
    return "only row generators (" + ", ".join(sorted(TABLE_FUNCTIONS)) + ") are allowed as table functions"
