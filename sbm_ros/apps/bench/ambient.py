"""Ambient noise: Table I's reverberant protocol with a computer fan in the room, swept in SNR."""

from __future__ import annotations

from sbm_ros.apps.bench.common import BenchConfig, Scene, _log
from sbm_ros.apps.bench.table1 import table1


def ambient_sweep(head, camera, bc: BenchConfig, speech_sources, out: dict):
    """Table I's reverberant protocol (SBM-1 ILPD and PHAT) with a computer fan in the room.

    The fan (:class:`~sbm_ros.sim.ambient.FanNoise`) is in every training and test
    recording at ``fan_snr_db`` re the recording's own clean power, as the paper's fan was; the
    activity mask's noise PSD includes the fan's (measured on a reserved noise-only segment).
    """
    from sbm_ros.sim.ambient import FanNoise

    if not bc.fan_snr_sweep:
        return []
    fan = FanNoise(head, az_deg=bc.fan_az_deg, el_deg=bc.fan_el_deg, seed=bc.seed)
    rows = []
    for snr in bc.fan_snr_sweep:
        name = "no fan" if snr is None else f"fan {snr:g} dB"
        _log(f"ambient noise: {name}")
        sc = Scene(head, camera, bc, speech_sources, name, fan=fan, fan_snr_db=snr)
        r = table1(sc, bc, bc.k1, {}, features=("ilpd",))
        rows.append(dict(snr=snr, sbm=r["ilpd"], phat=r["phat"],
                         ratio=r["ilpd"]["az"][0] / r["phat"]["az"][0]))
    met = [r["snr"] for r in rows if r["snr"] is not None and r["ratio"] < 0.5]
    out["ambient"] = dict(fan=fan.describe(), rows=rows, met=met)
    return rows
