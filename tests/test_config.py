import pytest

from initstudy.config import check_study_name, expand, load_study, parse_override, presets
from initstudy.errors import StudyError

from .conftest import write_study


def test_presets_load_and_expand():
    assert {"default", "smoke", "gpu"} <= set(presets())
    for name in presets():
        study = load_study(name)
        specs = expand(study)
        assert len(specs) == (len(study.models) * len(study.activations) * len(study.initializers)
                              * len(study.seeds))
        assert len({s.run_id for s in specs}) == len(specs)


def test_run_id_is_a_hash_of_the_resolved_config(study_file):
    a = expand(load_study(str(study_file)))
    b = expand(load_study(str(study_file)))
    assert [s.run_id for s in a] == [s.run_id for s in b]
    c = expand(load_study(str(study_file), ["lr=0.01"]))
    assert not {s.run_id for s in a} & {s.run_id for s in c}
    # Only the threshold changed: analysis settings do not retrain anything.
    d = expand(load_study(str(study_file), ["threshold=0.7"]))
    assert [s.run_id for s in a] == [s.run_id for s in d]


def test_label_does_not_change_run_id(tmp_path):
    a = expand(load_study(str(write_study(tmp_path / "a.yaml", initializers=["zeros"]))))
    b = expand(load_study(str(write_study(tmp_path / "b.yaml", initializers=[{"name": "zeros", "label": "Z"}]))))
    assert [s.run_id for s in a] == [s.run_id for s in b]
    assert b[0].init.label == "Z"


def test_options_fill_defaults_and_label():
    study = load_study("gpu")
    normal = next(i for i in study.initializers if i.name == "normal")
    assert dict(normal.options) == {"std": 0.01, "mean": 0.0}
    assert normal.label == "normal"
    study = load_study("default", ["initializers=[{name: normal, std: 0.1}, kaiming_normal]"])
    assert study.initializers[0].label == "normal(std=0.1)"


@pytest.mark.parametrize("override, message", [
    ("initializers=[xavier, zeros]", "unknown initializer 'xavier'; choose one of: zeros"),
    ("models=[resnet9]", "unknown model 'resnet9'; choose one of: simple, plain"),
    ("activations=[swish]", "unknown activation 'swish'"),
    ("dataset=imagenet", "unknown dataset 'imagenet'"),
    ("lr=0", "lr must be > 0"),
    ("lr=-1", "lr must be > 0"),
    ("epochs=0", "epochs must be > 0"),
    ("epochs=2.5", "epochs must be an integer"),
    ("threshold=1.5", "threshold must be > 0 and <= 1"),
    ("seeds=[1, 1]", "seeds lists a seed twice"),
    ("seeds=0", "seeds must be a count from 1 to 1000"),
    ("lr=.nan", "lr must be a number"),
    ("initializers=[{name: normal, sd: 1}]", "takes no option 'sd'"),
    ("initializers=[{name: zeros, gain: 2}]", "has no gain"),
    ("initializers=[{name: kaiming_normal, mode: fan_sum}]", "mode must be one of fan_in, fan_out, fan_avg"),
    ("initializers=[{name: sparse, sparsity: 1.5}]", "option sparsity out of range"),
    ("initializers=[{name: kaiming_normal, bias: random}]", "bias must be zeros, torch or a number"),
    ("models=[resnet]", "resnet depth must be 6n + 2"),
    ("bn=maybe", "bn must be true or false"),
    ("initializers=[zeros, zeros]", "listed twice"),
])
def test_bad_values_name_the_problem(study_file, override, message):
    with pytest.raises(StudyError, match=None) as err:
        load_study(str(study_file), [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("initializers: [zeros\nseeds: 3\n")
    with pytest.raises(StudyError, match="not valid YAML at line"):
        load_study(str(bad))
    bad.write_text("- just\n- a list\n")
    with pytest.raises(StudyError, match="must be a mapping"):
        load_study(str(bad))
    bad.write_text("initializers: [zeros]\nlearning_rate: 0.1\n")
    with pytest.raises(StudyError, match="unknown key 'learning_rate'; valid keys:"):
        load_study(str(bad))
    bad.write_text("seeds: 3\n")
    with pytest.raises(StudyError, match="'initializers' is required"):
        load_study(str(bad))
    with pytest.raises(StudyError, match="not found"):
        load_study(str(tmp_path / "missing.yaml"))
    with pytest.raises(StudyError, match="unknown study 'nope'; choose a preset"):
        load_study("nope")


def test_parse_override():
    assert parse_override("seeds=[0, 2]") == ("seeds", [0, 2])
    assert parse_override("data_dir=/tmp/x") == ("data_dir", "/tmp/x")
    with pytest.raises(StudyError, match="key=value"):
        parse_override("epochs")
    with pytest.raises(StudyError, match="unknown key 'epoch'"):
        parse_override("epoch=3")


@pytest.mark.parametrize("name", ["default", "my-study.v2", "A_1", "a" * 100])
def test_study_name_accepts_plain_folder_names(name):
    assert check_study_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "-x", "a b", "a" * 101,
                                  None, 3])
def test_study_name_refuses_paths_and_odd_names(name):
    with pytest.raises(StudyError, match="is not a plain folder name; use 1-100 letters") as err:
        check_study_name(name)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("width=100000", "width must be > 0 and <= 4096, got 100000"),
    ("depth=100000", "depth must be > 0 and <= 200, got 100000"),
    ("seeds=1000000000", "seeds must be a count from 1 to 1000"),
    ("seeds=[0, 4294967296]", "each from 0 to 4294967295"),
    ("epochs=1e300", "epochs must be an integer"),
    ("epochs=10001", "epochs must be > 0 and <= 10000"),
    ("batch_size=100000", "batch_size must be > 0 and <= 65536"),
    ("lr=1e3", "lr must be > 0 and <= 100"),
    ("momentum=1.5", "momentum must be >= 0 and <= 1"),
    ("split_seed=4294967296", "split_seed must be >= 0 and <= 4.29497e+09"),
    # Within the per-key bounds, but 1.4 billion weights (9 layers of 4096 x 4096 x 3 x 3): refused from the
    # shapes alone, without allocating them.
    ("width=4096", "has 1,361,653,770 parameters, more than the 500,000,000 allowed; lower depth or width"),
])
def test_sizes_are_bounded_at_load_time(study_file, override, message):
    import time

    start = time.perf_counter()
    with pytest.raises(StudyError) as err:
        load_study(str(study_file), [override, "models=[plain]", "depth=10"] if override == "width=4096"
                   else [override])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - start < 5


def test_largest_allowed_sizes_load(study_file):
    study = load_study(str(study_file), ["models=[plain, vgg, resnet]", "depth=200", "width=64", "seeds=1000",
                                         "epochs=10000", "lr=100", "momentum=1"])
    assert (study.depth, study.width, len(study.seeds), study.epochs) == (200, 64, 1000, 10000)


def test_float_with_exponent_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string '1e-3'; YAML 1.2 and users read a number.
    assert parse_override("lr=1e-3") == ("lr", 0.001)
    assert parse_override("lr=2.5E-2") == ("lr", 0.025)
    assert parse_override("epochs=10") == ("epochs", 10) and parse_override("data_dir='1e3'") == ("data_dir", "1e3")
    path = tmp_path / "e.yaml"
    path.write_text("initializers: [zeros, kaiming_normal]\nlr: 1e-3\nweight_decay: 5e-4\n")
    study = load_study(str(path))
    assert (study.lr, study.weight_decay) == (0.001, 0.0005)


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("initializers: [zeros, kaiming_normal]\nseeds: 3\nepochs: 2\nseeds: 5\n")
    with pytest.raises(StudyError, match=r"at line 4, column 1: key 'seeds' appears twice \(first at line 2\)"):
        load_study(str(path))
    path.write_text("initializers: [{name: normal, std: 0.1, std: 0.2}]\n")
    with pytest.raises(StudyError, match="key 'std' appears twice"):
        load_study(str(path))
    with pytest.raises(StudyError, match="key 'a' appears twice"):
        parse_override("initializers=[{name: normal, a: 1, a: 2}]")


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\ninitializers: *a9\n")  # 10^10 strings once expanded
    start = time.perf_counter()
    with pytest.raises(StudyError, match=r"at line 2, column \d+: alias \*a0 is not supported"):
        load_study(str(path))
    assert time.perf_counter() - start < 5


def test_folder_in_working_directory_does_not_shadow_a_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert load_study("smoke").source == "smoke"  # a bare preset name is the preset
    with pytest.raises(StudyError, match="study file ./smoke is a folder"):
        load_study("./smoke")  # a path is a path
    write_study(tmp_path / "mine")  # a bare name that is no preset: a file of that name
    assert load_study("mine").name == "tiny"
