"""The Section 4 plan: the paper's protocol over the study files, cells that pair by seed."""

from __future__ import annotations

import pytest

from hpo.config.reproduce import section4 as s4
from hpo.errors import ConfigError


def test_full_plan_is_the_papers_protocol_over_the_study_files() -> None:
    cfgs = {c.name: c for c in s4.section4_configs(s4.plan(), "sqlite:///unused.db")}
    assert sorted(cfgs) == sorted([
        "section4-resnet18_cifar10_sgd_nobn-s10", "section4-resnet18_cifar10_sgd_bn-s10",
        "section4-vgg11_cifar10_adam_nobn-s10", "section4-vgg11_cifar10_adam_bn-s10",
        "section4-vgg11_svhn_adam_nobn-s5", "section4-vgg11_svhn_adam_bn-s5"])
    resnet = cfgs["section4-resnet18_cifar10_sgd_nobn-s10"]
    assert {k: resnet.fixed[k] for k in ("model", "dataset", "batch_norm", "optimizer",
                                         "momentum", "weight_decay", "augment", "epochs",
                                         "lr_schedule", "kink_grad", "train_subset")} == {
        "model": "resnet18_cifar", "dataset": "cifar10", "batch_norm": False,
        "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "augment": "crop_flip",
        "epochs": 200, "lr_schedule": "none", "kink_grad": "set", "train_subset": None}
    assert cfgs["section4-vgg11_svhn_adam_bn-s5"].fixed["epochs"] == 100
    assert cfgs["section4-vgg11_svhn_adam_bn-s5"].fixed["augment"] == "none"
    # Each alpha at its tuned lr, every alpha with the same seeds.
    spec = resnet.train_spec({"cell": "a0.2-s7"})
    assert (spec.relu_prime_zero, spec.lr, spec.seed) == (0.2, 0.00419, 7)
    assert resnet.train_spec({"cell": "a0-s7"}).seed == 7
    assert resnet.n_trials == 6 * 10 and resnet.sampler.name == "grid"
    assert resnet.baseline is None


def test_quick_plan_says_so_and_runs_two_alphas_two_seeds_one_epoch() -> None:
    p = s4.plan(quick=True, model="resnet18", batch_norm="off")
    (cfg,) = s4.section4_configs(p, "sqlite:///unused.db")
    assert cfg.name == "section4-quick-not-comparable-n128-resnet18_cifar10_sgd_nobn-s2"
    assert sorted(cfg.cells) == ["a0-s0", "a0-s1", "a1-s0", "a1-s1"]
    assert (cfg.fixed["epochs"], cfg.fixed["device"], cfg.fixed["train_subset"]) == (
        1, "auto", 128)


@pytest.mark.parametrize("kwargs, flag", [
    ({"model": "resnet50"}, "--model 'resnet50'"),
    ({"batch_norm": "maybe"}, "--batch-norm 'maybe'"),
    ({"model": "resnet18", "dataset": "svhn"}, "no such protocol"),
    ({"seeds": 0}, "--seeds 0"),
])
def test_bad_options_are_one_line(kwargs: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag) as err:
        s4.plan(**kwargs)
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
