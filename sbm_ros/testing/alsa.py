"""A virtual ALSA capture device that plays back a raw PCM file (no sound card needed).

ALSA's ``file`` PCM plugin, given an ``infile``, replaces the samples a capture stream reads with
the bytes of that file.  Stacked on the ``null`` PCM (no hardware) and behind a ``plug`` PCM (so
clients may ask for any sample format, which ``plug`` converts from S16_LE), it gives PortAudio /
``sounddevice`` a named input device whose samples are exactly the file's.  The configuration is
written to a temporary directory and selected through ``ALSA_CONFIG_PATH``; nothing is written to
``~/.asoundrc``.

Behaviour verified with alsa-lib 1.2.8 / PortAudio 19.6 (Debian 12) through ``sounddevice``:

* the captured int16 frames equal the file's frames, from the first one;
* the device is NOT paced by a clock: the ``null`` slave is always ready, so a capture runs as
  fast as the reader reads (one second of audio arrives in about a millisecond);
* at end of file there is no error, no silence and no clean loop: the stream goes on delivering
  stale contents of its ring buffer (repeats of recently read frames).  Make the file at least as
  long as what the test reads, or pad it (``pad_frames`` of :func:`write_raw_s16le`).

ALSA reads its configuration when PortAudio initialises, i.e. when ``sounddevice`` is imported.
Enter :class:`AlsaFilePcm` before importing ``sounddevice``, call :func:`refresh_portaudio` after
entering it, or pass :attr:`AlsaFilePcm.env` to a subprocess (e.g. a capture node).

Example::

    with AlsaFilePcm('/tmp/ears.raw', rate=16000) as pcm:
        import sounddevice as sd
        refresh_portaudio()
        x = sd.rec(16000, samplerate=16000, channels=2, dtype='int16',
                   device=pcm.device_name, blocking=True)
"""

import os
import re
import shutil
import sys
import tempfile

__all__ = ['AlsaFilePcm', 'alsa_config_text', 'default_alsa_config', 'refresh_portaudio',
           'write_raw_s16le', 'read_raw_s16le']

#: where Debian (and most distributions) keep alsa-lib's top-level configuration
_ALSA_CONF_CANDIDATES = ('/usr/share/alsa/alsa.conf', '/etc/alsa/alsa.conf')

_NAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')


def default_alsa_config():
    """Return the system's top-level ``alsa.conf`` (ALSA_CONFIG_PATH replaces it, so keep it)."""
    for path in _ALSA_CONF_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError('no alsa.conf found in %s (is libasound2 installed?)'
                            % ', '.join(_ALSA_CONF_CANDIDATES))


def _quote(text):
    return '"' + str(text).replace('\\', '\\\\').replace('"', '\\"') + '"'


def alsa_config_text(raw_path, device_name='sbm_virtual_ears', rate=16000, channels=2):
    """ALSA configuration defining capture PCM ``device_name`` that reads ``raw_path``.

    ``raw_path`` holds headerless interleaved S16_LE frames with ``channels`` channels.
    A second PCM, ``<device_name>_raw``, is the file plugin itself (S16_LE only).
    """
    if not _NAME_RE.match(device_name):
        raise ValueError('device_name must be an identifier, got %r' % (device_name,))
    if int(rate) <= 0 or int(channels) <= 0:
        raise ValueError('rate and channels must be positive')
    raw = device_name + '_raw'
    return '\n'.join([
        '# written by sbm_ros.testing.alsa: capture device reading a raw S16_LE file',
        'pcm.%s {' % raw,
        '    type file',
        '    slave.pcm "null"',
        '    file "/dev/null"',
        '    infile %s' % _quote(os.path.abspath(raw_path)),
        '    format "raw"',
        '}',
        'pcm.%s {' % device_name,
        '    type plug',
        '    slave {',
        '        pcm "%s"' % raw,
        '        format S16_LE',
        '        channels %d' % int(channels),
        '        rate %d' % int(rate),
        '    }',
        '    hint {',
        '        show on',
        '        description "sbm_ros virtual ears (file %s)"' % os.path.basename(raw_path),
        '    }',
        '}',
        '',
    ])


class AlsaFilePcm:
    """Context manager: a named ALSA capture device whose samples come from a raw file.

    On entry it writes the configuration into a temporary directory and sets
    ``os.environ['ALSA_CONFIG_PATH']`` to ``<system alsa.conf>:<that file>``; on exit it restores
    the previous value and removes the directory.  :attr:`env` is a full environment for
    subprocesses that should see the device.
    """

    def __init__(self, raw_path, rate=16000, channels=2, device_name='sbm_virtual_ears',
                 directory=None):
        if not os.path.isfile(raw_path):
            raise FileNotFoundError(raw_path)
        frame_bytes = 2 * int(channels)
        size = os.path.getsize(raw_path)
        if size == 0 or size % frame_bytes:
            raise ValueError('%s: %d bytes is not a whole number of %d-channel S16_LE frames'
                             % (raw_path, size, channels))
        self.raw_path = os.path.abspath(raw_path)
        self.rate = int(rate)
        self.channels = int(channels)
        self.device_name = device_name
        self.n_frames = size // frame_bytes
        self._directory = directory
        self._tmpdir = None
        self._saved = None
        self.config_path = None

    @property
    def config_search_path(self):
        """Value given to ``ALSA_CONFIG_PATH`` (colon-separated files, read in order)."""
        return default_alsa_config() + ':' + self.config_path

    @property
    def env(self):
        """A copy of ``os.environ`` with the device configured (for ``subprocess``)."""
        if self.config_path is None:
            raise RuntimeError('enter the AlsaFilePcm context first')
        env = dict(os.environ)
        env['ALSA_CONFIG_PATH'] = self.config_search_path
        return env

    def __enter__(self):
        self._tmpdir = tempfile.mkdtemp(prefix='sbm_alsa_', dir=self._directory)
        self.config_path = os.path.join(self._tmpdir, 'asoundrc')
        with open(self.config_path, 'w') as fh:
            fh.write(alsa_config_text(self.raw_path, self.device_name, self.rate,
                                      self.channels))
        self._saved = os.environ.get('ALSA_CONFIG_PATH')
        os.environ['ALSA_CONFIG_PATH'] = self.config_search_path
        return self

    def __exit__(self, *exc):
        if self._saved is None:
            os.environ.pop('ALSA_CONFIG_PATH', None)
        else:
            os.environ['ALSA_CONFIG_PATH'] = self._saved
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None
        self.config_path = None
        return False


def refresh_portaudio():
    """Make an already imported ``sounddevice`` re-read the ALSA configuration / device list.

    A no-op when ``sounddevice`` has not been imported yet (it will read the configuration when
    it is).  Do not call it while streams are open.
    """
    sd = sys.modules.get('sounddevice')
    if sd is None:
        return
    sd._terminate()
    sd._initialize()


def write_raw_s16le(path, samples, pad_frames=0):
    """Write ``samples`` as headerless interleaved S16_LE; returns the number of frames written.

    ``samples``: int16 array ``(n, channels)``, or float array in [-1, 1) (full scale 1.0 =
    32768, clipped).  ``pad_frames`` zero frames are appended (see the end-of-file note above).
    """
    import numpy as np

    x = np.asarray(samples)
    if x.ndim != 2:
        raise ValueError('samples must have shape (n_frames, channels), got %s' % (x.shape,))
    if x.dtype != np.int16:
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError('samples must be int16 or floating point, got %s' % x.dtype)
        x = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    if pad_frames:
        x = np.concatenate([x, np.zeros((int(pad_frames), x.shape[1]), np.int16)])
    x.astype('<i2').tofile(path)
    return x.shape[0]


def read_raw_s16le(path, channels=2):
    """Read a headerless interleaved S16_LE file into an int16 array ``(n, channels)``."""
    import numpy as np

    return np.fromfile(path, dtype='<i2').reshape(-1, int(channels))


def main(argv=None):
    """``python -m sbm_ros.testing.alsa FILE.raw [--rate R] [--name N]``: a persistent device.

    Writes ``FILE.raw.asoundrc`` next to the file and prints the ``export`` line that makes the
    device visible, e.g. ``eval "$(python -m sbm_ros.testing.alsa ears.raw)"``.
    """
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog='python -m sbm_ros.testing.alsa',
                                     description=main.__doc__)
    parser.add_argument('raw_file', help='headerless interleaved S16_LE samples')
    parser.add_argument('--rate', type=int, default=16000)
    parser.add_argument('--channels', type=int, default=2)
    parser.add_argument('--name', default='sbm_virtual_ears', help='ALSA device name')
    args = parser.parse_args(argv)
    config = os.path.abspath(args.raw_file) + '.asoundrc'
    with open(config, 'w') as fh:
        fh.write(alsa_config_text(args.raw_file, args.name, args.rate, args.channels))
    print('export ALSA_CONFIG_PATH=%s' % shlex.quote(default_alsa_config() + ':' + config))
    print('# capture device: %s' % args.name)
    return 0


if __name__ == '__main__':
    sys.exit(main())
