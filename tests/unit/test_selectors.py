"""Label selectors: every operator of the `labels.Parse` grammar, matching semantics
(absent keys with != and notin), canonical string, and the errors for malformed input."""

from __future__ import annotations

import pytest

from scaler.core.selectors import Operator, SelectorError, parse_selector

LABELS = {"workload": "web", "region": "eu-west-1", "topology.kubernetes.io/region": "eu-west-1"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        pytest.param("", True, id="empty selects all"),
        pytest.param("workload=web", True, id="equals"),
        pytest.param("workload==web", True, id="double equals"),
        pytest.param("workload=api", False, id="equals other"),
        pytest.param("workload!=api", True, id="not equals"),
        pytest.param("missing!=x", True, id="not equals matches absent key"),
        pytest.param("missing=x", False, id="equals needs the key"),
        pytest.param("region in (eu-west-1,us-east-1)", True, id="in"),
        pytest.param("region in (us-east-1)", False, id="in miss"),
        pytest.param("region notin (us-east-1, ap-south-1)", True, id="notin with spaces"),
        pytest.param("missing notin (a)", True, id="notin matches absent key"),
        pytest.param("region notin (eu-west-1)", False, id="notin miss"),
        pytest.param("workload", True, id="exists"),
        pytest.param("missing", False, id="exists miss"),
        pytest.param("!missing", True, id="does not exist"),
        pytest.param("!workload", False, id="does not exist miss"),
        pytest.param("topology.kubernetes.io/region in (eu-west-1)", True, id="prefixed key"),
        pytest.param("workload=web,region=eu-west-1,!gpu", True, id="and of three"),
        pytest.param("workload=web,region=us-east-1", False, id="and with one miss"),
    ],
)
def test_matching(text, matches):
    assert parse_selector(text).matches(LABELS) is matches


def test_greater_and_less_than_compare_integers():
    labels = {"tier": "3", "name": "x"}
    assert parse_selector("tier>2").matches(labels)
    assert not parse_selector("tier<3").matches(labels)
    assert not parse_selector("name>1").matches(labels), "non-integer label never matches"


def test_operators_and_canonical_string():
    selector = parse_selector("z, x notin (b,a), !y, k=v")
    ops = [r.operator for r in selector.requirements]
    assert ops == [Operator.EXISTS, Operator.NOT_IN, Operator.DOES_NOT_EXIST, Operator.EQUALS]
    assert str(selector) == "k=v,x notin (a,b),!y,z"


def test_empty_value_is_legal():
    assert parse_selector("k=").matches({"k": ""})
    assert parse_selector("k in ()").requirements[0].values == ("",)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("a=b c", id="space instead of comma"),
        pytest.param("a in b", id="in without parens"),
        pytest.param("a in (b", id="unclosed"),
        pytest.param("a in (b c)", id="missing comma in set"),
        pytest.param("=b", id="no key"),
        pytest.param("in", id="keyword as key"),
        pytest.param("a!", id="dangling bang"),
        pytest.param("a=b=c", id="two equals"),
        pytest.param("a>x", id="gt needs integer"),
        pytest.param(",a", id="leading comma"),
        pytest.param("a,", id="trailing comma"),
        pytest.param("Bad Key=1", id="space in key"),
        pytest.param("k@=1", id="invalid key char"),
        pytest.param("UPPER.example.com/k=1", id="uppercase prefix"),
        pytest.param("k=" + "v" * 64, id="value too long"),
        pytest.param("k=-v", id="value must start alphanumeric"),
    ],
)
def test_malformed_selectors_raise_with_the_text(bad):
    with pytest.raises(SelectorError) as info:
        parse_selector(bad)
    assert isinstance(info.value, ValueError)
