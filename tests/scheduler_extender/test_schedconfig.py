"""The shipped KubeSchedulerConfiguration: generated from `schedconfig`, and saying what the docs promise."""

from __future__ import annotations

import pathlib

import yaml

from wattwise.scheduler_extender import schedconfig

SHIPPED = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "scheduler" / "kube-scheduler-config.yaml"


def test_shipped_yaml_is_what_the_code_renders() -> None:
    """Regenerate with `make extender-config` after changing schedconfig.py."""
    assert SHIPPED.read_text() == schedconfig.shipped_yaml()


def test_shipped_config_is_a_secondary_scheduler_with_its_own_lease() -> None:
    config = yaml.safe_load(SHIPPED.read_text())
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["profiles"] == [{"schedulerName": "wattwise-scheduler"}]
    assert config["leaderElection"]["resourceName"] == "wattwise-scheduler"


def test_extender_stanza() -> None:
    (stanza,) = schedconfig.render("http://extender:8888/")["extenders"]
    assert stanza == {
        "urlPrefix": "http://extender:8888",
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "weight": 10,
        "nodeCacheCapable": True,
        "enableHTTPS": False,
        "httpTimeout": "5s",
        "ignorable": False,
        "managedResources": [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}],
    }


def test_https_prefix_enables_https() -> None:
    assert schedconfig.render("https://extender:8443")["extenders"][0]["enableHTTPS"] is True


def test_render_keeps_the_default_profile_untouched() -> None:
    profiles = schedconfig.render("http://x")["profiles"]
    assert profiles == [{"schedulerName": "default-scheduler"}, {"schedulerName": "wattwise-scheduler"}]


def test_render_scheduler_config_is_the_wattwise_profile_alone() -> None:
    config = schedconfig.render_scheduler_config("http://127.0.0.1:1234/")
    assert config["profiles"] == [{"schedulerName": "wattwise-scheduler"}]
    assert config["leaderElection"] == {"leaderElect": False}


def test_weight_lets_one_extender_point_outweigh_a_whole_resource_plugin() -> None:
    """score x weight x (MaxNodeScore 100 / MaxExtenderPriority 10): one point must beat one plugin's 0..100."""
    assert 1 * schedconfig.WEIGHT * 100 // 10 >= 100
    assert 10 * schedconfig.WEIGHT * 100 // 10 > 3 * 100  # Fit + BalancedAllocation + ImageLocality
