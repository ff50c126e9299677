#!/usr/bin/env python3
"""Writes the golden parses of the gin corpus with Python gin-config's own parser.

The Rust test `tests/golden.rs` parses the same files and must produce exactly the
JSON written here. Regenerate after changing the corpus (from the repository root):

    python3 -m venv /root/.cache/hint/gin-venv
    /root/.cache/hint/gin-venv/bin/pip install gin-config==0.5.0
    /root/.cache/hint/gin-venv/bin/python crates/hint-config/scripts/gin_golden.py

Each `tests/data/NAME.gin` gives `tests/data/golden/NAME.json`: a list of statements
in parse order, each `{"line": N, KIND: {...}}` with KIND one of `binding`
(`scope`, `selector`, `arg_name`, `value`; gin stores a macro as a binding with an
empty `arg_name`), `block` (`scope`, `selector`), `import` (`module`, `is_from`,
`alias`) or `include` (the path). Values are tagged: `{"int": 3}`, `{"float": "0.001"}`
(Python's repr, compared exactly), `{"str": "x"}`, `{"bool": true}`, `{"none": null}`,
`{"list": [...]}`, `{"tuple": [...]}`, `{"dict": [[key, value], ...]}`,
`{"ref": {"scope": "", "selector": "a.b", "call": true}}`, `{"macro": "scope/NAME"}`.
Includes are recorded, not followed (gin's parser does not follow them either).

`tests/data/invalid.txt` holds snippets (separated by `=====` lines) that must be
syntax errors; the script asserts gin rejects each and writes `golden/invalid.json`
(`[{"text": ..., "gin_error": ...}]`), and the Rust test asserts it rejects them too.
"""

import io
import json
import pathlib
import re
import sys

from gin import config_parser

DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"


class Ref:
    def __init__(self, scoped_name, evaluate):
        scope, _, selector = scoped_name.rpartition("/")
        self.scope, self.selector, self.call = scope, selector, evaluate


class Macro:
    def __init__(self, name):
        self.name = name


class Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return Ref(scoped_configurable_name, evaluate)

    def macro(self, macro_name):
        return Macro(macro_name)


def tag(value):
    # bool before int: Python's bool is an int.
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, str):
        return {"str": value}
    if value is None:
        return {"none": None}
    if isinstance(value, list):
        return {"list": [tag(v) for v in value]}
    if isinstance(value, tuple):
        return {"tuple": [tag(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[tag(k), tag(v)] for k, v in value.items()]}
    if isinstance(value, Ref):
        return {"ref": {"scope": value.scope, "selector": value.selector, "call": value.call}}
    if isinstance(value, Macro):
        return {"macro": value.name}
    raise TypeError(f"no golden shape for {value!r}")


def statement(s):
    line = s.location.line_num
    if isinstance(s, config_parser.BindingStatement):
        body = {"scope": s.scope, "selector": s.selector, "arg_name": s.arg_name,
                "value": tag(s.value)}
        return {"line": line, "binding": body}
    if isinstance(s, config_parser.BlockDeclaration):
        return {"line": line, "block": {"scope": s.scope, "selector": s.selector}}
    if isinstance(s, config_parser.ImportStatement):
        return {"line": line,
                "import": {"module": s.module, "is_from": s.is_from, "alias": s.alias}}
    if isinstance(s, config_parser.IncludeStatement):
        return {"line": line, "include": s.filename}
    raise TypeError(f"unknown statement {s!r}")


def main():
    out_dir = DATA / "golden"
    out_dir.mkdir(exist_ok=True)
    for path in sorted(DATA.glob("*.gin")):
        with open(path, encoding="utf-8") as f:
            statements = [statement(s) for s in config_parser.ConfigParser(f, Delegate())]
        target = out_dir / (path.stem + ".json")
        target.write_text(json.dumps(statements, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        print(f"{target}: {len(statements)} statements", file=sys.stderr)

    invalid = []
    text = (DATA / "invalid.txt").read_text(encoding="utf-8")
    body = "\n".join(l for l in text.splitlines() if not l.startswith("# "))
    for case in body.split("\n=====\n"):
        try:
            list(config_parser.ConfigParser(io.StringIO(case), Delegate()))
        except Exception as e:  # gin raises SyntaxError, tokenize errors, ValueError…
            # Object addresses in ast error messages change from run to run.
            message = re.sub(r" at 0x[0-9a-f]+", "", str(e).splitlines()[0])
            invalid.append({"text": case, "gin_error": message})
            continue
        raise SystemExit(f"gin accepts {case!r}, which invalid.txt says it rejects")
    (out_dir / "invalid.json").write_text(json.dumps(invalid, indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    print(f"{out_dir / 'invalid.json'}: {len(invalid)} rejected snippets", file=sys.stderr)


if __name__ == "__main__":
    main()
