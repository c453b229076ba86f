import pytest

from initstudy.config import expand, load_study, parse_override, presets
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
    ("seeds=0", "seeds must be >= 1"),
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
