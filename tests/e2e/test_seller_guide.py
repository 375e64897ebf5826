"""docs/seller-guide.md, run top to bottom as a seller would paste it: every block, unchanged."""
from __future__ import annotations

import json
import os
import re
import subprocess

from tests.support import ROOT


def test_the_seller_guide_runs_top_to_bottom_unchanged(system, tmp_path):
    guide = (ROOT / "docs" / "seller-guide.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", guide, re.S | re.M)
    assert len(blocks) >= 5, "the guide lost its examples"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "COBUY": system.base_url})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    answers, decoder, text, at = [], json.JSONDecoder(), result.stdout, 0
    while (at := text.find("{", at)) != -1:  # the JSON answers, printed one after another
        answer, at = decoder.raw_decode(text, at)
        answers.append(answer)
    offer = next(a for a in answers if a.get("title") == "Steel kettle 1.7 l")
    assert offer["invite_at"].startswith("2030-05-25") and offer["min_decrement"] == 100
    won = next(a for a in answers if "intercepted_seller_id" in a)
    assert won["condition"]["seller_name"] == "Teapot Ltd"
    refused = next(a for a in answers if a.get("code") == "not_better")
    assert (refused["price_to_beat"], refused["minimum_to_beat"]) == (4799, 19)
    listed = answers[-1]
    assert listed == {"items": [], "count": 0}, listed
