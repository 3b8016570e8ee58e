"""The registry's shape (a leaf the families register into), `camkit models --classes`, the one
ImageNet class list, and the timm-style forward_features/forward_head of camkit's own nets."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from camkit.cli.app import app
from camkit.models import get_spec, list_models, load_model
from camkit.models.registry import ModelSpec, register

MODELS_DIR = Path(__file__).resolve().parents[1] / "camkit" / "models"


def _camkit_imports(path: Path) -> set[str]:
    """Modules of camkit.models that ``path`` imports (at any level, relative imports resolved)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                out |= {f"camkit.models.{node.module}"} if node.module else {f"camkit.models.{a.name}" for a in node.names}
            elif node.level == 0 and node.module and node.module.startswith("camkit.models"):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("camkit.models")}
    return out


def test_registry_is_a_leaf():
    # The registry knows no family: every family imports the registry, never the other way round.
    imports = _camkit_imports(MODELS_DIR / "registry.py")
    assert imports <= {"camkit.models.kinds", "camkit.models.memory_format", "camkit.models.weights",
                       "camkit.models.weights_arg"}, imports
    assert not imports & {s.family for s in list_models()}
    assert "importlib" not in (MODELS_DIR / "registry.py").read_text(encoding="utf-8")


def test_every_family_is_imported_by_the_package():
    # One import line per family in camkit/models/__init__.py; each family module registers its own names.
    init = _camkit_imports(MODELS_DIR / "__init__.py")
    families = {s.family for s in list_models()}
    assert families <= init, families - init
    assert {"camkit.models.lite0", "camkit.models.torchvision_exact", "camkit.models.gap_surgery",
            "camkit.models.cifar", "camkit.models.torchvision_gradient"} <= families


def test_new_family_is_one_register_call():
    spec = ModelSpec("test_only_family_model", "camkit", "exact", "a test entry",
                     lambda weights, num_classes, pool: load_model("wrn_40_2", weights="random"))
    register(spec)
    try:
        assert get_spec("test_only_family_model") is spec
        assert load_model("test_only_family_model", weights="random").name == "wrn_40_2"
        with pytest.raises(ValueError, match="already registered"):
            register(spec)
    finally:
        from camkit.models import registry

        registry._REGISTRY.pop("test_only_family_model")


def test_timm_names_resolve_through_the_timm_family():
    assert get_spec("timm/resnet18").source == "timm"
    assert get_spec("timm/resnet18").family == "camkit.models.timm_adapter"


@pytest.mark.parametrize("code", [
    "import camkit, sys; print('torch' in sys.modules)",
    "import sys; sys.argv = ['camkit', '--help']\nfrom camkit.cli.app import app\n"
    "try:\n    app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)",
])
def test_import_camkit_and_help_do_not_import_torch(code):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).strip().splitlines()[-1] == "False"


runner = CliRunner()


def test_models_classes_default_model_lists_imagenet():
    r = runner.invoke(app, ["models", "--classes"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1000 and lines[0] == "0\ttench" and lines[281] == "281\ttabby" and lines[999] == "999\ttoilet tissue"


def test_models_classes_of_torchvision_model_need_no_download(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: loading resnet50's weights would fail offline
    r = runner.invoke(app, ["models", "--classes", "--model", "resnet50"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    from torchvision.models import ResNet50_Weights

    assert r.stdout.splitlines() == [f"{i}\t{n}" for i, n in enumerate(ResNet50_Weights.DEFAULT.meta["categories"])]


def test_models_classes_json_and_other_model():
    r = runner.invoke(app, ["models", "--classes", "--model", "cifar_resnet18", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["model"] == "cifar_resnet18"
    assert doc["classes"][:2] == [{"index": 0, "name": "airplane"}, {"index": 1, "name": "automobile"}]
    assert len(doc["classes"]) == 10


def test_models_classes_of_a_checkpoint(tmp_path):
    from camkit.finetune.checkpoint import make_checkpoint

    m = load_model("wrn_40_2", weights="random", num_classes=3)
    m.categories = ["cat", "dog", "bird"]
    path = tmp_path / "best.pt"
    torch.save(make_checkpoint(m, "wrn_40_2"), path)
    r = runner.invoke(app, ["models", "--classes", "--weights", str(path)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == ["0\tcat", "1\tdog", "2\tbird"]


def test_models_classes_without_names_is_one_line_error():
    # The surgery models' new head is untrained: no class names, and nothing is downloaded to say so.
    r = runner.invoke(app, ["models", "--classes", "--model", "vgg16_gap"], catch_exceptions=False)
    assert r.exit_code == 2 and r.stdout == ""
    assert "has no class names" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_models_list_unchanged():
    r = runner.invoke(app, ["models", "--json"], catch_exceptions=False)
    assert r.exit_code == 0
    names = [d["name"] for d in json.loads(r.stdout)]
    assert names[0] == "efficientnet_lite0" and "resnet50" in names and "wrn_40_2" in names


def test_unknown_class_name_hint_points_to_a_real_command(lite0):
    from camkit.cam.engine import resolve_class
    from camkit.errors import UnknownClassError
    from camkit.io.samples import sample_path

    # The library speaks of the model's categories (no CLI command or flag in its message) ...
    with pytest.raises(UnknownClassError) as e:
        resolve_class("no such animal", lite0.categories, lite0.num_classes)
    assert "camkit models" not in str(e.value) and "--" not in str(e.value) and "categories" in str(e.value)
    # ... the CLI adds the command that lists the names, and that command runs.
    r = runner.invoke(app, ["explain", str(sample_path("chelsea")), "--class", "no such animal"])
    assert r.exit_code == 2, r.stderr
    cmd = re.search(r"`camkit (models[^`]*)`", r.stderr)
    assert cmd, r.stderr
    r = runner.invoke(app, cmd.group(1).split(), catch_exceptions=False)
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "0\ttench"


def test_one_imagenet_class_list_matches_torchvision():
    from torchvision.models import ResNet50_Weights

    from camkit.datasets.imagenet_wnids import IMAGENET_SYNSET_NAMES, IMAGENET_WNIDS
    from camkit.models.imagenet import imagenet_categories, imagenet_classes

    assert imagenet_categories() == list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    wnids = [c.wnid for c in imagenet_classes()]
    # ILSVRC class index convention: index i is the i-th WordNet id in sorted order.
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000 and wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert list(IMAGENET_WNIDS) == wnids
    assert IMAGENET_SYNSET_NAMES[0] == "tench, Tinca tinca" and IMAGENET_SYNSET_NAMES[999].startswith("toilet tissue")
    assert not list(MODELS_DIR.glob("imagenet_classes.txt"))
    assert len((MODELS_DIR.parents[0] / "datasets" / "imagenet_wnids.py").read_text().splitlines()) < 60


CAMKIT_NETS = ["vgg16_gap", "alexnet_gap", "googlenet_gap", "cifar_vgg16_bn_gap", "cifar_resnet18", "cifar_resnet50",
               "wrn_40_2", "efficientnet_lite0"]


@pytest.mark.parametrize("name", CAMKIT_NETS)
def test_camkit_nets_have_timm_style_forward(name):
    torch.manual_seed(0)
    m = load_model(name, weights="random")
    size = 32 if m.preprocess.crop <= 32 else 64
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        f = m.net.forward_features(x)
        torch.testing.assert_close(m.features(x), f, rtol=0, atol=0)
        torch.testing.assert_close(m.net.forward_head(f), m.net(x), rtol=0, atol=0)
        torch.testing.assert_close(m(x), m.net(x), rtol=1e-5, atol=1e-6)
        assert m.net.forward_head(f, pre_logits=True).shape == (2, m.num_features)


def test_library_messages_name_parameters_not_flags():
    # String literals in the library (error messages) speak in parameters (weights=PATH), never in camkit's
    # CLI flags; docstrings may still quote a command line, and other tools' flags (pip, torchrun) are theirs.
    flag = re.compile(r"(?<!pip install )(?<!torchrun )--[a-z]")
    offenders = []
    for path in sorted(MODELS_DIR.parent.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if flag.search(node.value):
                    offenders.append(f"{path.relative_to(MODELS_DIR.parent)}:{node.lineno}: {node.value[:60]!r}")
    assert not offenders, offenders


def test_cifar_weights_error_names_the_parameter():
    from camkit.errors import WeightsError

    with pytest.raises(WeightsError) as e:
        load_model("cifar_resnet18", weights="IMAGENET1K_V1")
    assert "weights=PATH" in str(e.value) and "--weights" not in str(e.value)


def test_bad_pool_is_a_parameter_error():
    from camkit.errors import ParameterError

    with pytest.raises(ParameterError) as e:
        load_model("resnet18", weights="random", pool="median")
    assert e.value.param == "pool"
    with pytest.raises(ParameterError) as e:
        load_model("vgg16", weights="random", pool="max")
    assert e.value.param == "pool"


def test_replace_linear_has_one_home():
    # One implementation of swapping a linear layer, used by every family that changes the class count.
    from camkit.models.linear_head import replace_linear

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    new = replace_linear(net, "1", 7)
    assert net[1] is new and new.out_features == 7 and new.in_features == 4
    defs = [p.name for p in MODELS_DIR.glob("*.py") if "def replace_linear" in p.read_text(encoding="utf-8")]
    assert defs == ["linear_head.py"]
    assert load_model("vgg16", weights="random", num_classes=5).num_classes == 5
    assert load_model("resnet18", weights="random", num_classes=5).num_classes == 5
