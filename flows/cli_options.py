"""The options of `dfp` commands, generated from the fields of the config models (features/config.py): type,
help (the field's description) and default (shown in the help) have one source."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Annotated

from cyclopts import Parameter

from flows import console


def _base_type(annotation):
    """X for `X | None`, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _shown_default(value) -> str:
    if value is None or value == [] or value is False:
        return ""
    return f" (default: {'on' if value is True else value})"


def model_option(model, name: str, *, flag: str | None = None, help: str | None = None, default_text: str | None = None,
                 annotation=None, negative: bool | None = None, required: bool = False) -> tuple[str, object]:
    """A keyword option for one field of a config model: its type, its help (the field's description) and its
    default (the field's default, shown in the help; the option itself defaults to None, meaning "not given")."""
    field = model.model_fields[name]
    base = annotation or _base_type(field.annotation)
    text = help or field.description or name.replace("_", " ")
    if required or field.is_required():
        text += " Required."
    else:
        text += default_text if default_text is not None else _shown_default(field.get_default(call_default_factory=True))
    negative = (field.default is True) if negative is None else negative
    parameter = Parameter(name=flag or "--" + name.replace("_", "-"), help=text,
                          negative=None if base is bool and negative else "")
    return name, Annotated[base | None, parameter]


def positional(model, name: str, metavar: str):
    field = model.model_fields[name]
    return Annotated[_base_type(field.annotation), Parameter(name=metavar, help=field.description)]


Verbosity = Annotated[int, Parameter(name=["--verbose", "-v"], count=True,
                                     help="-v shows Prefect's logs; -vv also Dask's and TensorFlow's (else in DFP_HOME/logs/workers.log).")]


def with_options(*options: tuple[str, object]):
    """Add keyword options (name, annotation[, default]; default None, meaning "not given"), plus -v, to a command's
    signature. The command takes them as **options; the verbosity is applied before its body runs."""
    def wrap(func):
        signature = inspect.signature(func)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        hints = typing.get_type_hints(func, include_extras=True)
        defaults = {}
        for name, annotation, *default in options:
            defaults[name] = default[0] if default else None
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                            default=defaults[name]))
            hints[name] = annotation
        params.append(inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=Verbosity, default=0))
        hints["verbose"] = Verbosity

        @functools.wraps(func)
        def command(*args, verbose: int = 0, **kwargs):
            console.quiet_start(verbose)
            return func(*args, **{**defaults, **kwargs})  # cyclopts passes only the options given

        command.__signature__ = signature.replace(parameters=params)
        command.__annotations__ = hints
        del command.__wrapped__  # cyclopts reads the signature above, not the function's own
        return command
    return wrap


def given(options: dict) -> dict:
    """The options given on the command line (the others are None)."""
    return {k: v for k, v in options.items() if v is not None}
