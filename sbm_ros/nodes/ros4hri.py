"""ROS4HRI (REP 155) voice output of ``sbm_localizer``: topics, per-voice publishers, TF.

:class:`VoicePublishers` turns each :class:`sbm_ros.core.voice_stream.VoiceStep` into:

* ``/humans/voices/tracked`` (``hri_msgs/IdsList``): the ids of the confirmed voices, at every
  estimate (also when the window is silent: voices live on for the tracker's death timeout);
* ``/humans/voices/<id>/is_speaking`` (``std_msgs/Bool``) at every estimate;
* ``/humans/voices/<id>/audio`` (``audio_common_msgs/AudioData``): while the voice is speaking,
  the ear mix ``(L+R)/2`` of the audio received since the previous estimate, as 16-bit signed
  little-endian mono PCM at the input's sample rate (AudioData carries no format: this is it).
  When two voices speak at once both get the same mix (no source separation);
* a TF frame ``voice_<id>`` on ``/tf`` (``tf2_msgs/TFMessage``), child of the head frame, at
  ``distance`` metres along the voice's tracked direction (two ears give no range), x axis
  pointing at the voice.

A voice's publishers are created when the tracker confirms it and destroyed when it dies; at
most ``max_voices`` voices get them at once (a flood of spurious voices cannot create thousands
of topics: the others are still listed in ``tracked`` and logged). Everything is published with
the estimate's stamp (the audio time of the window's last sample).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from .common import stream_qos

TRACKED_TOPIC = '/humans/voices/tracked'
VOICE_NS = '/humans/voices'


def hri_interfaces() -> Optional[str]:
    """None when the messages of the ROS4HRI output can be imported, else why not."""
    missing = []
    for mod in ('hri_msgs.msg', 'tf2_msgs.msg', 'audio_common_msgs.msg'):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod.split('.')[0])
    if not missing:
        return None
    pkgs = ' '.join(f"ros-$ROS_DISTRO-{m.replace('_', '-')}" for m in missing)
    return f"{', '.join(missing)} not installed (apt install {pkgs})"


class VoicePublishers:
    """The ROS4HRI voice topics of one node (see the module docstring)."""

    def __init__(self, node, head_frame: Callable[[], str], frame_prefix: str = 'voice_',
                 distance: float = 1.0, max_voices: int = 10,
                 warn: Optional[Callable[[str, str], None]] = None):
        from hri_msgs.msg import IdsList
        from tf2_msgs.msg import TFMessage
        self.node = node
        self.head_frame = head_frame
        self.frame_prefix = frame_prefix
        self.distance = float(distance)
        self.max_voices = int(max_voices)
        self.warn = warn or (lambda key, text: node.get_logger().warning(text))
        self.qos = stream_qos('reliable', 10)
        self.pub_tracked = node.create_publisher(IdsList, TRACKED_TOPIC, self.qos)
        self.pub_tf = node.create_publisher(TFMessage, '/tf', stream_qos('reliable', 100))
        self.voices: Dict[str, tuple] = {}          # id -> (is_speaking pub, audio pub)
        self.counts = {'born': 0, 'died': 0, 'capped': 0}

    # ------------------------------------------------------------------ per voice
    def _open(self, vid: str) -> None:
        from audio_common_msgs.msg import AudioData
        from std_msgs.msg import Bool
        if vid in self.voices:
            return
        if len(self.voices) >= self.max_voices:
            self.counts['capped'] += 1
            self.warn('voices_cap', f'{len(self.voices)} voices already have topics '
                      f'(max_voices={self.max_voices}): no topics for voice {vid}')
            return
        base = f'{VOICE_NS}/{vid}'
        self.voices[vid] = (self.node.create_publisher(Bool, f'{base}/is_speaking', self.qos),
                            self.node.create_publisher(AudioData, f'{base}/audio', self.qos))
        self.counts['born'] += 1

    def _close(self, vid: str) -> None:
        pubs = self.voices.pop(vid, None)
        if pubs is None:
            return
        for p in pubs:
            self.node.destroy_publisher(p)
        self.counts['died'] += 1

    def close(self, stamp=None) -> None:
        """Destroy every voice's topics and say that nothing is tracked any more."""
        for vid in list(self.voices):
            self._close(vid)
        if stamp is not None:
            self._publish_tracked(stamp, [])

    def destroy(self) -> None:
        self.close()
        self.node.destroy_publisher(self.pub_tracked)
        self.node.destroy_publisher(self.pub_tf)

    # ------------------------------------------------------------------ per step
    def _publish_tracked(self, stamp, ids) -> None:
        from hri_msgs.msg import IdsList
        from std_msgs.msg import Header
        self.pub_tracked.publish(IdsList(header=Header(stamp=stamp, frame_id=self.head_frame()),
                                         ids=list(ids)))

    def publish(self, step, stamp) -> None:
        """One :class:`~sbm_ros.core.voice_stream.VoiceStep` with the ROS ``stamp``."""
        from audio_common_msgs.msg import AudioData
        from geometry_msgs.msg import TransformStamped
        from std_msgs.msg import Bool
        from tf2_msgs.msg import TFMessage
        from sbm_ros.core.geometry import direction_to_vector, quaternion_from_direction
        from sbm_ros.core.voice_stream import pcm16_mono
        up = step.update
        for vid in up.died:
            self._close(vid)
        for v in up.voices:
            if v.id not in self.voices:
                self._open(v.id)
        self._publish_tracked(stamp, [v.id for v in up.voices])
        head = self.head_frame()
        tfs = []
        pcm = None
        for v in up.voices:
            pubs = self.voices.get(v.id)
            if pubs is None:
                continue
            pubs[0].publish(Bool(data=bool(v.is_speaking)))
            if v.is_speaking and step.mix.size:
                if pcm is None:
                    pcm = pcm16_mono(step.mix)
                pubs[1].publish(AudioData(data=pcm))
            t = TransformStamped()
            t.header.stamp = stamp
            t.header.frame_id = head
            t.child_frame_id = f'{self.frame_prefix}{v.id}'
            x, y, z = (self.distance * direction_to_vector(v.azimuth_deg, v.elevation_deg))
            t.transform.translation.x, t.transform.translation.y = float(x), float(y)
            t.transform.translation.z = float(z)
            qx, qy, qz, qw = quaternion_from_direction(v.azimuth_deg, v.elevation_deg)
            r = t.transform.rotation
            r.x, r.y, r.z, r.w = float(qx), float(qy), float(qz), float(qw)
            tfs.append(t)
        if tfs:
            self.pub_tf.publish(TFMessage(transforms=tfs))
