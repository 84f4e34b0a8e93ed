import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether._versions import SemVer, parse_constraint, parse_version

BAD_VERSION = "invalid version format: must be semantic version (X.Y.Z)"


# --------------------------------------------------------------------------- parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", SemVer(0, 0, 0)),
        ("1.2.3", SemVer(1, 2, 3)),
        ("10.20.30", SemVer(10, 20, 30)),
        ("1.2.3-alpha", SemVer(1, 2, 3, ("alpha",))),
        ("1.2.3-alpha.1", SemVer(1, 2, 3, ("alpha", 1))),
        ("1.0.0-0.3.7", SemVer(1, 0, 0, (0, 3, 7))),
        ("1.0.0-x.7.z.92", SemVer(1, 0, 0, ("x", 7, "z", 92))),
        ("1.0.0-x-y-z.--", SemVer(1, 0, 0, ("x-y-z", "--"))),
        ("1.0.0-0a", SemVer(1, 0, 0, ("0a",))),
        ("1.0.0+20130313144700", SemVer(1, 0, 0, (), "20130313144700")),
        ("1.0.0-beta+exp.sha.5114f85", SemVer(1, 0, 0, ("beta",), "exp.sha.5114f85")),
        ("1.0.0+001", SemVer(1, 0, 0, (), "001")),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_parse_version_accepts_semver(text, expected):
    parsed = parse_version(text)
    assert parsed == expected
    assert parsed.build == expected.build
    assert parsed.prerelease == expected.prerelease
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("1", id="major-only"),
        pytest.param("1.2", id="no-patch"),
        pytest.param("1.2.3.4", id="four-parts"),
        pytest.param("v1.2.3", id="v-prefix"),
        pytest.param("01.2.3", id="leading-zero-major"),
        pytest.param("1.02.3", id="leading-zero-minor"),
        pytest.param("1.2.03", id="leading-zero-patch"),
        pytest.param("1.2.3-", id="empty-prerelease"),
        pytest.param("1.2.3-01", id="leading-zero-prerelease"),
        pytest.param("1.2.3-alpha..1", id="empty-prerelease-identifier"),
        pytest.param("1.2.3+", id="empty-build"),
        pytest.param("1.2.3+a..b", id="empty-build-identifier"),
        pytest.param("1.2.3-alpha_1", id="underscore"),
        pytest.param(" 1.2.3", id="leading-space"),
        pytest.param("1.2.3 ", id="trailing-space"),
        pytest.param("1.2.3\n", id="trailing-newline"),
        pytest.param("1\u0661.0.0", id="arabic-indic-digit"),
        pytest.param("\uff11.2.3", id="fullwidth-digit"),
        pytest.param("1.2.3-\u03b1", id="greek-prerelease"),
        pytest.param("a.b.c", id="letters"),
        pytest.param("-1.2.3", id="negative"),
    ],
)
def test_parse_version_rejects_non_semver(text):
    with pytest.raises(ValueError) as info:
        parse_version(text)
    assert str(info.value) == BAD_VERSION


@pytest.mark.parametrize("value", [None, 1, 1.0, b"1.0.0"], ids=repr)
def test_parse_version_rejects_non_strings(value):
    with pytest.raises(ValueError, match=r"^invalid version format"):
        parse_version(value)


# SemVer 2.0, section 11: each is lower than the next.
PRECEDENCE = [
    "0.9.9",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "1.10.0",
    "2.0.0-0",
    "2.0.0-0.a",
    "2.0.0-1",
    "2.0.0-A",
    "2.0.0-a",
    "2.0.0",
    "10.0.0",
]


def test_precedence_follows_semver_2():
    versions = [parse_version(v) for v in PRECEDENCE]
    for lower, higher in pairwise(versions):
        assert lower < higher
        assert higher > lower
        assert lower <= higher
        assert lower != higher
    shuffled = versions[:]
    random.Random(4).shuffle(shuffled)
    assert sorted(shuffled) == versions


def test_build_metadata_takes_no_part_in_precedence():
    a, b = parse_version("1.0.0+a"), parse_version("1.0.0+b")
    assert a == b
    assert hash(a) == hash(b)
    assert not a < b
    assert not b < a
    assert parse_version("1.0.0-rc.1+x") < parse_version("1.0.0")


def test_comparing_with_other_types():
    version = parse_version("1.0.0")
    assert version != "1.0.0"
    assert version != (1, 0, 0)
    with pytest.raises(TypeError):
        _ = version < "2.0.0"  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = version >= 3  # type: ignore[operator]


def test_release_ignores_prerelease_and_build():
    assert parse_version("1.2.3-rc.1+b").release == (1, 2, 3)


# --------------------------------------------------------------------------- constraints


CONSTRAINTS = [
    # Each row: a constraint, versions it allows, versions it refuses.
    (">=1.0.0,<2.0.0", ["1.0.0", "1.9.9"], ["0.9.9", "2.0.0", "2.0.0-rc.1"]),
    (">= 1.0.0 , < 2.0.0", ["1.0.0", "1.9.9"], ["0.9.9", "2.0.0"]),
    (">=1.0 || ^3.1", ["1.0.0", "2.5.0", "3.1.0", "7.0.0"], ["0.9.9"]),
    ("<1.0.0 || ^3.1", ["0.5.0", "3.1.0", "3.9.9"], ["1.0.0", "2.5.0", "3.0.9", "4.0.0"]),
    ("^1.2.3", ["1.2.3", "1.9.0"], ["1.2.2", "2.0.0"]),
    ("^1.2", ["1.2.0", "1.99.0"], ["1.1.9", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.2.2", "0.3.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.2", "0.0.4"]),
    ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
    ("^0", ["0.0.0", "0.9.9"], ["1.0.0"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.2.2", "1.3.0"]),
    ("~1.2", ["1.2.0", "1.2.9"], ["1.1.9", "1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["0.9.9", "2.0.0"]),
    ("~=1.2.3", ["1.2.3", "1.2.9"], ["1.2.2", "1.3.0"]),
    ("~=1.2", ["1.2.0", "1.9.0"], ["1.1.9", "2.0.0"]),
    ("1.2.x", ["1.2.0", "1.2.99"], ["1.1.9", "1.3.0"]),
    ("1.2.*", ["1.2.0", "1.2.99"], ["1.3.0"]),
    ("1.*", ["1.0.0", "1.99.0"], ["0.9.0", "2.0.0"]),
    ("1.2", ["1.2.0", "1.2.5"], ["1.3.0"]),
    ("1.2.3", ["1.2.3", "1.2.3+build"], ["1.2.4", "1.2.2", "1.2.3-rc.1"]),
    ("=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("==1.2.3", ["1.2.3"], ["1.2.4"]),
    ("!=1.2.3", ["1.2.2", "1.2.4"], ["1.2.3", "1.2.3+build"]),
    (">1.2.3", ["1.2.4", "2.0.0"], ["1.2.3", "1.0.0"]),
    (">1.2", ["1.3.0"], ["1.2.9"]),
    (">=1.2.3", ["1.2.3", "9.0.0"], ["1.2.2"]),
    ("<1.2.3", ["1.2.2", "0.0.0"], ["1.2.3", "1.2.3-rc.1"]),
    ("<=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("<=1.2", ["1.2.9"], ["1.3.0"]),
    ("*", ["0.0.0", "99.0.0", "1.0.0-rc.1"], []),
    ("", ["0.0.0", "1.0.0-rc.1"], []),
    ("x", ["3.0.0"], []),
    ("latest", ["3.0.0"], []),
    # Pre-releases only match a bound naming a pre-release of the same X.Y.Z.
    (">=1.0.0", ["1.0.0", "2.0.0"], ["2.0.0-rc.1", "1.0.1-alpha"]),
    (">=2.0.0-rc.0", ["2.0.0-rc.0", "2.0.0-rc.1", "2.0.0", "3.0.0"], ["2.0.1-rc.1", "2.0.0-beta"]),
    (
        "^1.2.3-beta.2",
        ["1.2.3-beta.2", "1.2.3-beta.3", "1.2.3", "1.5.0"],
        ["1.2.3-beta.1", "1.2.4-a"],
    ),
]


@pytest.mark.parametrize(
    ("constraint", "allowed", "refused"), CONSTRAINTS, ids=[c[0] or "empty" for c in CONSTRAINTS]
)
def test_constraint_forms(constraint, allowed, refused):
    parsed = parse_constraint(constraint)
    for version in allowed:
        assert parsed.allows(version), version
        assert parsed.allows(parse_version(version)), version
    for version in refused:
        assert not parsed.allows(version), version


def test_constraint_keeps_its_text():
    assert str(parse_constraint("  >=1.0.0,<2.0.0 ")) == ">=1.0.0,<2.0.0"
    assert parse_constraint("").text == "*"


def test_allows_rejects_an_invalid_version():
    with pytest.raises(ValueError, match=r"^invalid version format"):
        parse_constraint("*").allows("1.0")


@pytest.mark.parametrize(
    "text",
    [
        ">=",
        ">=abc",
        ">=1.0.0 |",
        "||",
        ">=1.0.0 ||",
        "|| >=1.0.0",
        "=>1.0.0",
        "1.0.0 - 2.0.0",
        "1.0.0 && 2.0.0",
        "!=1.2",
        ">=*",
        "^x",
        "~=1",
        ">=01.0.0",
        "1.2-beta",
        "1.2.3-alpha..1",
        "1.2.3-01",
        "1.2.3+build",
        ">=1\u0661.0.0",
        ">=1.0.0.0",
    ],
)
def test_malformed_constraints(text):
    with pytest.raises(ValueError) as info:
        parse_constraint(text)
    assert str(info.value) == f"invalid dependency version constraint: {text}"


def test_non_string_constraint():
    with pytest.raises(ValueError) as info:
        parse_constraint(None)  # type: ignore[arg-type]
    assert str(info.value) == "invalid dependency version constraint: None"


# --------------------------------------------------------------------------- properties

_numbers = st.integers(min_value=0, max_value=10**6)
_alnum_ids = st.from_regex(r"[0-9]*[A-Za-z-][0-9A-Za-z-]{0,6}", fullmatch=True)
_pre_ids = st.one_of(_numbers.map(str), _alnum_ids)
_build_ids = st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True)


@st.composite
def semvers(draw: st.DrawFn) -> str:
    text = ".".join(str(draw(_numbers)) for _ in range(3))
    pre = draw(st.lists(_pre_ids, max_size=3))
    build = draw(st.lists(_build_ids, max_size=2))
    if pre:
        text += "-" + ".".join(pre)
    if build:
        text += "+" + ".".join(build)
    return text


_releases = st.tuples(_numbers, _numbers, _numbers)


@settings(max_examples=150, deadline=None)
@given(semvers())
def test_str_after_parse_is_identity(text):
    assert str(parse_version(text)) == text


@settings(max_examples=150, deadline=None)
@given(_releases, _releases)
def test_release_ordering_is_tuple_ordering(a, b):
    va, vb = parse_version("{}.{}.{}".format(*a)), parse_version("{}.{}.{}".format(*b))
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
    assert va.release == a


@settings(max_examples=100, deadline=None)
@given(semvers())
def test_prerelease_sorts_before_its_release(text):
    version = parse_version(text)
    release = parse_version("{}.{}.{}".format(*version.release))
    assert (version < release) == bool(version.prerelease)
    assert version <= release


@pytest.mark.parametrize("text", ["1.x.3", "1.*.2", "x.2", "*.1.0"])
def test_a_number_after_a_wildcard_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_constraint(text)
    assert str(caught.value) == f"invalid dependency version constraint: {text}"
