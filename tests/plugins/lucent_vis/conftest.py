import pytest

from mmneurons.plugins.demo.plugin import DemoProvider


@pytest.fixture(scope="module")
def demo():
    return DemoProvider().load("shapes", "cpu")
