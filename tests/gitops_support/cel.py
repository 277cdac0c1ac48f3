"""Every CEL expression of the platform, parsed, type-checked and evaluated by a real engine.

The engine is cel-expr-python (requirements.txt), the CEL project's own Python binding of
cel-cpp: the parser and checker follow the CEL specification that cel-go implements, and
cel-go is what kro, function-cel-filter and the Kubernetes API server run. Its strings,
encoders, bindings and optional extensions are the ones cel-go calls ``ext.Strings()`` and
so on, so ``"%x".format([...])`` and ``.substring()`` behave as they do in kro.

What each environment declares, per upstream source:

* kro v0.9.3 (``pkg/cel/environment.go``): ``schema``, one variable per resource id, the
  ``forEach`` iterators, ``each`` in a collection's ``readyWhen``; the libraries above plus
  kro's ``hash.sha256(string) -> bytes`` (``pkg/cel/library/hash.go``), declared here with
  the same signature.
* function-cel-filter v0.2.0 (``fn.go``): ``observed``, ``desired``, ``context``, and the
  standard library only (its ``cel.NewEnv`` adds types and variables, no extension), so
  ``.format()``, ``cel.bind`` and the like fail to compile here as they would there.
* ValidatingAdmissionPolicy (Kubernetes 1.30+): ``object``, ``oldObject``, ``request``,
  ``params``, ``namespaceObject``, ``authorizer``, ``variables``.

What is not modelled: every variable is declared ``dyn``. kro types ``schema`` and the
resources from their OpenAPI schemas, function-cel-filter types ``observed``/``desired`` as
the ``apiextensions.fn.proto.v1.State`` message, and the API server types ``object`` from
the CRD, so their checkers also reject an expression of the wrong result type or a field
no schema declares. Here the field check happens at evaluation instead: the tests evaluate
on sample objects that carry every field their schema declares (a missing key is an error
in CEL), which catches misspelt fields but not type mismatches the samples happen to
satisfy. The Kubernetes CEL libraries kro also loads (``url()``, ``quantity()``, ``ip()``,
kro's ``random``/``json``/``maps`` libraries, two-variable comprehensions) are not
declared: an expression that used one would fail to compile here, loudly, not pass.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any, Iterable

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_encoders, ext_optional, ext_strings

KRO = "kro"
CEL_FILTER = "cel-filter"
ADMISSION = "admission"

# The variables each engine declares besides those an expression's context adds.
ENGINE_VARIABLES: dict[str, tuple[str, ...]] = {
    KRO: (),
    CEL_FILTER: ("observed", "desired", "context"),
    ADMISSION: ("object", "oldObject", "request", "params", "namespaceObject", "authorizer", "variables"),
}


class CelError(ValueError):
    """An expression that does not parse, type-check or evaluate, with the engine's message."""


def _sha256(value: str) -> bytearray:
    # bytearray, not bytes: cel-expr-python 0.1.3 cuts a `bytes` value handed to it from
    # Python at its first NUL byte (a digest often has one); bytearray arrives whole.
    return bytearray(hashlib.sha256(value.encode()).digest())


_KRO_FUNCTIONS = [
    cel.FunctionDecl(
        "hash.sha256", [cel.Overload("hash_sha256_string", cel.Type.BYTES, [cel.Type.STRING], impl=_sha256)]
    )
]


@lru_cache(maxsize=None)
def _env(engine: str, variables: frozenset[str]) -> cel.Env:
    if engine not in ENGINE_VARIABLES:
        raise ValueError(f"engine {engine!r}: allowed: {sorted(ENGINE_VARIABLES)}")
    names = set(variables) | set(ENGINE_VARIABLES[engine])
    return cel.NewEnv(
        variables={name: cel.Type.DYN for name in sorted(names)},
        extensions=[] if engine == CEL_FILTER else [
            ext_strings.ExtStrings(), ext_encoders.ExtEncoders(), ext_bindings.ExtBindings(), ext_optional.ExtOptional()],
        functions=_KRO_FUNCTIONS if engine == KRO else [],
    )


@lru_cache(maxsize=None)
def _compile(engine: str, variables: frozenset[str], expression: str) -> cel.Expression:
    try:
        return _env(engine, variables).compile(expression)
    except RuntimeError as err:
        raise CelError(f"{engine}: {expression!r}: {err}") from None


def compile(engine: str, expression: str, variables: Iterable[str] = ()) -> cel.Expression:  # noqa: A001
    """Parse and type-check; an undeclared name (a typo, or a resource it may not read) fails."""
    return _compile(engine, frozenset(variables), expression)


def evaluate(engine: str, expression: str, data: dict[str, Any]) -> Any:
    """The expression's value for `data` (variable name -> plain Python value)."""
    program = compile(engine, expression, data)
    try:
        value = program.eval(data=data)
    except RuntimeError as err:
        raise CelError(f"{engine}: {expression!r}: {err}") from None
    # A runtime error (a missing key, a bad substring) comes back as an error value.
    if value.type() == cel.Type.ERROR:
        raise CelError(f"{engine}: {expression!r}: {value.plain_value()}")
    return value.plain_value()


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def variables_read(engine: str, expression: str, candidates: Iterable[str]) -> set[str]:
    """Which of `candidates` the expression reads, as the checker sees it.

    Each candidate is declared in turn minus one: the checker reports an undeclared
    reference exactly when the expression reads that variable (a name inside a string
    literal or bound by a macro does not count). Names that do not even occur as words
    in the source are skipped without compiling.
    """
    candidates = set(candidates)
    compile(engine, expression, candidates)
    words = set(_IDENT.findall(expression))
    read = set()
    for name in sorted(candidates & words):
        try:
            compile(engine, expression, candidates - {name})
        except CelError as err:
            if "undeclared reference" not in str(err):
                raise
            read.add(name)
    return read


def sample(schema: dict[str, Any] | None, depth: int = 0) -> Any:
    """A value with every field `schema` declares (one item per array, one key per map).

    Evaluating an expression on it fails on any field the schema does not declare.
    Strings take the first enum value or "x"; numbers their minimum or 1.
    """
    if not schema or depth > 40:
        return "x"
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("x-kubernetes-int-or-string"):
        return 1
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        out = {name: sample(sub, depth + 1) for name, sub in schema.get("properties", {}).items()}
        if isinstance(schema.get("additionalProperties"), dict):
            out["key"] = sample(schema["additionalProperties"], depth + 1)
        return out
    if kind == "array":
        return [sample(schema.get("items"), depth + 1)]
    if kind == "integer":
        return int(max(schema.get("minimum", 1), 1))
    if kind == "number":
        return float(max(schema.get("minimum", 1), 1))
    if kind == "boolean":
        return True
    return "x"
