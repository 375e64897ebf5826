"""cobuy's command line: `cobuy up` and the operator's tools."""
from __future__ import annotations

import argparse
import sys

from shared import config as config_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cobuy", description="Joint-purchase counter auction")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start everything in the foreground")
    up.add_argument("--scale", help="replicas, e.g. auction=3,reservation=2")
    up.add_argument("--web-workers", type=int, default=2, help="gunicorn workers per service replica")
    up.add_argument("--gateway-workers", type=int, default=2)
    up.add_argument("--restart", action="store_true",
                    help="restart a process that dies (loudly, at most 5 times) instead of stopping everything")

    serve = commands.add_parser("serve", help="run one component as a container does")
    serve.add_argument("component", choices=("gateway",) + config_module.SERVICES)
    serve.add_argument("--role", choices=["web", "worker"], default="web")
    serve.add_argument("--workers", type=int, default=int(__import__("os").environ.get("WEB_CONCURRENCY", "2")))
    serve.add_argument("--bind", default="0.0.0.0:8000")

    migrate = commands.add_parser("migrate", help="migrate every service's database (or one)")
    migrate.add_argument("--service", choices=config_module.SERVICES)

    offers = commands.add_parser("offers", help="offers").add_subparsers(dest="action", required=True)
    offers_list = offers.add_parser("list")
    offers_list.add_argument("--status", choices=["open", "closed"])

    sellers = commands.add_parser("sellers", help="sellers").add_subparsers(dest="action", required=True)
    rotate = sellers.add_parser("rotate-key", help="revoke a seller's API key and print a new one")
    rotate.add_argument("email")

    mail = commands.add_parser("mail", help="the mail delivery log").add_subparsers(dest="action", required=True)
    mail_list = mail.add_parser("list")
    mail_list.add_argument("--to")
    mail_list.add_argument("--offer")
    mail_list.add_argument("--state", choices=["pending", "claimed", "sending", "sent", "failed"])
    mail_list.add_argument("--limit", type=int, default=200)
    mail_retry = mail.add_parser("retry", help="queue failed mails again")
    mail_retry.add_argument("ids", nargs="*", type=int)

    hooks = commands.add_parser("webhooks", help="sellers' webhook endpoints").add_subparsers(dest="action",
                                                                                            required=True)
    hooks_list = hooks.add_parser("list", help="endpoints, their messages by state and their lag")
    hooks_list.add_argument("--seller", help="a seller id")
    hooks_list.add_argument("--disabled", action="store_true", help="only disabled endpoints")
    hooks_retry = hooks.add_parser("retry", help="re-enable endpoints and queue their failed messages again")
    hooks_retry.add_argument("ids", nargs="*", metavar="ENDPOINT_ID", help="none: every disabled endpoint")

    outbox = commands.add_parser("outbox", help="outboxes").add_subparsers(dest="action", required=True)
    outbox.add_parser("status", help="per service: waiting events, the oldest one's age, quarantined events")
    outbox_retry = outbox.add_parser("retry", help="put quarantined events back in line (after a fix)")
    outbox_retry.add_argument("ids", nargs="+", metavar="EVENT_ID")

    dlq = commands.add_parser("dlq", help="the dead-letter queue").add_subparsers(dest="action", required=True)
    dlq.add_parser("list")
    dlq.add_parser("replay")

    args = parser.parse_args(argv)
    config = config_module.get()
    from cobuy import operations as ops

    if args.command == "up":
        from cobuy import supervisor

        return supervisor.run(config, supervisor.parse_scale(args.scale), args.web_workers, args.gateway_workers,
                              restart=args.restart)
    if args.command == "serve":
        from cobuy.serve import serve

        return serve(args.component, args.role, args.workers, args.bind)
    if args.command == "migrate":
        ops.migrate_all(config, (args.service,) if args.service else config_module.SERVICES)
        print("migrated")
        return 0
    if args.command == "offers":
        print(ops.dumps(ops.offers_list(config, args.status)))
        return 0
    if args.command == "sellers":
        key = ops.rotate_seller_key(config, args.email)
        if key is None:
            print(f"no seller with e-mail {args.email}", file=sys.stderr)
            return 1
        print(key)
        return 0
    if args.command == "mail":
        if args.action == "list":
            print(ops.dumps(ops.mail_list(config, args.to, args.offer, args.state, args.limit)))
        else:
            print(f"{ops.mail_retry(config, args.ids)} mail(s) queued again")
        return 0
    if args.command == "webhooks":
        if args.action == "list":
            print(ops.dumps(ops.webhooks_list(config, args.seller, args.disabled)))
            return 0
        enabled, queued = ops.webhooks_retry(config, args.ids)
        print(f"{enabled} endpoint(s) re-enabled, {queued} message(s) queued again")
        return 0
    if args.command == "outbox":
        if args.action == "status":
            print(ops.dumps(ops.outbox_status(config)))
            return 0
        retried = ops.outbox_retry(config, args.ids)
        print(f"{retried} event(s) back in line")
        return 0 if retried == len(set(args.ids)) else 1
    if args.command == "dlq":
        if args.action == "list":
            print(ops.dumps(ops.dlq_list(config)))
        else:
            print(f"{ops.dlq_replay(config)} message(s) replayed")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
