"""A toy binaural renderer for fast tests (the realistic one is sbm_ros.sim).

Interaural delay 0.6 ms * sin(azimuth); interaural level difference that depends on azimuth and
(through a frequency ripple) on elevation, so both coordinates are observable in ILD and IPD.
"""

import numpy as np

RATE = 16000


def render(signal, az_deg, el_deg, rate=RATE):
    n = len(signal)
    f = np.fft.rfftfreq(n, 1 / rate)
    S = np.fft.rfft(signal)
    tau = 0.0006 * np.sin(np.radians(az_deg))
    ild_db = 10 * (az_deg / 30) * (f / 8000) + 3 * (el_deg / 20) * np.sin(2 * np.pi * f / 4000)
    gl = 10 ** (ild_db / 40)
    gr = 10 ** (-ild_db / 40)
    left = np.fft.irfft(S * gl * np.exp(-1j * np.pi * f * (-tau)), n)
    right = np.fft.irfft(S * gr * np.exp(-1j * np.pi * f * tau), n)
    return np.stack([left, right], axis=1)


def white(n, seed):
    return np.random.default_rng(seed).normal(0, 0.1, n)


def babble(n, seed, rate=RATE):
    """Speech-like: noise bursts with 200 ms gaps and a spectral tilt."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, n)
    x = np.convolve(x, [1, 0.9, 0.5], mode='same')
    env = ((np.arange(n) // int(0.25 * rate)) % 2 == 0).astype(float)
    return x * env


def make_dataset(root, az_values, el_values, duration=0.5, seed=0, noise=1e-4):
    """Write a dataset folder (degrees) on the toy head; returns the target array."""
    import os
    from sbm_ros.core.dataset import TARGETS_FILE
    from sbm_ros.core.audio_io import write_wav
    os.makedirs(root, exist_ok=True)
    rows = ['file,azimuth_deg,elevation_deg']
    targets = []
    k = 0
    rng = np.random.default_rng(seed)
    for az in az_values:
        for el in el_values:
            x = render(white(int(duration * RATE), seed + k), az, el)
            x += noise * rng.normal(size=x.shape)
            name = f'pos_{k:03d}.wav'
            write_wav(os.path.join(root, name), x, RATE)
            rows.append(f'{name},{az},{el}')
            targets.append((az, el))
            k += 1
    with open(os.path.join(root, TARGETS_FILE), 'w') as fh:
        fh.write('\n'.join(rows) + '\n')
    return np.array(targets, float)


# A two-row calibration sweep (virtual_head `sweep`), short enough for a test.
SHORT_SWEEP = """\
name: short test sweep
camera: narrow
sample_rate: 16000
room: {t60: 0.3, distance: 2.0}
snr_db: 30
seed: 0
lead_in_s: 0.5
tail_s: 0.5
camera_rate: 15
loudspeaker:
  level_dbfs: -20
  marker: {dictionary: DICT_4X4_50, id: 7, side_m: 0.08}
  raster: {rows: 2, speed_deg_s: 2.1, margin_px: 48, turn_pause_s: 0.6}
"""
