#!/usr/bin/env python3
"""Writes geo-test.mmdb, the tiny GeoIP2-Country-style database the routing tests read.

Regenerate with:

    python3 -m venv /tmp/mmdb && /tmp/mmdb/bin/pip install mmdb-writer==0.2.7
    /tmp/mmdb/bin/python opengslb/tests/data/make-geo-test-mmdb.py

The layout is that of MaxMind's GeoIP2-Country: an IPv6 tree with the IPv4 space at ::/96, and records
`{continent: {code}, country: {iso_code}}`. Every network is a documentation or benchmarking range, so no
real address is described. `build_epoch` is fixed so the file is byte-for-byte reproducible.
"""

import os

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def record(country, continent):
    rec = {"continent": {"code": continent}}
    if country is not None:
        rec["country"] = {"iso_code": country}
    return rec


NETWORKS = [
    # (network, country iso_code or None, continent code)
    ("198.51.100.0/24", "DE", "EU"),
    ("203.0.113.0/24", "US", "NA"),
    # Continent only, no country: exercises the continent fallback.
    ("198.18.0.0/15", None, "OC"),
    # IPv6.
    ("2001:db8:4000::/36", "JP", "AS"),
]


class FixedEpochWriter(MMDBWriter):
    """MMDBWriter stamps the current time into the metadata; a fixed one keeps the file reproducible."""

    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = 1_700_000_000
        return meta


def main():
    writer = FixedEpochWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoIP2-Country",
        languages=["en"],
        description="OpenGSLB routing test database (documentation ranges only)",
    )
    for net, country, continent in NETWORKS:
        writer.insert_network(IPSet([net]), record(country, continent))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "geo-test.mmdb")
    writer.to_db_file(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
