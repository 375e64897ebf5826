"""mailer: turns events into e-mails, delivers each exactly once over SMTP, keeps the log."""
SERVICE = "mailer"
