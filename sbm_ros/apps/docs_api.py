"""Generate the README's node parameter tables from the nodes' declared parameters.

The tables between ``<!-- BEGIN PARAMS node -->`` and ``<!-- END PARAMS node -->`` markers in
README.md are produced from each node module's ``PARAMS`` list (the same list the node declares
with descriptions), so the documentation cannot drift from the code; ``test/test_docs.py``
fails when they differ. Update with::

    python -m sbm_ros.apps.docs_api --update README.md
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

NODES = ('binaural_capture', 'sbm_localizer', 'av_fusion', 'virtual_head', 'sbm_calibrator')


def _type_name(v) -> str:
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, int):
        return 'int'
    if isinstance(v, float):
        return 'double'
    if isinstance(v, (list, tuple)):
        return f'{_type_name(v[0]) if v else "string"}[]'
    return 'string'


def _default(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return f'`"{v}"`' if v else '`""`'
    if isinstance(v, (list, tuple)):
        return '`[' + ', '.join(str(x) for x in v) + ']`'
    return f'`{v}`'


def params_table(node: str) -> str:
    mod = importlib.import_module(f'sbm_ros.nodes.{node}')
    rows = ['| parameter | type | default | meaning |', '|---|---|---|---|']
    for p in mod.PARAMS:
        desc = ' '.join(p.description.split()).replace('|', '\\|')
        if p.read_only:
            desc += ' (read at start)'
        rows.append(f'| `{p.name}` | {_type_name(p.default)} | {_default(p.default)} | {desc} |')
    return '\n'.join(rows)


def render(text: str) -> str:
    """Return ``text`` with every marked parameter table regenerated."""
    def sub(m):
        return f'{m.group(1)}\n{params_table(m.group(2))}\n{m.group(3)}'
    return re.sub(r'(<!-- BEGIN PARAMS (\w+) -->)\n(?:.*?\n)?(<!-- END PARAMS \2 -->)', sub,
                  text, flags=re.S)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--update', metavar='README', help='rewrite the tables in this file')
    ap.add_argument('node', nargs='?', choices=NODES, help='print one table')
    a = ap.parse_args(argv)
    if a.update:
        with open(a.update) as fh:
            old = fh.read()
        new = render(old)
        if new != old:
            with open(a.update, 'w') as fh:
                fh.write(new)
        print(f'{a.update}: {"updated" if new != old else "up to date"}')
    elif a.node:
        print(params_table(a.node))
    else:
        ap.print_help()
    return 0


if __name__ == '__main__':
    sys.exit(main())
