"""Registration by subclassing and typed parameters."""

import pytest

from attacks import Attack
from benchmark.errors import BenchmarkError
from benchmark.plugin import parse_key_values
from benchmark.registry import Registry
from defenses import Defense, InputFilterDefense


def test_subclass_with_name_registers_and_base_without_does_not():
    class Unnamed(InputFilterDefense):
        pass

    class Named(Unnamed):
        """A test filter."""

        name = "test_named_filter"
        strength: float = 1.0

        def filter(self, images):
            return images

    assert Defense.registry.get("test_named_filter") is Named
    assert Unnamed not in dict(Defense.registry.items()).values()
    assert Named.summary() == "A test filter."
    assert [f.name for f in Named.parameters()] == ["strength"]


def test_duplicate_name_names_both_definitions():
    with pytest.raises(BenchmarkError, match="duplicate attack name 'image_level'.*ImageLevel.*Other"):
        class Other(Attack):
            name = "image_level"


def test_parameters_are_type_checked():
    cls = Attack.registry.get("fine_grained")
    assert cls.parse_params({"trigger_size": "4", "trigger_alpha": 1, "victims": "car, person"}) == {
        "trigger_size": 4, "trigger_alpha": 1.0, "victims": ("car", "person")}
    with pytest.raises(BenchmarkError, match="parameter 'trigger_size': expected int, got 'big'"):
        cls.parse_params({"trigger_size": "big"})


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(BenchmarkError, match="did you mean fine_grained"):
        Attack.registry.get("fine_grain")


def test_key_value_parsing():
    assert parse_key_values(["a=1", "b = x"], "--p") == {"a": "1", "b": "x"}
    with pytest.raises(BenchmarkError, match="--p expects key=value"):
        parse_key_values(["oops"], "--p")


def test_registry_decorator_and_reregistering_same_object():
    registry = Registry("thing")

    @registry.register("one")
    def one():
        pass

    registry.add("one", one)  # the same definition again (e.g. a re-imported module) is fine
    assert registry.names() == ["one"]


def test_added_parameter_stays_out_of_keys_at_its_legacy_value():
    class Later(InputFilterDefense):
        name = "test_later_filter"
        strength: float = 1.0
        blend: str = Defense.added("sum", legacy="convex")
        """Added after results were stored with the convex behaviour."""

        def filter(self, images):
            return images

    assert Later().params() == {"strength": 1.0, "blend": "sum"}
    assert Later().key_params() == {"strength": 1.0, "blend": "sum"}
    assert Later(blend="convex").key_params() == {"strength": 1.0}
    assert Later(blend="convex").params()["blend"] == "convex"
