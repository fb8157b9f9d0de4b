import json

import pytest

from ista.space.encoding import (
    CODE_SIZE,
    NODE_OFFSETS,
    NODE_SIZES,
    decode,
    flat_indices,
    genotype_from_supports,
)
from ista.space.genotypes import PUBLISHED, Genotype, GenotypeError, load_genotype
from ista.space.ops import PRIMITIVES

# The DARTS text exactly as the official repositories write it (method.md §10).
TWOSTAGE_TEXT = """Genotype(
    normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('dil_conv_3x3', 2),
            ('dil_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 2), ('skip_connect', 0)],
    normal_concat=range(2, 6),
    reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1),
            ('dil_conv_5x5', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4), ('sep_conv_5x5', 1)],
    reduce_concat=range(2, 6))"""
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)


def test_parses_published_darts_text():
    assert Genotype.from_text(TWOSTAGE_TEXT) == PUBLISHED["ISTA_twostage"]
    assert Genotype.from_text(DARTS_V2_TEXT) == PUBLISHED["DARTS_V2"]
    assert PUBLISHED["ISTA_twostage"].normal[1] == ("dil_conv_3x3", 1)


@pytest.mark.parametrize("name", PUBLISHED)
def test_round_trips(name):
    g = PUBLISHED[name]
    assert Genotype.from_text(g.to_text()) == g
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert g.to_text() == Genotype.from_text(g.to_text()).to_text()
    assert g.to_text().startswith("Genotype(normal=[('")
    assert "normal_concat=range(2, 6)" in g.to_text()


def test_positional_text_and_non_contiguous_concat():
    g = PUBLISHED["DARTS_V1"]
    text = f"Genotype({list(g.normal)}, [2, 4, 5], {list(g.reduce)}, range(2, 6))"
    parsed = Genotype.from_text(text)
    assert parsed.normal_concat == (2, 4, 5)
    assert "normal_concat=[2, 4, 5]" in parsed.to_text()
    assert Genotype.from_text(parsed.to_text()) == parsed


BASE = PUBLISHED["DARTS_V2"].to_dict()


def _with(field, value):
    return {**BASE, field: value}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _with("normal", [["conv_7x1_1x7", 0], *BASE["normal"][1:]]),
            r"normal\[0\]: unknown op 'conv_7x1_1x7'",
        ),
        (_with("reduce", [["none", 0], *BASE["reduce"][1:]]), "no zero op"),
        (
            _with("normal", [["skip_connect", 0], ["skip_connect", 2], *BASE["normal"][2:]]),
            r"normal\[1\]: input 2 must be an integer state index < 2",
        ),
        (
            _with("reduce", [*BASE["reduce"][:6], ["skip_connect", 5], ["skip_connect", 0]]),
            r"reduce\[6\]: input 5 must be an integer state index < 5",
        ),
        (_with("normal", BASE["normal"][:7]), "expected 8 .* found 7"),
        (_with("normal", BASE["normal"] * 2), "found 16"),
        (_with("normal", [["skip_connect", True], *BASE["normal"][1:]]), "integer"),
        (_with("normal", [["skip_connect"], *BASE["normal"][1:]]), r"normal\[0\]: expected an"),
        (_with("normal", "sep_conv_3x3"), "normal: expected a list"),
        (_with("normal_concat", [2, 3, 9]), "normal_concat: state index 9"),
        (_with("reduce_concat", []), "reduce_concat: expected a non-empty list"),
        (_with("reduce_concat", [2, 2, 3]), "reduce_concat: repeated"),
        ({k: v for k, v in BASE.items() if k != "reduce"}, r"missing field\(s\) \['reduce'\]"),
        ({**BASE, "reduction": []}, r"unknown genotype field\(s\) \['reduction'\]"),
        ([1, 2], "must be an object"),
    ],
)
def test_validation_errors_name_the_field(data, message):
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict(data)
    if isinstance(data, dict):  # the same check through the JSON path
        with pytest.raises(GenotypeError, match=message):
            Genotype.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed genotype text"),
        ("Genotypes(normal=[])", "must be a call Genotype"),
        ("[('sep_conv_3x3', 0)]", "must be a call Genotype"),
        ("Genotype(normal=__import__('os').system('touch /tmp/ista-pwned'))", "normal: expected a literal"),
        ("Genotype(normal=[], normal=[])", "given twice"),
        ("Genotype(normal_concat=range(2, 'x'))", "normal_concat: range"),
        ("Genotype(1, 2, 3, 4, 5)", "at most 4 fields"),
        (DARTS_V2_TEXT.replace("'sep_conv_3x3', 0", "'sep_conv_3x3', 9", 1), r"normal\[0\]: input 9"),
    ],
)
def test_text_errors(text, message, tmp_path):
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_text(text)


def test_text_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(GenotypeError):
        Genotype.from_text(f"Genotype(normal=open({str(marker)!r}, 'w').write('x'), normal_concat=[2])")
    assert not marker.exists()


def test_malformed_json():
    with pytest.raises(GenotypeError, match="malformed genotype JSON"):
        Genotype.from_json('{"normal": [')


def test_load_genotype_sources(tmp_path):
    g = PUBLISHED["ISTA_onestage"]
    assert load_genotype("ISTA_onestage") is g
    (tmp_path / "g.json").write_text(g.to_json())
    (tmp_path / "g.txt").write_text(g.to_text() + "\n")
    assert load_genotype(str(tmp_path / "g.json")) == g
    assert load_genotype(str(tmp_path / "g.txt")) == g
    assert load_genotype(g.to_text()) == g
    assert load_genotype(g.to_json()) == g
    with pytest.raises(GenotypeError, match=r"not a published genotype .*ISTA_twostage"):
        load_genotype("ISTA_threestage")
    (tmp_path / "bad.json").write_text('{"normal": 1}')
    with pytest.raises(GenotypeError, match=r"bad.json: .*missing field"):
        load_genotype(str(tmp_path / "bad.json"))


def test_encoding_layout():
    assert NODE_SIZES == (14, 21, 28, 35) and NODE_OFFSETS == (0, 14, 35, 63) and CODE_SIZE == 98
    assert decode(0) == ("max_pool_3x3", 0)
    assert decode(7 * 3 + 6) == ("dil_conv_5x5", 3)
    assert flat_indices([[0, 13], [0], [27], [34]]) == [[0, 13], [14], [62], [97]]
    with pytest.raises(ValueError, match="node 1: index 21"):
        flat_indices([[0], [21], [0], [0]])


@pytest.mark.parametrize("name", PUBLISHED)
def test_supports_reproduce_published_genotypes(name):
    # method.md §13: the index ↔ (input, op) map rebuilds each published genotype from its support.
    g = PUBLISHED[name]
    supports = []
    for cell in (g.normal, g.reduce):
        supports.append(
            [[7 * index + PRIMITIVES.index(op) for op, index in cell[2 * j : 2 * j + 2]] for j in range(4)]
        )
    assert genotype_from_supports(*supports) == g
