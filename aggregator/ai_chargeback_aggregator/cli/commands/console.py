"""`chargeback console`: who may sign in to the console, and what they see.

    chargeback console users add alice --role finance            # asks for the password twice
    chargeback console users add bob --role viewer --team payments --password-stdin < pw.txt
    chargeback console users add carol@example.com --role viewer --tenant acme --sso   # OpenID Connect only
    chargeback console users passwd alice | revoke-sessions alice | remove alice | list
    chargeback console tokens add nightly-export --role viewer --team payments          # prints the token once
    chargeback console groups add finance-team --role finance                          # OpenID Connect group -> grants

Writes the accounts file (CHARGEBACK_CONSOLE_USERS_PATH, default
./var/console-users.yaml): passwords as argon2id hashes, tokens as SHA-256.
A running aggregator reads the change on the next request; nothing restarts.
Roles: admin (everything and the access page), finance (every team and
tenant), viewer (only the --team and --tenant granted).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from ..query_source import EXIT_ERROR, EXIT_OK
from ..render import FORMATS, Report, Section, render


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("console", help="console accounts: users, tokens, OpenID Connect groups",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)  # fmt: skip
    parser.add_argument("--users-file", help="the accounts file (default: CHARGEBACK_CONSOLE_USERS_PATH or ./var/console-users.yaml)")
    kinds = parser.add_subparsers(dest="console_kind", metavar="KIND", required=True)

    users = kinds.add_parser("users", help="people who sign in").add_subparsers(dest="action", metavar="ACTION", required=True)
    add = users.add_parser("add", help="add a user, or change an existing user's role and grants")
    add.add_argument("name")
    _grant_options(add)
    add.add_argument("--sso", action="store_true", help="signs in through OpenID Connect (NAME is the verified email); no password")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input (one line)")
    add.set_defaults(handler=run_user_add)
    passwd = users.add_parser("passwd", help="set a new password (ends the user's sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=run_user_passwd)
    for action, help_text, handler in (("remove", "remove a user (ends their sessions)", run_user_remove),
                                       ("revoke-sessions", "sign a user out everywhere", run_user_revoke)):  # fmt: skip
        sub = users.add_parser(action, help=help_text)
        sub.add_argument("name")
        sub.set_defaults(handler=handler)
    _list(users, "users")

    tokens = kinds.add_parser("tokens", help="bearer tokens for scripts").add_subparsers(dest="action", metavar="ACTION", required=True)
    add = tokens.add_parser("add", help="create a token (printed once; only its hash is kept)")
    add.add_argument("name")
    _grant_options(add)
    add.set_defaults(handler=run_token_add)
    remove = tokens.add_parser("remove", help="revoke a token")
    remove.add_argument("name")
    remove.set_defaults(handler=run_token_remove)
    _list(tokens, "tokens")

    groups = kinds.add_parser("groups", help="OpenID Connect groups -> grants").add_subparsers(dest="action", metavar="ACTION", required=True)
    add = groups.add_parser("add", help="grant a group (as the identity provider names it in its groups claim)")
    add.add_argument("name")
    _grant_options(add)
    add.set_defaults(handler=run_group_add)
    remove = groups.add_parser("remove", help="remove a group's grant")
    remove.add_argument("name")
    remove.set_defaults(handler=run_group_remove)
    _list(groups, "groups")


def _grant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=("admin", "finance", "viewer"), required=True)
    parser.add_argument("--team", action="append", default=[], help="a team a viewer may see (repeat for more)")
    parser.add_argument("--tenant", action="append", default=[], help="a tenant a viewer may see, all its teams (repeat for more)")


def _list(subparsers: argparse._SubParsersAction, what: str) -> None:  # type: ignore[type-arg]
    listing = subparsers.add_parser("list", help=f"the {what} and their grants")
    listing.add_argument("--format", choices=FORMATS, default="table")
    listing.set_defaults(handler=run_list, what=what)


def _file(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ...console.accounts import AccountsFile
    from ...settings import AggregatorSettings

    return AccountsFile(args.users_file or AggregatorSettings().console_users_path)


def _grants(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ...console.accounts import Grants

    if args.role != "viewer" and (args.team or args.tenant):
        raise ValueError(f"--team/--tenant narrow a viewer; a {args.role} sees everything")
    return Grants(args.role, frozenset(args.team), frozenset(args.tenant))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _run(command: str, action) -> int:  # type: ignore[no-untyped-def]
    from ...console.accounts import AccountError

    try:
        message = action()
    except (AccountError, ValueError, OSError) as exc:
        print(f"chargeback console {command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(message)
    return EXIT_OK


def run_user_add(args: argparse.Namespace) -> int:
    from ...console.accounts import User, check_name, hash_password

    def action() -> str:
        check_name(args.name)
        grants = _grants(args)
        password_hash = "" if args.sso else hash_password(_password(args))
        with _file(args).editing() as accounts:
            old = accounts.users.get(args.name)
            accounts.users[args.name] = User(args.name, grants, password_hash, args.sso, int(time.time()) if old else 0)
        return f"{'updated' if old else 'added'} {args.name} ({grants.role}) in {_file(args).path}"

    return _run("users add", action)


def run_user_passwd(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ...console.accounts import AccountError, hash_password

    def action() -> str:
        password_hash = hash_password(_password(args))
        with _file(args).editing() as accounts:
            user = accounts.users.get(args.name)
            if user is None:
                raise AccountError(f"no user {args.name!r}")
            accounts.users[args.name] = replace(user, password_hash=password_hash, sessions_after=int(time.time()))
        return f"new password for {args.name}; their sessions have ended"

    return _run("users passwd", action)


def run_user_remove(args: argparse.Namespace) -> int:
    def action() -> str:
        with _file(args).editing() as accounts:
            if accounts.users.pop(args.name, None) is None:
                raise ValueError(f"no user {args.name!r}")
        return f"removed {args.name}"

    return _run("users remove", action)


def run_user_revoke(args: argparse.Namespace) -> int:
    from dataclasses import replace

    def action() -> str:
        with _file(args).editing() as accounts:
            user = accounts.users.get(args.name)
            if user is None:
                raise ValueError(f"no user {args.name!r}")
            accounts.users[args.name] = replace(user, sessions_after=max(int(time.time()), user.sessions_after + 1))
        return f"every session of {args.name} has ended"

    return _run("users revoke-sessions", action)


def run_token_add(args: argparse.Namespace) -> int:
    from ...console.accounts import Token, check_name, new_token, token_digest

    def action() -> str:
        check_name(args.name)
        token = new_token()
        with _file(args).editing() as accounts:
            if args.name in accounts.tokens:
                raise ValueError(f"a token named {args.name!r} exists; remove it first")
            accounts.tokens[args.name] = Token(args.name, _grants(args), token_digest(token))
        return token

    return _run("tokens add", action)


def run_token_remove(args: argparse.Namespace) -> int:
    def action() -> str:
        with _file(args).editing() as accounts:
            if accounts.tokens.pop(args.name, None) is None:
                raise ValueError(f"no token {args.name!r}")
        return f"revoked token {args.name}"

    return _run("tokens remove", action)


def run_group_add(args: argparse.Namespace) -> int:
    def action() -> str:
        with _file(args).editing() as accounts:
            accounts.groups[args.name] = _grants(args)
        return f"group {args.name} -> {args.role}"

    return _run("groups add", action)


def run_group_remove(args: argparse.Namespace) -> int:
    def action() -> str:
        with _file(args).editing() as accounts:
            if accounts.groups.pop(args.name, None) is None:
                raise ValueError(f"no group {args.name!r}")
        return f"removed group {args.name}"

    return _run("groups remove", action)


def run_list(args: argparse.Namespace) -> int:
    from ...console.accounts import AccountError

    try:
        accounts = _file(args).current()
    except AccountError as exc:
        print(f"chargeback console {args.what} list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    entries = {"users": accounts.users, "tokens": accounts.tokens, "groups": accounts.groups}[args.what]
    rows = []
    for name, entry in sorted(entries.items()):
        grants = getattr(entry, "grants", entry)
        row = {"name": name, "role": grants.role, "teams": sorted(grants.teams), "tenants": sorted(grants.tenants)}
        if args.what == "users":
            row["signs_in_with"] = "+".join(w for w, on in (("password", bool(entry.password_hash)), ("sso", entry.sso)) if on)
        rows.append(row)
    columns = ["name", "role", "teams", "tenants", *(["signs_in_with"] if args.what == "users" else [])]
    render(Report(title=f"Console {args.what}", ok=True, verdict=f"{len(rows)} {args.what}", reasons=[],
                  sections=[Section(args.what, args.what.capitalize(), columns, rows)]), args.format, sys.stdout)  # fmt: skip
    return EXIT_OK
