"""The console's case template with real plugin decisions, without a service: the chest
X-ray intended-use notice and findings, the support ticket's routing, word weights, and
that the inputs (a reviewer's page shows a stranger's words) are escaped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from twinlens.console.pages import templates
from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens.services.console_sessions import ConsoleLogin
from twinlens.services.keys import Principal
from twinlens.services.review import CaseHistory, CaseView, TaskChoice, weighted_tokens

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LOGIN = ConsoleLogin(Principal(uuid.uuid4(), "acme", uuid.uuid4(), is_admin=False), uuid.uuid4(), "c" * 64, "tl_abcdefgh")


def render(decision: dict, *, texts: dict[str, str], plugin: str, tasks: list[TaskChoice], extras: dict | None = None) -> str:
    job = SimpleNamespace(id=uuid.uuid4(), plugin=plugin, status="succeeded", created_at=NOW, error=None, input_media_type="image/png",
                          model_version=SimpleNamespace(version=f"{plugin}@0123456789ab"))
    case = CaseView(job=job, texts=texts, image_shown=True, has_image=True, inputs_purged=False, decision=decision, heads={},
                    contributions={"image": 0.4, "text": 0.6}, ocr_text=decision.get("ocr_text"), intended_use=decision.get("intended_use"),
                    confidence=0.41, tasks=tasks, needs_review=True, reviewed=False,
                    history=CaseHistory(deliveries=[], feedback=[], actions=[]), extras=extras or {})
    context = {"login": LOGIN, "case": case, "recent": [], "query_string": "", "filters": {}}
    return templates.env.get_template("case.html").render(request=None, **context)


def test_a_chest_xray_case_shows_the_intended_use_notice_and_its_findings():
    from twinlens_chest_xray.decide import INTENDED_USE, DecisionPolicy, decide
    from twinlens_chest_xray.labels import FINDINGS

    prediction = Prediction(heads={
        "findings": HeadPrediction("findings", "multilabel", {name: 0.45 if name == "Edema" else 0.05 for name in FINDINGS}, labels=[]),
        "urgency": HeadPrediction("urgency", "multiclass", {"routine": 0.4, "urgent": 0.35, "critical": 0.25}, label="routine", confidence=0.4),
    }, inputs_present=["image", "report"])
    decision = decide(prediction, DecisionPolicy(), "0.1.0")
    html = render(decision, texts={"report": "FINDINGS: mild edema."}, plugin="chest_xray",
                  tasks=[TaskChoice("findings", "multilabel", [(name, 0.05) for name in FINDINGS], []),
                         TaskChoice("urgency", "multiclass", [("routine", 0.4), ("urgent", 0.35), ("critical", 0.25)], "routine")])
    assert f'role="note" aria-label="Intended use" data-testid="intended-use"><strong>Intended use.</strong> {INTENDED_USE}' in html
    assert html.count("<tr><td>") == len(FINDINGS)  # one row per finding
    assert "urgency reasons" in html and "Edema p=0.45 is within" in html  # why it needs review
    assert html.count('type="checkbox" name="label.findings"') == len(FINDINGS)
    assert '<kbd>9</kbd>' in html and '<kbd>10</kbd>' not in html  # keys 1-9 only


def test_a_support_ticket_shows_its_routing_and_escapes_the_customers_words():
    from twinlens_support_ticket.decision import decide

    prediction = Prediction(heads={
        "fault": HeadPrediction("fault", "multiclass", {"cracked_screen": 0.5, "water_damage": 0.5}, label="cracked_screen", confidence=0.5),
    }, inputs_present=["image", "text"], extras={"ocr_text": "ERR <b>42</b>"})
    decision = decide(prediction)
    hostile = 'My screen <script>alert("x")</script> broke'
    words = weighted_tokens(hostile, [(0, 2, 0.9), (3, 9, -0.5)])
    html = render(decision, texts={"text": hostile}, plugin="support_ticket",
                  tasks=[TaskChoice("fault", "multiclass", [("cracked_screen", 0.5), ("water_damage", 0.5)], "cracked_screen")],
                  extras={"word_weights": {"text": words}, "explained": {"head": "fault", "label": "cracked_screen", "by": "network"}})
    for field in ("fault", "severity", "action", "team"):
        assert f"<dt>{field}</dt><dd>{decision[field]}</dd>" in html, field
    assert "intended-use" not in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "ERR &lt;b&gt;42&lt;/b&gt;" in html  # the OCR text too
    assert '<mark class="ww ww-p3" title="weight +0.90" data-weight="0.9000">My</mark>' in html
    assert '<mark class="ww ww-n2" title="weight -0.50" data-weight="-0.5000">screen</mark>' in html
    assert 'id="heatmap"' not in html  # no heatmap was made: no overlay, no legend
    assert 'value="cracked_screen" checked' in html  # the suggestion is pre-selected


def test_weighted_tokens_keep_the_text_and_shade_by_strength():
    text = "a b c d"
    tokens = weighted_tokens(text, [(6, 7, -0.05), (0, 1, 0.7), (2, 3, 0.4), (2, 5, 0.9), (4, 5, -0.2)])
    assert "".join(token.text for token in tokens) == text
    assert [(t.text, t.level) for t in tokens if t.weight] == [("a", "p3"), ("b", "p2"), ("c", "n1"), ("d", "")]
