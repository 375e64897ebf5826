"""The bench's sink reads only each mail's Subject, and its scenarios poll what arrived: both must
see exactly what the full parser and a full scan would."""
import email.policy
from email.message import EmailMessage

from bench import run as bench_run
from shared.smtpsink import parse_subject, parse_whole

SUBJECTS = [
    "Concluded: Tea B5-100 abc",
    "Price drop: Ürün çayı — now 9.00 € (was 10.00 €)",  # encoded
    "Invitation: beat 12 reservations at 10.00 on " + "a very long title " * 8,  # folded
    "新しい条件：お茶 10 個",
]


def rendered(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "cobuy <no-reply@cobuy.example>"
    message["To"] = "Someone <someone@bench.example>"
    message["Subject"] = subject
    message["X-Subject-Like"] = "Subject: not this one"
    message.set_content("Subject: nor this, in the body\n" * 3)
    return message.as_bytes(policy=email.policy.SMTP)


def test_the_subject_alone_is_what_the_full_parser_reads():
    for subject in SUBJECTS:
        raw = rendered(subject)
        assert parse_subject(raw)["Subject"] == parse_whole(raw)["Subject"] == subject


def test_a_mail_without_a_subject_has_an_empty_one():
    assert parse_subject(b"From: a@b.c\r\nTo: d@e.f\r\n\r\nSubject: in the body\r\n") == {"Subject": ""}


def test_polling_finds_every_match_including_those_that_arrived_between_polls():
    mail = bench_run.Mail()
    for i in range(3):
        mail({"Subject": f"Concluded: T{i}"}, [f"p{i}@x.io"])
    assert [a[1] for a in mail.matching("Concluded: T1")] == ["p1@x.io"]
    assert len(mail.matching("Concluded")) == 3
    mail({"Subject": "Concluded: T1 again"}, ["q@x.io"])
    mail({"Subject": "Other"}, ["r@x.io"])
    assert [a[1] for a in mail.matching("Concluded: T1")] == ["p1@x.io", "q@x.io"]
    assert len(mail.matching("Concluded")) == 4
    assert mail.matching("Concluded") is not mail.matching("Concluded")  # a copy: the caller may keep it
