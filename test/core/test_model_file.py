"""Model file: round trip and every corrupt-model case fails with a message naming the problem."""

import json
import os
import zipfile

import numpy as np
import pytest

from sbm_ros.core.features import FeatureConfig
from sbm_ros.core.gllim import GLLiM
from sbm_ros.core.model import ModelError, SBMModel


@pytest.fixture(scope='module')
def model():
    cfg = FeatureConfig(feature_type='ild', n_fft=64, hop=16)   # D = 32, small and fast
    rng = np.random.default_rng(0)
    X = rng.uniform(-10, 10, (120, 2))
    Y = np.sin(X @ rng.normal(size=(2, cfg.dim)) * 0.1) + 0.01 * rng.normal(size=(120, cfg.dim))
    g = GLLiM(n_components=4).fit(X, Y)
    return SBMModel.from_gllim(g, cfg, n_sources=1, dims_per_source=2, target_space='degrees',
                               n_train=120)


def test_round_trip(model, tmp_path):
    path = model.save(str(tmp_path / 'm.npz'))
    back = SBMModel.load(path)
    for name in ('pi', 'c', 'Gamma', 'A', 'b', 'sigma2'):
        np.testing.assert_array_equal(getattr(back.params, name), getattr(model.params, name))
    assert back.feature_config == model.feature_config
    assert back.target_names == ['azimuth_deg', 'elevation_deg']
    assert back.n_train == 120 and back.n_sources == 1
    assert back.info['n_components_requested'] == 4
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]   # atomic: no leftovers


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match='does not exist'):
        SBMModel.load(str(tmp_path / 'nope.npz'))


def test_truncated_file(model, tmp_path):
    path = model.save(str(tmp_path / 'm.npz'))
    data = open(path, 'rb').read()
    for cut in (0, 10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f'cut{cut}.npz'
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelError, match='truncated or corrupt'):
            SBMModel.load(str(bad))


def test_garbage_file(tmp_path):
    bad = tmp_path / 'garbage.npz'
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match='truncated or corrupt'):
        SBMModel.load(str(bad))


def _rewrite(path, out, meta_update=None, drop=None, replace=None):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays['metadata']))
    meta.update(meta_update or {})
    arrays['metadata'] = np.array(json.dumps(meta))
    for k in drop or []:
        arrays.pop(k)
    arrays.update(replace or {})
    np.savez(out, **arrays)
    return str(out)


def test_other_version(model, tmp_path):
    path = model.save(str(tmp_path / 'm.npz'))
    bad = _rewrite(path, tmp_path / 'v99.npz', {'format_version': 99})
    with pytest.raises(ModelError, match='format version 99'):
        SBMModel.load(bad)


def test_not_a_model(tmp_path):
    p = tmp_path / 'other.npz'
    np.savez(p, x=np.zeros(3))
    with pytest.raises(ModelError, match='not an sbm_ros model'):
        SBMModel.load(str(p))


def test_missing_and_misshaped_arrays(model, tmp_path):
    path = model.save(str(tmp_path / 'm.npz'))
    with pytest.raises(ModelError, match='lacks the array'):
        SBMModel.load(_rewrite(path, tmp_path / 'noA.npz', drop=['A']))
    A = model.params.A[:, :-3]
    with pytest.raises(ModelError, match='parameter A has shape'):
        SBMModel.load(_rewrite(path, tmp_path / 'shape.npz', replace={'A': A}))
    nan = model.params.sigma2.copy()
    nan[0] = np.nan
    with pytest.raises(ModelError, match='non-finite'):
        SBMModel.load(_rewrite(path, tmp_path / 'nan.npz', replace={'sigma2': nan}))


def test_feature_settings_that_do_not_match_the_arrays(model, tmp_path):
    path = model.save(str(tmp_path / 'm.npz'))
    feats = dict(model.feature_config.to_dict(), feature_type='ilpd')   # D would be 3x larger
    with pytest.raises(ModelError, match='feature settings give D'):
        SBMModel.load(_rewrite(path, tmp_path / 'feat.npz', {'features': feats}))


def test_audio_mismatch_is_named(model):
    with pytest.raises(ModelError, match='44100 Hz does not match'):
        model.check_audio(44100)
    with pytest.raises(ModelError, match='2-channel'):
        model.check_audio(16000, channels=1)
    model.check_audio(16000)


def test_zip_is_readable_by_plain_numpy(model, tmp_path):
    path = model.save(str(tmp_path / 'm.npz'))
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z['metadata']))['format'] == 'sbm_ros.model'
