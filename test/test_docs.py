"""The README's parameter tables are generated from the nodes' declared parameters."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_parameter_tables_match_the_code():
    pytest.importorskip('rclpy', reason='the node modules need rclpy (tools/dev test has it)')
    from sbm_ros.apps.docs_api import NODES, render
    with open(os.path.join(ROOT, 'README.md')) as fh:
        text = fh.read()
    for node in NODES:
        assert f'<!-- BEGIN PARAMS {node} -->' in text, f'README lacks the {node} table'
    assert render(text) == text, ('README parameter tables are out of date: run '
                                  'python -m sbm_ros.apps.docs_api --update README.md')


def test_readme_commands_exist():
    with open(os.path.join(ROOT, 'README.md')) as fh:
        text = fh.read()
    assert 'tools/dev demo' in text and 'tools/dev test' in text
    with open(os.path.join(ROOT, '.ci', 'run')) as fh:
        assert 'tools/dev test' in fh.read()


_NUM = r'(?<![\w.])(\d+\.\d+)(?![\w.])'


def _figures_not_in_report(section: str, report_name: str, rounded: bool):
    """Decimal figures of the README's ``section`` that are not in ``docs/<report_name>``:
    ``rounded`` accepts a README figure that a report number rounds to (the benchmark's
    figures are quoted with fewer digits), else the same text must be in the report."""
    import re
    with open(os.path.join(ROOT, 'README.md')) as fh:
        readme = fh.read()
    with open(os.path.join(ROOT, 'docs', report_name)) as fh:
        report = fh.read()
    start = readme.index(f'## {section}')
    sec = readme[start:readme.index('\n## ', start)]
    num = re.compile(_NUM)
    if not rounded:
        return sorted(set(num.findall(sec)) - set(num.findall(report)))
    have = [float(x) for x in num.findall(report)]
    missing = []
    for tok in sorted(set(num.findall(sec))):
        nd = len(tok.split('.')[1])
        if not any(round(v, nd) == float(tok) or f'{v:.{nd}f}' == tok for v in have):
            missing.append(tok)
    return missing


def test_readme_benchmark_figures_come_from_the_report():
    """Every decimal figure in the README's benchmark section is in docs/benchmark.md.

    The report is what `sbm-bench` wrote; a README figure that no report number rounds to is
    stale or made up. (A sanity guard without context: a stale figure that happens to equal
    some other number of the report passes.)
    """
    missing = _figures_not_in_report('Benchmark', 'benchmark.md', rounded=True)
    assert not missing, f'README benchmark figures not found in docs/benchmark.md: {missing}'


def test_readme_reliability_figures_come_from_the_soak_report():
    """Every decimal figure in the README's reliability section is in docs/soak.md (what
    `sbm-soak --write-docs` wrote)."""
    missing = _figures_not_in_report('Reliability', 'soak.md', rounded=False)
    assert not missing, f'README reliability figures not found in docs/soak.md: {missing}'
