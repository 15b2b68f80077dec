"""``helm lint`` of the chart (Helm's Go library, PyPI ``helm-sdkpy``), in ``make test``."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.packaging import helm


def test_chart_lints_without_warnings() -> None:
    messages = helm.lint()
    # helm-sdkpy reports the severity and the file, not the text; `helm install` in the other
    # tests shows the text of any template error.
    assert [m for m in messages if m[0] >= helm.WARNING] == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    chart = tmp_path / "barman-cloud"
    shutil.copytree(helm.CHART, chart)
    service = chart / "templates" / "service.yaml"
    service.write_text(
        service.read_text().replace("{{ .Values.service.port }}", "{{ .Values.service.port.nope }}")
    )
    assert (helm.ERROR, "templates/") in helm.lint(chart)
