"""A real Flight SQL client against `bunker serve`: the ADBC Flight SQL driver from PyPI.

Usage: flight_client.py URI TOKEN. Prints one JSON object with what the server answered, for the
Rust test to check: the results of queries, the tables it lists, and the error text of everything
it must refuse (writes of every kind, reads outside the lake, a missing or wrong token).
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
from adbc_driver_flightsql import DatabaseOptions

uri, token = sys.argv[1], sys.argv[2]


def connect(bearer):
    kwargs = {}
    if bearer is not None:
        kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {bearer}"
    return flight_sql.connect(uri, db_kwargs=kwargs)


def error_of(action):
    try:
        action()
    except Exception as error:  # the driver raises its own DB-API error classes
        return str(error)
    return None


out = {"refused": {}, "updates": {}}
with connect(token) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM cloudtrail")
        out["count"] = cur.fetchone()[0]
        cur.execute(
            "SELECT eventname, eventtime FROM cloudtrail WHERE sourceipaddress = '203.0.113.66' ORDER BY eventtime"
        )
        table = cur.fetch_arrow_table()
        out["names"] = table.column("eventname").to_pylist()
        out["time_type"] = str(table.schema.field("eventtime").type)
        cur.execute("SELECT json_extract_scalar('{\"a\":{\"b\":7}}', '$.a.b') AS v")
        out["json"] = cur.fetchone()[0]

        for sql in [
            "CREATE TABLE stolen AS SELECT * FROM cloudtrail",
            "INSERT INTO cloudtrail SELECT * FROM cloudtrail",
            "DELETE FROM cloudtrail",
            "DROP TABLE cloudtrail",
            "COPY (SELECT * FROM cloudtrail) TO '/tmp/bunker-flight-copy.csv'",
            "CREATE EXTERNAL TABLE secrets STORED AS CSV LOCATION '/etc/passwd'",
            "SELECT * FROM '/etc/passwd'",
            "SET datafusion.execution.batch_size = 1",
        ]:

            def run(sql=sql):
                cur.execute(sql)
                cur.fetchall()

            out["refused"][sql] = error_of(run)

        # The protocol's own update call, as JDBC's executeUpdate sends it.
        def update():
            cur.adbc_statement.set_sql_query("INSERT INTO cloudtrail SELECT * FROM cloudtrail")
            cur.adbc_statement.execute_update()

        out["updates"]["execute_update"] = error_of(update)

    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out["tables"] = sorted(
        table["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for table in schema["db_schema_tables"] or []
    )
    out["table_schema"] = [f.name for f in conn.adbc_get_table_schema("dns")][:3]

for name, bearer in [("missing", None), ("wrong", token[:-1] + ("x" if token[-1] != "x" else "y"))]:

    def query(bearer=bearer):
        with connect(bearer) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()

    out[f"token_{name}"] = error_of(query)

print(json.dumps(out))
