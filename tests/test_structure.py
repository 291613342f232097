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
            trainers = "trainer" in owner.lower() and not owner.endswith(".config")
            if node.attr in private or (node.attr in ("batches", "optimizer") and trainers):
                offenders.append(f"{name}:{node.lineno} {owner}.{node.attr}")
    assert offenders == []


def test_the_sidebar_starts_from_train_configs_defaults():
    from bnviz.config import TrainConfig
    from bnviz.ui.controls import DEFAULTS
    from bnviz.ui.sidebar import widths_from

    d = DEFAULTS
    momentum = None if d["momentum_none"] else d["momentum"]
    widths = widths_from(d["depth"], d["width"])
    shown = {k: d[k] for k in ("dataset", "arch", "norm", "bn_impl", "placement", "activation")}
    shown |= {k: d[k] for k in ("batch_size", "eps", "optimizer", "lr", "steps", "seed")}
    assert TrainConfig(**shown, widths=widths, momentum=momentum) == TrainConfig()


def test_the_data_sets_are_listed_once():
    from bnviz import config, datasets

    assert datasets.REAL_DATASETS == tuple(n for n in config.DATASETS if n != "shapes")
    assert "DATASETS = (" not in (PACKAGE / "datasets.py").read_text()


def _imports(tree: ast.Module) -> set[str]:
    """What a module imports, as 'module' or 'module.name' (relative imports by their name)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_figures_draw_from_the_record_alone():
    """Figures know a run by its record: nothing from the trainer or the model (the record
    carries the histogram image count and each block's side)."""
    imported = _imports(ast.parse((PACKAGE / "figures.py").read_text()))
    assert not {m for m in imported if m.split(".")[0] in ("trainer", "model", "torch")}


def test_each_module_keeps_to_its_one_job():
    modules = _modules()
    # the record holds and reads numbers; the file format, disk and upload checks are runfile's
    assert not _imports(modules["bnviz/record.py"]) & {"json", "os", "uuid", "re"}
    # figures are the figures: every public function draws one, the kit is plot.py's
    figures = modules["bnviz/figures.py"]
    public = [n.name for n in figures.body if isinstance(n, ast.FunctionDef)]
    public = [name for name in public if not name.startswith("_")]
    assert public and all(name.endswith("_figure") for name in public)
    assert not [n for n in figures.body if isinstance(n, ast.ClassDef)]
