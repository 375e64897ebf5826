"""The baseline for B1r: a bare Flask app under gunicorn doing the same INSERT (unique key)."""
import os
import uuid

import psycopg_pool
from flask import Flask, request

app = Flask(__name__)
pool = psycopg_pool.ConnectionPool(os.environ["BARE_DATABASE_URL"], min_size=2, max_size=8, open=True)


@app.post("/reserve/<offer_id>")
def reserve(offer_id):
    body = request.get_json()
    with pool.connection() as conn:
        conn.execute("INSERT INTO bare_reservations (id, offer_id, email) VALUES (%s, %s, %s) "
                     "ON CONFLICT (offer_id, email) DO NOTHING", (str(uuid.uuid4()), offer_id, body["email"]))
    return {"ok": True}, 201
