"""The connection to the SMTP relay as COBUY_SMTP_URL describes it: plain, STARTTLS (when offered,
or required), implicit TLS, AUTH. A relay that refuses our credentials or our TLS is the operator's
to fix, not the mail's: a temporary failure with a clear reason, retried with backoff, never a crash."""
from __future__ import annotations

import logging
import smtplib
import ssl

from shared.config import SmtpSettings

log = logging.getLogger(__name__)
TIMEOUT = 15


class RelayRefused(Exception):
    """The relay refused our TLS or credentials: says what to check, never the password."""


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def connect(settings: SmtpSettings) -> smtplib.SMTP:
    where = f"{settings.host}:{settings.port}"
    if settings.tls == "implicit":
        smtp = _guarded(where, lambda: smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT,
                                                        context=tls_context(settings)))
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)
    try:
        _secure(smtp, settings, where)
        if settings.user:
            _guarded(where, lambda: smtp.login(settings.user, settings.password or ""))
        return smtp
    except BaseException:
        smtp.close()
        raise


def _secure(smtp: smtplib.SMTP, settings: SmtpSettings, where: str) -> None:
    if settings.tls not in ("starttls", "starttls-required"):
        return
    smtp.ehlo()
    if smtp.has_extn("starttls"):
        _guarded(where, lambda: smtp.starttls(context=tls_context(settings)))
        smtp.ehlo()
    elif settings.tls == "starttls-required":
        raise RelayRefused(f"SMTP relay {where} does not offer STARTTLS, which COBUY_SMTP_URL requires")


def _guarded(where: str, step):
    try:
        return step()
    except ssl.SSLCertVerificationError as exc:
        raise RelayRefused(f"SMTP relay {where}: its TLS certificate is not trusted ({exc.verify_message}); "
                           f"set COBUY_SMTP_CA_FILE to its CA bundle") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise RelayRefused(f"SMTP relay {where} refused the user and password of COBUY_SMTP_URL "
                           f"({exc.smtp_code} {exc.smtp_error.decode(errors='replace')[:120]})") from None
    except smtplib.SMTPNotSupportedError:
        raise RelayRefused(f"SMTP relay {where} offers no AUTH (over this connection): "
                           f"use STARTTLS or smtps://, or remove the user from COBUY_SMTP_URL") from None
