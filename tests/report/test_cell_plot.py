import re
from collections import Counter

import pytest

from ista.report.cell_plot import save_genotype_figure
from ista.space.genotypes import PUBLISHED


@pytest.mark.parametrize("name", PUBLISHED)
def test_svg_labels_every_edge(name, tmp_path):
    g = PUBLISHED[name]
    path = save_genotype_figure(g, tmp_path / "cells.svg", name)
    svg = path.read_text()
    texts = Counter(re.findall(r"<text[^>]*>([^<]+)</text>", svg))
    for op in {op for op, _ in g.normal + g.reduce}:
        assert texts[op] == sum(1 for o, _ in g.normal + g.reduce if o == op)
    assert texts["normal cell"] == 1 and texts["reduction cell"] == 1 and texts[name] == 1
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no temporary left


def test_png(tmp_path):
    path = save_genotype_figure(PUBLISHED["ISTA_twostage"], tmp_path / "deep" / "cells.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_bad_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        save_genotype_figure(PUBLISHED["ISTA_twostage"], tmp_path / "cells.jpg")
