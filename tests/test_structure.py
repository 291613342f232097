"""The shape of the code: each fact has one home, and modules keep to their one job."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bnviz"


def _modules(*exclude: str) -> dict[str, ast.Module]:
    return {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() not in exclude
    }


def _trainer_private_attributes() -> set[str]:
    """Every self._name the Trainer class sets or defines."""
    tree = ast.parse((PACKAGE / "trainer.py").read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    names = {n.name for n in trainer.body if isinstance(n, ast.FunctionDef)}
    names |= {
        n.attr
        for n in ast.walk(trainer)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_module_outside_the_trainer_touches_its_private_state():
    """Experiments go through Trainer's public API (next_batch, plain_step(s), unrecorded,
    eval_accuracy), never through its batch order, optimizer or recording switch."""
    private = _trainer_private_attributes()
    assert {"_recording", "_one_step"} <= private
    offenders = []
    for name, tree in _modules("trainer.py").items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = ast.unparse(node.value)
            if node.attr in private or (
                node.attr in ("batches", "optimizer") and "trainer" in owner.lower()
            ):
                offenders.append(f"{name}:{node.lineno} {owner}.{node.attr}")
    assert offenders == []


def test_the_sidebar_starts_from_train_configs_defaults():
    from bnviz.config import TrainConfig
    from bnviz.ui.controls import DEFAULTS
    from bnviz.ui.sidebar import widths_from

    d = DEFAULTS
    momentum = None if d["momentum_none"] else d["momentum"]
    widths = widths_from(d["depth"], d["width"])
    shown = {k: d[k] for k in ("dataset", "norm", "bn_impl", "placement", "activation")}
    shown |= {k: d[k] for k in ("batch_size", "eps", "optimizer", "lr", "steps", "seed")}
    assert TrainConfig(**shown, widths=widths, momentum=momentum) == TrainConfig()


def test_the_data_sets_are_listed_once():
    from bnviz import config, datasets

    assert datasets.REAL_DATASETS == tuple(n for n in config.DATASETS if n != "shapes")
    assert "DATASETS = (" not in (PACKAGE / "datasets.py").read_text()
