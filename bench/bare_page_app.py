"""The baseline for B3r: a bare Flask app under gunicorn rendering the offer page's own template
for one offer, each request: no session, no CSRF cookie or token signing, no cache, no gateway.
The offer is read once, at start (cobuy's page reads it at most twice a second)."""
import os

from flask import Flask, render_template

from services.catalog import languages, offers, pages
from shared import config
from shared.runtime import Runtime

app = Flask(__name__)
app.register_blueprint(pages.pages_bp)  # the templates and their filters (its routes go unused)
languages.install(app)
app.jinja_env.globals["csrf_token"] = lambda: "0" * 64  # a token of the same length, never signed
_runtime = Runtime.create("catalog", config.load())
with _runtime.sessions() as session:
    OFFER = offers.get_offer(session, os.environ["BARE_OFFER_ID"])
_runtime.engine.dispose()


@app.get("/bare/offer")
def offer_page():
    return render_template("offer.html", offer=OFFER, chart=pages.price_chart(OFFER), progress=pages.progress(OFFER),
                           form={}, errors={})
