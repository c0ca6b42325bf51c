"""A long-lived Flight SQL client (the ADBC driver from PyPI) for the Rust tests of `bunker serve`.

Usage: flight_statements.py URI TOKEN. Reads one SQL statement per line on stdin and runs each on
the same connection, printing one JSON line per statement: its rows, and the table versions the
server put in the statement's FlightInfo app_metadata. The driver hands a FlightInfo to Python as
a partition of `adbc_execute_partitions` (serialized Flight.proto), so that is how it is run.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
from adbc_driver_flightsql import DatabaseOptions

FLIGHT_INFO_APP_METADATA = 7  # the field number of app_metadata in Flight.proto's FlightInfo


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def app_metadata(flight_info):
    """The app_metadata of a serialized FlightInfo, read by hand: pyarrow's FlightInfo.deserialize
    refuses the descriptor in it ("UNKNOWN descriptor type")."""
    at = 0
    while at < len(flight_info):
        key, at = varint(flight_info, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, at = varint(flight_info, at)
        elif wire == 2:
            length, at = varint(flight_info, at)
            if field == FLIGHT_INFO_APP_METADATA:
                return flight_info[at : at + length]
            at += length
        else:
            raise ValueError(f"unexpected wire type {wire} in FlightInfo")
    return b""


uri, token = sys.argv[1], sys.argv[2]
kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
with flight_sql.connect(uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
    for line in sys.stdin:
        partitions, _ = cur.adbc_execute_partitions(line.strip())
        metadata = app_metadata(partitions[0])
        cur.adbc_read_partition(partitions[0])
        rows = [list(row) for row in cur.fetchall()]
        print(json.dumps({"rows": rows, "versions": json.loads(metadata) if metadata else None}), flush=True)
